/**
 * `approx-prefix-cache-producer`: estimates, for every candidate, how many of the request's prefix blocks it holds,
 * from the picks this EPP made earlier (llm-d's approximate prefix cache).
 *
 * Parameters:
 * - `autoTune` (default true): take the block size from the first candidate's vllm:cache_config_info{block_size} and
 *   each endpoint's LRU capacity from its num_gpu_blocks.
 * - `blockSizeTokens` (default 16; deprecated alias `blockSize`). The effective block size is floored at 64 tokens
 *   (llm-d #1158), so 16 becomes 64.
 * - `maxPrefixTokensToMatch` (default 131072, >= 0): maxBlocks = tokens / blockSize.
 * - `maxPrefixBlocksToMatch` (default 2048, >= 0): used when maxPrefixTokensToMatch is 0; both 0 = no limit.
 * - `lruCapacityPerServer` (default 31250, > 0): hashes kept per endpoint when num_gpu_blocks is unknown.
 * `autoTune: false` requires `blockSizeTokens > 0`.
 *
 * Produce: for each prompt, walk its hash chain; stop at the first hash no endpoint holds; otherwise every holder
 * gets +1. matchedBlocks per endpoint sums over prompts, totalBlocks is the chain length summed over prompts.
 * PreRequest (the pick): the decode pick and the pick of the profile named "prefill" are recorded as holding every
 * hash of the request. As upstream, the index is updated off the decision path (after the reply, on the next
 * event-loop turn); the next produce() applies any update still pending first, so every decision sees every earlier
 * pick. Endpoints that leave the pool are forgotten at once.
 */
import { z } from 'zod';
import type { DataProducer, Endpoint, EndpointRemoved, PreRequest, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { chainSeed, promptBlockHashes } from '../../prefix/block-hash.js';
import { prefixStateKey, type PrefixMatchState } from '../../prefix/match-state.js';
import { PrefixIndex, blockKey } from '../../prefix/prefix-index.js';
import { definePlugin } from '../definition.js';

/** llm-d's floor on the block size, against EPP memory blow-ups with 16-token blocks (#1158). */
export const MIN_BLOCK_SIZE_TOKENS = 64;
const BYTES_PER_TOKEN = 4;

const params = z
  .object({
    autoTune: z.boolean().default(true),
    blockSizeTokens: z.number().int().min(0, 'must be >= 0').optional(),
    blockSize: z.number().int().min(0, 'must be >= 0').optional(),
    maxPrefixTokensToMatch: z.number().int().min(0, 'must be >= 0').default(131072),
    maxPrefixBlocksToMatch: z.number().int().min(0, 'must be >= 0').default(2048),
    lruCapacityPerServer: z.number().int().positive('must be > 0').default(31250),
  })
  .transform(({ blockSize, blockSizeTokens, ...rest }) => ({ ...rest, blockSizeTokens: blockSizeTokens ?? blockSize ?? 16 }))
  .refine((p) => p.autoTune || p.blockSizeTokens > 0, { message: 'blockSizeTokens must be > 0 when autoTune is false', path: ['blockSizeTokens'] });

export type ApproxPrefixCacheProducer = DataProducer &
  PreRequest &
  EndpointRemoved & {
    readonly index: PrefixIndex;
    /** Applies the index updates of earlier picks now (normally done on the next event-loop turn). */
    flush(): void;
  };

export const approxPrefixCacheProducer = definePlugin({
  kind: 'data-producer',
  description: 'Approximate per-endpoint prefix-cache match from earlier picks.',
  params,
  create: (ctx, p): ApproxPrefixCacheProducer => {
    const index = new PrefixIndex();
    const key = prefixStateKey(ctx.name);
    const indexerMetrics = ctx.metrics.prefixIndexer(ctx);
    indexerMetrics.size(0);

    const blockSizeFor = (candidates: readonly Endpoint[]) => {
      let size = p.blockSizeTokens;
      const reported = candidates[0]?.metrics.cacheBlockSize ?? 0;
      if (p.autoTune && reported > 0) size = reported;
      return Math.max(MIN_BLOCK_SIZE_TOKENS, size);
    };
    const capacityFor = (e: Endpoint) => (p.autoTune && e.metrics.cacheNumBlocks > 0 ? e.metrics.cacheNumBlocks : p.lruCapacityPerServer);

    const pending: Array<{ id: string; keys: number[][]; capacity: number }> = [];
    let flushScheduled = false;
    const flush = () => {
      flushScheduled = false;
      if (pending.length === 0) return;
      for (const p of pending.splice(0)) for (const chain of p.keys) index.add(p.id, chain, p.capacity);
      indexerMetrics.size(index.size);
    };

    return {
      type: ctx.type,
      name: ctx.name,
      index,
      flush,
      produce(c: SchedulingContext, candidates: readonly Endpoint[]) {
        flush();
        const blockSizeTokens = blockSizeFor(candidates);
        const maxBlocks = p.maxPrefixTokensToMatch > 0 ? Math.floor(p.maxPrefixTokensToMatch / blockSizeTokens) : p.maxPrefixBlocksToMatch;
        const seed = chainSeed(c.request.targetModel, c.request.cacheSalt);
        const keys = c.request.prompts.map((prompt) => promptBlockHashes(seed, prompt, blockSizeTokens, maxBlocks).map(blockKey));
        const matched = new Map<string, number>();
        const count = (id: string) => matched.set(id, (matched.get(id) ?? 0) + 1);
        let totalBlocks = 0;
        for (const chain of keys) {
          totalBlocks += chain.length;
          for (const k of chain) if (!index.forEachHolder(k, count)) break;
        }
        const state: PrefixMatchState = { blockSizeTokens, totalBlocks, matched, keys };
        c.state.set(key, state);
        if (totalBlocks > 0) {
          let best = 0;
          for (const e of candidates) best = Math.max(best, matched.get(e.id) ?? 0);
          indexerMetrics.match(best / totalBlocks, best * blockSizeTokens * BYTES_PER_TOKEN);
        }
      },
      preRequest(c: SchedulingContext, result: SchedulingResult) {
        const state = c.state.get(key) as PrefixMatchState | undefined;
        if (!state) return;
        const picks = [result.results.get(result.primaryProfile)?.targets[0], result.results.get('prefill')?.targets[0]];
        for (const e of picks) if (e) pending.push({ id: e.id, keys: state.keys, capacity: capacityFor(e) });
        if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(flush).unref();
        }
      },
      endpointRemoved(id: string) {
        flush();
        index.removeEndpoint(id);
        indexerMetrics.size(index.size);
      },
    };
  },
});
