/**
 * `approx-prefix-cache-producer`: estimates, for every candidate, how many of the request's prefix blocks it holds,
 * from the picks this EPP made earlier (llm-d's approximate prefix cache). GAIE v1.4/v1.5 configs set the same
 * parameters on `prefix-cache-scorer`; the loader hands them to the producer it creates (see prefix-cache-scorer.ts).
 *
 * Parameters (omitted ones take llm-d-router's defaults):
 * - `autoTune` (default true): take the block size from the first candidate's vllm:cache_config_info{block_size} and
 *   each endpoint's LRU capacity from its num_gpu_blocks.
 * - `blockSizeTokens` (default 16). `blockSize` is its deprecated name (GAIE's legacy block size): read as
 *   `blockSizeTokens` when that is not set, with a load warning, as llm-d-router does. The effective block size is
 *   floored at 64 tokens (llm-d #1158), so 16 becomes 64.
 * - `maxPrefixTokensToMatch` (default 131072, >= 0): at most floor(tokens / effective block size) blocks are matched.
 *   0 hands the cap to `maxPrefixBlocksToMatch` (llm-d-router: both 0 = no limit).
 * - `maxPrefixBlocksToMatch` (>= 0): with `maxPrefixTokensToMatch` 0, a cap in effective blocks (default 2048). Set
 *   without `maxPrefixTokensToMatch` (how GAIE v1.4/v1.5 configs use it), it keeps its GAIE meaning, a reach of
 *   maxPrefixBlocksToMatch × block size tokens, with the block size before the floor (configured, or reported when
 *   auto-tuning): 256 blocks of 16 tokens match up to 4096 tokens, i.e. 64 blocks of 64. (llm-d-router would ignore
 *   it there, its token default winning.)
 * - `lruCapacityPerServer` (default 31250, > 0): hashes kept per endpoint when num_gpu_blocks is unknown (or autoTune
 *   is off).
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
import type {
  DataProducer,
  Endpoint,
  EndpointRemoved,
  PreRequest,
  SchedulingContext,
  SchedulingResult,
} from '../../framework/types.js';
import { chainSeed, promptBlockKeys } from '../../prefix/block-hash.js';
import { PREFIX_MATCH_DATA, prefixStateKey, type PrefixMatchState } from '../../prefix/match-state.js';
import { PrefixIndex } from '../../prefix/prefix-index.js';
import { definePlugin } from '../definition.js';

/** llm-d's floor on the block size, against EPP memory blow-ups with 16-token blocks (#1158). */
export const MIN_BLOCK_SIZE_TOKENS = 64;
const BYTES_PER_TOKEN = 4;

/** The producer's parameters, also accepted on a GAIE-style prefix-cache-scorer (the loader moves them here). */
export const approxPrefixCacheParams = z
  .object({
    autoTune: z.boolean().default(true),
    blockSizeTokens: z.number().int().min(0, 'must be >= 0').optional(),
    blockSize: z.number().int().min(0, 'must be >= 0').optional(),
    maxPrefixTokensToMatch: z.number().int().min(0, 'must be >= 0').optional(),
    maxPrefixBlocksToMatch: z.number().int().min(0, 'must be >= 0').optional(),
    lruCapacityPerServer: z.number().int().positive('must be > 0').default(31250),
  })
  .strict()
  .transform(({ blockSize, blockSizeTokens, ...rest }) => ({
    ...rest,
    blockSizeTokens: blockSizeTokens ?? blockSize ?? 16,
    /** The deprecated `blockSize` was read as the block size. */
    blockSizeFromLegacy: blockSizeTokens === undefined && blockSize !== undefined,
    legacyBlockSizeIgnored: blockSizeTokens !== undefined && blockSize !== undefined,
  }))
  .refine((params) => params.autoTune || params.blockSizeTokens > 0, {
    error: 'blockSizeTokens must be > 0 when autoTune is false',
    path: ['blockSizeTokens'],
  });

export const PRODUCER_PARAMETER_KEYS = [
  'autoTune',
  'blockSizeTokens',
  'blockSize',
  'maxPrefixTokensToMatch',
  'maxPrefixBlocksToMatch',
  'lruCapacityPerServer',
] as const;

type ProducerParams = z.infer<typeof approxPrefixCacheParams>;

const DEFAULT_MAX_PREFIX_TOKENS = 131072;
const DEFAULT_MAX_PREFIX_BLOCKS = 2048;

