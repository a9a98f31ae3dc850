/**
 * `burst-prefix-cache-producer` (llm-d-router): co-locates bursts of prompt-sharing requests (e.g. the samples of an
 * RL rollout group) so a shared prefix is prefilled once instead of on every cold replica. Requests arriving within
 * `windowDurationMs` of the first one of a batch wait for the window to close (the decision waits with them); the
 * sealed batch is placed as burst-assign.ts describes, and each request's match info is a full match on its assigned
 * replica and none elsewhere (no assignment: none anywhere). It does not score: point `prefix-cache-scorer` at it with
 * `prefixMatchInfoProducerName`. A request whose client leaves stops waiting; a full batch (`maxBatchSize`) is logged
 * and the request is scheduled without burst affinity, as upstream.
 *
 * Parameters (upstream's, all integers but balanceBy): `windowDurationMs` (100, 1..10000), `maxPerReplica` (-1 =
 * unlimited, or >= 1), `blockSizeTokens` (64, > 0), `maxPrefixTokensToMatch` (0 = 2048 blocks; else >= blockSizeTokens,
 * giving tokens / blockSizeTokens blocks), `minColocateBlocks` (0 = only identical prompts are placed), `maxBatchSize`
 * (1000; -1 = unlimited), `balanceBy` (`requests` | `tokens`; "" = requests). Prompts are hashed into blocks as
 * approx-prefix-cache-producer's (estimate tokens, model and cache salt in the chain seed), without its 64-token floor.
 */
import { once } from 'node:events';
import { z } from 'zod';
import type { AsyncDataProducer, Endpoint, SchedulingContext } from '../../framework/types.js';
import { chainSeed, promptBlockKeys } from '../../prefix/block-hash.js';
import { PREFIX_MATCH_DATA, prefixStateKey, type PrefixMatchState } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';
import { UNLIMITED, assignBurst, type BurstEntry } from './burst-assign.js';

export const BURST_PREFIX_PRODUCER_TYPE = 'burst-prefix-cache-producer';
const DEFAULT_MAX_BLOCKS = 2048;

const int = z.number().int('must be an integer');
const unlimitedOrPositive = (fallback: number) =>
  int.refine((value) => value === UNLIMITED || value >= 1, 'must be -1 (unlimited) or >= 1').default(fallback);

export const burstParams = z
  .object({
    windowDurationMs: int.min(1, 'must be > 0').max(10_000, 'must be <= 10000').default(100),
    maxPerReplica: unlimitedOrPositive(UNLIMITED),
    blockSizeTokens: int.min(1, 'must be > 0').default(64),
    maxPrefixTokensToMatch: int.min(0, 'must be >= 0').default(0),
    minColocateBlocks: int.min(0, 'must be >= 0').default(0),
    maxBatchSize: unlimitedOrPositive(1000),
    balanceBy: z
      .enum(['', 'requests', 'tokens'], { error: 'must be requests or tokens' })
      .default('requests')
      .transform((balance) => balance || 'requests'),
  })
  .strict()
  .refine((params) => params.maxPrefixTokensToMatch === 0 || params.maxPrefixTokensToMatch >= params.blockSizeTokens, {
    error: 'must be 0 or >= blockSizeTokens; a smaller positive value yields zero prefix blocks',
    path: ['maxPrefixTokensToMatch'],
  });

interface Batch {
  entries: BurstEntry[];
  sealed: Promise<void>;
}

export interface BurstProducer extends AsyncDataProducer {
  readonly burstPrefixProducer: true;
}

export const burstPrefixCacheProducer = definePlugin({
  kind: 'data-producer',
  produces: [PREFIX_MATCH_DATA],
  description: 'Co-locates bursts of prompt-sharing requests arriving within a window.',
  params: burstParams,
  create: (ctx, params): BurstProducer => {
    const maxBlocks =
      params.maxPrefixTokensToMatch > 0
        ? Math.floor(params.maxPrefixTokensToMatch / params.blockSizeTokens)
        : DEFAULT_MAX_BLOCKS;
    let open: Batch | undefined;

    const join = (entry: BurstEntry): Batch => {
      if (!open) {
        const entries: BurstEntry[] = [];
        const sealed = new Promise<void>((resolve) =>
          setTimeout(() => {
            if (open?.entries === entries) open = undefined;
            assignBurst(entries, params.maxPerReplica, params.minColocateBlocks, params.balanceBy === 'tokens');
            resolve();
          }, params.windowDurationMs),
        );
        open = { entries, sealed };
      }
      if (params.maxBatchSize !== UNLIMITED && open.entries.length >= params.maxBatchSize)
        throw new Error(`burst prefix batch full: maxBatchSize ${params.maxBatchSize} reached`);
      open.entries.push(entry);
      return open;
    };

    return {
      type: ctx.type,
      name: ctx.name,
      burstPrefixProducer: true,
      async produceAsync(cycle: SchedulingContext, candidates: readonly Endpoint[], signal: AbortSignal) {
        const seed = chainSeed(cycle.request.targetModel, cycle.request.cacheSalt);
        const keys = cycle.request.prompts.map((prompt) =>
          promptBlockKeys(seed, prompt, params.blockSizeTokens, maxBlocks),
        );
        const entry: BurstEntry = { keys, candidates };
        const batch = join(entry);
        if (signal.aborted) return;
        const stop = new AbortController();
        try {
          await Promise.race([batch.sealed, once(signal, 'abort', { signal: stop.signal }).catch(() => undefined)]);
        } finally {
          stop.abort();
        }

        if (signal.aborted) return;
        const totalBlocks = keys.reduce((total, k) => total + k.length, 0);
        const matched = new Map<string, number>();
        // The assigned replica is one of the batch's first request's candidates: it counts only if it is one of ours.
        if (entry.assigned && candidates.some((candidate) => candidate.id === entry.assigned!.id))
          matched.set(entry.assigned.id, totalBlocks);
        const state: PrefixMatchState = { blockSizeTokens: params.blockSizeTokens, totalBlocks, matched, keys };
        cycle.state.set(prefixStateKey(ctx.name), state);
      },
    };
  },
});
