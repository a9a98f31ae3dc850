/**
 * --prefill-failure-policy after a prefill that did not succeed (NIXL and shared-storage; SGLang's legs run together and
 * have no fallback): with `local`, a server-side failure is served with local prefill on the decode vLLM; otherwise,
 * and for the client's own faults (4xx), the failure is answered (failures.ts).
 */
import { runDecode } from './decode.js';
import { answerPrefillFailure } from './failures.js';
import type { Outcome } from './metrics.js';
import type { PdContext } from './pd-context.js';
import type { PrefillOutcome } from './prefill-client.js';

type PrefillFailure = Exclude<PrefillOutcome, { kind: 'ok' }>;

/** Prefill failures the `local` policy may serve locally: anything that is not the client's own fault. */
function canFallBack(failure: PrefillFailure): boolean {
  return (
    failure.kind === 'connect_error' ||
    failure.kind === 'timeout' ||
    failure.kind === 'bad_response' ||
    (failure.kind === 'http_error' && failure.status >= 500)
  );
}

/** Serves the request with local prefill after `failure`, or answers the failure. */
export function afterPrefillFailure(ctx: PdContext, failure: PrefillFailure): Promise<Outcome> | Outcome {
  if (failure.kind === 'aborted' || ctx.config.prefillFailurePolicy !== 'local' || !canFallBack(failure))
    return answerPrefillFailure(ctx, failure);
  const reason = failure.kind === 'http_error' ? `status_${failure.status}` : failure.kind;
  const detail =
    failure.kind === 'http_error'
      ? `status ${failure.status}`
      : failure.kind === 'connect_error'
        ? `${failure.message}: ${failure.detail}`
        : failure.message;
  ctx.metrics.fallbacks.inc({ reason });
  ctx.metrics.modes.inc({ connector: ctx.config.kvConnector, mode: 'fallback_local' });
  ctx.log.logger.warn(
    { prefiller: ctx.target.hostPort, reason, detail },
    'prefill failed; serving the request with local prefill on the decode vLLM',
  );
  return runDecode(ctx, { body: ctx.rawBody, mode: 'fallback_local' });
}