/** The block cap for one request, from the block size before (`raw`) and after (`effective`) the floor. */
export function maxBlocksFor(
  params: Pick<ProducerParams, 'maxPrefixTokensToMatch' | 'maxPrefixBlocksToMatch'>,
  raw: number,
  effective: number,
): number {
  const tokens = params.maxPrefixTokensToMatch;
  if (tokens !== undefined && tokens > 0) return Math.floor(tokens / effective);
  if (tokens === 0) {
    const blocks = params.maxPrefixBlocksToMatch ?? DEFAULT_MAX_PREFIX_BLOCKS;
    return blocks === 0 ? Number.MAX_SAFE_INTEGER : blocks;
  }
  // maxPrefixTokensToMatch not set: a block cap keeps GAIE's token reach; none (or 0, GAIE's "use the default") gets
  // llm-d-router's token default.
  if (params.maxPrefixBlocksToMatch) return Math.floor((params.maxPrefixBlocksToMatch * raw) / effective);
  return Math.floor(DEFAULT_MAX_PREFIX_TOKENS / effective);
}

export type ApproxPrefixCacheProducer = DataProducer &
  PreRequest &
  EndpointRemoved & {
    readonly index: PrefixIndex;
    /** Applies the index updates of earlier picks now (normally done on the next event-loop turn). */
    flush(): void;
  };

export const approxPrefixCacheProducer = definePlugin({
  kind: 'data-producer',
  produces: [PREFIX_MATCH_DATA],
  description: 'Approximate per-endpoint prefix-cache match from earlier picks.',
  params: approxPrefixCacheParams,
  create: (ctx, params): ApproxPrefixCacheProducer => {
    if (params.blockSizeFromLegacy)
      ctx.warn(`parameter "blockSize" is deprecated; read as blockSizeTokens=${params.blockSizeTokens}`);
    if (params.legacyBlockSizeIgnored)
      ctx.warn('parameter "blockSize" is deprecated and ignored: blockSizeTokens is set');
    const index = new PrefixIndex();
    const key = prefixStateKey(ctx.name);
    const indexerMetrics = ctx.metrics.prefixIndexer(ctx);
    indexerMetrics.size(0);

    /** The block size before the floor (reported when auto-tuning, else configured) and after it. */
    const blockSizeFor = (candidates: readonly Endpoint[]) => {
      let raw = params.blockSizeTokens;
      const reported = candidates[0]?.metrics.cacheBlockSize ?? 0;
      if (params.autoTune && reported > 0) raw = reported;
      return { raw, effective: Math.max(MIN_BLOCK_SIZE_TOKENS, raw) };
    };
    const capacityFor = (endpoint: Endpoint) =>
      params.autoTune && endpoint.metrics.cacheNumBlocks > 0
        ? endpoint.metrics.cacheNumBlocks
        : params.lruCapacityPerServer;

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
      produce(context: SchedulingContext, candidates: readonly Endpoint[]) {
        flush();
        const { raw, effective: blockSizeTokens } = blockSizeFor(candidates);
        const maxBlocks = maxBlocksFor(params, raw, blockSizeTokens);
        const seed = chainSeed(context.request.targetModel, context.request.cacheSalt);
        // A token cap below one block matches nothing (llm-d-router: a misconfiguration, not "unlimited").
        const keys =
          maxBlocks === 0
            ? []
            : context.request.prompts.map((prompt) => promptBlockKeys(seed, prompt, blockSizeTokens, maxBlocks));
        const matched = new Map<string, number>();
        const count = (id: string) => matched.set(id, (matched.get(id) ?? 0) + 1);
        let totalBlocks = 0;
        for (const chain of keys) {
          totalBlocks += chain.length;
          for (const k of chain) if (!index.forEachHolder(k, count)) break;
        }
        const state: PrefixMatchState = { blockSizeTokens, totalBlocks, matched, keys };
        context.state.set(key, state);
        if (totalBlocks > 0) {
          let best = 0;
          for (const e of candidates) best = Math.max(best, matched.get(e.id) ?? 0);
          indexerMetrics.match(best / totalBlocks, best * blockSizeTokens * BYTES_PER_TOKEN);
        }
      },
      preRequest(context: SchedulingContext, result: SchedulingResult) {
        const state = context.state.get(key) as PrefixMatchState | undefined;
        if (!state) return;
        const picks = [
          result.results.get(result.primaryProfile)?.targets[0],
          result.results.get('prefill')?.targets[0],
        ];
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
