/**
 * The concurrent connectors (sglang, mooncake, offloading): the prefill leg and the decode leg go out at once, since the
 * decode engine pulls the KV blocks from the prefill engine itself (keyed by the id both bodies carry); the decode
 * answer streams to the client as soon as it comes, the prefill answer is only checked.
 *
 * Upstream (llm-d-router ebab687) fires the prefill and forgets it: a failed prefill never reaches the client, whose
 * decode waits for KV blocks that never come until the engine's own timeout. Here, as with the SGLang connector, a
 * prefill that fails (an error answer, unreachable, past --prefill-timeout: a 504) stops the decode leg and the client gets
 * a 502 naming the cause (or an SSE error event once the stream started); a decode that fails, or a client that
 * leaves, stops the prefill leg. A prefill is never retried: its transfer id (an SGLang bootstrap room) is single-use.
 */
import { Cancellation, LegStopped } from '../common/upstream-leg.js';
import { runDecode } from './decode.js';
import { legHeaders, prefillRequest, timedPrefill } from './legs.js';
import type { Outcome } from './metrics.js';
import type { PdContext } from './pd-context.js';

export interface ConcurrentLegs {
  prefillBody: string;
  decodeBody: string;
  /** Headers added to the prefill leg (mooncake: x-data-parallel-rank). */
  prefillHeaders?: Record<string, string>;
}

export async function runConcurrentLegs(ctx: PdContext, legs: ConcurrentLegs): Promise<Outcome> {
  const stopDecode = new Cancellation();
  const stopPrefill = new Cancellation();
  const onClientGone = () => stopPrefill.abort(new LegStopped('client_gone', 'client disconnected'));
  if (ctx.signal.aborted) onClientGone();
  else ctx.signal.addEventListener('abort', onClientGone);
  const prefill = timedPrefill(
    ctx,
    prefillRequest(ctx, legs.prefillBody, 'any', {
      clientSignal: stopPrefill,
      maxRetries: 0,
      retryTransportErrors: false,
      ...(legs.prefillHeaders ? { headers: { ...legHeaders(ctx), ...legs.prefillHeaders } } : {}),
    }),
  ).then((outcome) => {
    if (outcome.kind !== 'ok' && outcome.kind !== 'aborted') {
      const detail =
        outcome.kind === 'http_error'
          ? `the prefiller answered ${outcome.status}: ${outcome.body.toString('utf8', 0, 200)}`
          : outcome.message;
      ctx.log.logger.warn(
        {
          prefiller: ctx.target.hostPort,
          kind: outcome.kind,
          detail: outcome.kind === 'connect_error' ? outcome.detail : detail,
        },
        `${ctx.config.kvConnector} prefill failed; stopping the decode leg`,
      );
      stopDecode.abort(
        new LegStopped(outcome.kind === 'timeout' ? 'prefill_timeout' : 'peer_failed', `prefill failed: ${detail}`),
      );
    }
    return outcome;
  });
  ctx.metrics.modes.inc({ connector: ctx.config.kvConnector, mode: 'disaggregated' });
  // Prefill time overlaps decode here; the TTFT split counts it inside the decode wait.
  const outcome = await runDecode(ctx, { body: legs.decodeBody, mode: 'disaggregated', peerSignal: stopDecode });
  if (outcome !== 'success') stopPrefill.abort();
  await prefill;
  ctx.signal.removeEventListener('abort', onClientGone);
  return outcome;
}
