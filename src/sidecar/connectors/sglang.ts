/**
 * SGLang: one body for both legs (the client's plus bootstrap_host, bootstrap_port, bootstrap_room), sent
 * concurrently; the decode engine pulls the KV cache from the prefill engine's bootstrap server, so the decode answer
 * can stream before the prefill answer is back (no +200ms as in routers that wait for it).
 *
 * Unlike upstream (fire-and-forget prefill whose failure the client never sees, while decode waits up to SGLang's 300s
 * bootstrap timeout), a failed prefill stops the decode leg and the client gets a 502 saying why (or an SSE error
 * event if the stream had started); a failed decode or a client that leaves stops the prefill leg.
 */
import { randomInt } from 'node:crypto';
import { Cancellation, LegStopped } from '../../common/upstream-leg.js';
import { sglangBody } from '../request-bodies.js';
import { runDecode } from '../decode.js';
import { prefillRequest, timedPrefill } from '../legs.js';
import type { Connector } from '../pd-context.js';

/** A random room id below 2^53, so it survives JSON number handling on every side. */
export function bootstrapRoom(): number {
  return randomInt(0, 2 ** 47) * 64 + randomInt(0, 64);
}

export const sglangConnector: Connector = {
  name: 'sglang',
  async handle(ctx) {
    const c = ctx.config;
    const body = JSON.stringify(sglangBody(ctx.body, ctx.target.host, c.sglangBootstrapPort, bootstrapRoom()));
    const stopDecode = new Cancellation();
    // The prefill leg stops when the client leaves or the decode leg failed.
    const stopPrefill = new Cancellation();
    const onClientGone = () => stopPrefill.abort(new LegStopped('client_gone', 'client disconnected'));
    if (ctx.signal.aborted) onClientGone();
    else ctx.signal.addEventListener('abort', onClientGone);
    const prefill = timedPrefill(
      ctx,
      prefillRequest(ctx, body, 'any', {
        clientSignal: stopPrefill,
        // A bootstrap room is single-use: a retried prefill could not meet the decode that is already waiting.
        maxRetries: 0,
        retryTransportErrors: false,
      }),
    ).then((outcome) => {
      if (outcome.kind !== 'ok' && outcome.kind !== 'aborted') {
        const detail = outcome.kind === 'http_error' ? `the prefiller answered ${outcome.status}: ${outcome.body.toString('utf8').slice(0, 200)}` : outcome.message;
        ctx.logger.warn({ prefiller: ctx.target.hostPort, kind: outcome.kind, detail: outcome.kind === 'connect_error' ? outcome.detail : detail }, 'sglang prefill failed; stopping the decode leg');
        stopDecode.abort(new LegStopped(outcome.kind === 'timeout' ? 'prefill_timeout' : 'peer_failed', `prefill failed: ${detail}`));
      }
      return outcome;
    });
    ctx.metrics.modes.inc({ connector: 'sglang', mode: 'disaggregated' });
    // Prefill time overlaps decode here; the TTFT split counts it inside the decode wait.
    const outcome = await runDecode(ctx, { body, mode: 'disaggregated', peerSignal: stopDecode });
    if (outcome !== 'success') stopPrefill.abort();
    await prefill;
    ctx.signal.removeEventListener('abort', onClientGone);
    return outcome;
  },
};
