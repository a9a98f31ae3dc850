/**
 * shared-storage (e.g. LMCache on a shared filesystem), as upstream: when the request carries cache_hit_threshold the
 * decode vLLM is tried first, and only an answer with finish_reason "cache_threshold" (too little of the prompt is in
 * the shared cache) leads to remote prefill. The prefill leg is the client's body with max_tokens and
 * max_completion_tokens 1 and cache_hit_threshold 0, its answer discarded once successful; then the decode leg is the
 * client's body with cache_hit_threshold 0. No kv_transfer_params: the KV cache travels through storage.
 */
import type { Outcome } from '../metrics.js';
import { sharedStoragePrefillBody } from '../request-bodies.js';
import { LegStopped, UpstreamLeg } from '../../common/upstream-leg.js';
import { relayDecode, runDecode } from '../decode.js';
import { answerLegFailure } from '../failures.js';
import { decodeRequest, prefillRequest, timedPrefill } from '../legs.js';
import type { Connector, PdContext } from '../pd-context.js';
import { afterPrefillFailure } from '../prefill-fallback.js';

const CACHE_THRESHOLD = /"finish_reason"\s*:\s*"cache_threshold"/;

/** "\n\n" occurrences in `chunk`, counting one that starts at `previousByte` (the byte before the chunk). */
function countEventEnds(previousByte: number | undefined, chunk: Buffer): number {
  let n = previousByte === 0x0a && chunk[0] === 0x0a ? 1 : 0;
  for (let i = chunk.indexOf('\n\n', n); i >= 0; i = chunk.indexOf('\n\n', i + 2)) n++;
  return n;
}

/** Tries decode first; returns the outcome when it answered, or undefined when the cache hit was too low. */
async function decodeFirst(ctx: PdContext): Promise<Outcome | undefined> {
  const c = ctx.config;
  let leg: UpstreamLeg;
  try {
    leg = await UpstreamLeg.open(decodeRequest(ctx, ctx.rawBody));
  } catch (err) {
    return answerLegFailure(ctx, err, 'decode', false);
  }
  // Look at the start of the answer: the whole JSON body, or the first two SSE events.
  const seen: Buffer[] = [];
  let size = 0;
  let events = 0;
  const sse = String(leg.headers['content-type'] ?? '').toLowerCase().includes('text/event-stream');
  try {
    for (let chunk = await leg.read(); chunk !== null; chunk = await leg.read()) {
      seen.push(chunk);
      size += chunk.length;
      // Count event ends in the new bytes only (with the previous chunk's last byte, for a "\n\n" split across).
      if (sse) events += countEventEnds(seen.length > 1 ? seen[seen.length - 2]![seen[seen.length - 2]!.length - 1] : undefined, chunk);
      if (sse && events >= 2) break;
      if (!sse && size > c.maxRewriteBodySize) break;
    }
  } catch (err) {
    return answerLegFailure(ctx, err, 'decode', false);
  }
  const text = Buffer.concat(seen, size).toString('utf8');
  if (leg.status >= 200 && leg.status < 300 && CACHE_THRESHOLD.test(text)) {
    leg.stop(new LegStopped('peer_failed', 'cache hit below threshold; remote prefill instead'));
    return undefined;
  }
  ctx.metrics.modes.inc({ connector: 'shared-storage', mode: 'local' });
  return relayDecode(ctx, leg, { mode: 'local', prefix: seen });
}

export const sharedStorageConnector: Connector = {
  name: 'shared-storage',
  async handle(ctx) {
    if (ctx.body.cache_hit_threshold !== undefined && ctx.body.cache_hit_threshold !== null) {
      const answered = await decodeFirst(ctx);
      if (answered !== undefined) return answered;
    }
    const r = await timedPrefill(ctx, prefillRequest(ctx, JSON.stringify(sharedStoragePrefillBody(ctx.body)), 'any'));
    if (r.kind !== 'ok') return afterPrefillFailure(ctx, r);
    ctx.metrics.modes.inc({ connector: 'shared-storage', mode: 'disaggregated' });
    return runDecode(ctx, { body: JSON.stringify({ ...ctx.body, cache_hit_threshold: 0 }), mode: 'disaggregated' });
  },
};
