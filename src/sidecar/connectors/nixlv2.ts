/**
 * NIXL v2 (the default connector), llm-d's serial protocol: the prefill leg with max tokens 1 and
 * kv_transfer_params.do_remote_decode=true, then the client's request with the prefiller's kv_transfer_params to the
 * local vLLM, whose answer is streamed back with the prefiller's cached_tokens.
 *
 * Failures follow --prefill-failure-policy: `fail` relays the prefiller's error (connection failure 502, timeout 504,
 * malformed 2xx or a redirect 502; the messages never carry the prefiller's address, the log line does); `retry` also
 * retries connection errors and timeouts; `local` serves the request with local prefill on the decode vLLM after a
 * server-side prefill failure (4xx answers are the client's fault and are relayed in every mode).
 */
import { KV_TRANSFER_PARAMS } from '../../common/pd-contract.js';
import { writeJsonError } from '../errors.js';
import type { Outcome } from '../metrics.js';
import type { PrefillOutcome } from '../prefill-client.js';
import { responseHeaders } from '../upstream.js';
import { cachedTokensOf, nixlDecodeBytes, nixlPrefillBody } from '../request-bodies.js';
import { prefillRequest, runDecode, timedPrefill, type Connector, type PdContext } from './context.js';

/** Prefill failures the `local` policy may serve locally: anything that is not the client's own fault. */
function canFallBack(r: PrefillOutcome): boolean {
  return r.kind === 'connect_error' || r.kind === 'timeout' || r.kind === 'bad_response' || (r.kind === 'http_error' && r.status >= 500);
}

/**
 * A prefill that did not succeed (NIXL and shared-storage): a client that left is counted; with the `local` policy a
 * server-side failure is served with local prefill; otherwise the failure is answered.
 */
export function afterPrefillFailure(ctx: PdContext, r: Exclude<PrefillOutcome, { kind: 'ok' }>): Promise<Outcome> | Outcome {
  if (r.kind === 'aborted') {
    ctx.metrics.clientAborts.inc({ stage: 'prefill' });
    return 'aborted';
  }
  if (ctx.config.prefillFailurePolicy === 'local' && canFallBack(r)) {
    return localFallback(ctx, r.kind === 'http_error' ? `status_${r.status}` : r.kind, r.kind === 'http_error' ? `status ${r.status}` : r.kind === 'connect_error' ? `${r.message}: ${r.detail}` : r.message);
  }
  return answerPrefillFailure(ctx, r);
}

function localFallback(ctx: PdContext, reason: string, detail: string): Promise<Outcome> {
  ctx.metrics.fallbacks.inc({ reason });
  ctx.metrics.modes.inc({ connector: ctx.config.kvConnector, mode: 'fallback_local' });
  ctx.logger.warn({ prefiller: ctx.target.hostPort, reason, detail }, 'prefill failed; serving the request with local prefill on the decode vLLM');
  return runDecode(ctx, { body: ctx.rawBody, mode: 'fallback_local' });
}

/** Writes the answer for a failed prefill (policy fail/retry). */
function answerPrefillFailure(ctx: PdContext, r: Exclude<PrefillOutcome, { kind: 'ok' } | { kind: 'aborted' }>): Outcome {
  const res = ctx.res;
  switch (r.kind) {
    case 'http_error': {
      // Relayed verbatim, as upstream: the client sees the prefiller's own status and error.
      const headers = responseHeaders(r.headers, true);
      headers['content-length'] = String(r.body.length);
      res.writeHead(r.status, headers);
      res.end(r.body);
      ctx.logger.warn({ prefiller: ctx.target.hostPort, status: r.status, attempts: r.attempts }, 'prefill request failed');
      return r.status >= 500 ? 'upstream_error' : 'client_error';
    }
    case 'connect_error':
      writeJsonError(res, 502, r.message, 'BadGateway');
      ctx.logger.warn({ prefiller: ctx.target.hostPort, code: r.code, detail: r.detail, attempts: r.attempts }, 'prefiller unreachable');
      return 'upstream_error';
    case 'timeout':
      ctx.metrics.timeouts.inc({ stage: 'prefill' });
      writeJsonError(res, 504, r.message, 'GatewayTimeout');
      ctx.logger.warn({ prefiller: ctx.target.hostPort, attempts: r.attempts }, r.message);
      return 'timeout';
    case 'bad_response':
      writeJsonError(res, 502, r.message, 'BadGateway');
      ctx.logger.warn({ prefiller: ctx.target.hostPort }, r.message);
      return 'upstream_error';
  }
}

export const nixlv2Connector: Connector = {
  name: 'nixlv2',
  async handle(ctx) {
    const r = await timedPrefill(ctx, prefillRequest(ctx, JSON.stringify(nixlPrefillBody(ctx.api, ctx.body)), 'kv-params'));
    if (r.kind !== 'ok') return afterPrefillFailure(ctx, r);
    ctx.metrics.modes.inc({ connector: 'nixlv2', mode: 'disaggregated' });
    const decodeBody = nixlDecodeBytes(ctx.rawBody, ctx.body, r.json[KV_TRANSFER_PARAMS]);
    return runDecode(ctx, { body: decodeBody, mode: 'disaggregated', rewriteCached: cachedTokensOf(r.json) });
  },
};

