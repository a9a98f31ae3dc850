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
import { chainSeed, promptBlockHashes } from '../../prefix/block-hash.js';
import { prefixStateKey, type PrefixMatchState } from '../../prefix/match-state.js';
import { blockKey } from '../../prefix/prefix-index.js';
import { definePlugin } from '../definition.js';
import { UNLIMITED, assignBurst, type BurstEntry } from './burst-assign.js';

export const BURST_PREFIX_PRODUCER_TYPE = 'burst-prefix-cache-producer';
const DEFAULT_MAX_BLOCKS = 2048;

const int = z.number().int('must be an integer');
const unlimitedOrPositive = (fallback: number) =>
  int.refine((v) => v === UNLIMITED || v >= 1, 'must be -1 (unlimited) or >= 1').default(fallback);

export const burstParams = z
  .object({
    windowDurationMs: int.min(1, 'must be > 0').max(10_000, 'must be <= 10000').default(100),
    maxPerReplica: unlimitedOrPositive(UNLIMITED),
    blockSizeTokens: int.min(1, 'must be > 0').default(64),
    maxPrefixTokensToMatch: int.min(0, 'must be >= 0').default(0),
    minColocateBlocks: int.min(0, 'must be >= 0').default(0),
    maxBatchSize: unlimitedOrPositive(1000),
    balanceBy: z
      .enum(['', 'requests', 'tokens'], { message: 'must be requests or tokens' })
      .default('requests')
      .transform((b) => b || 'requests'),
  })
  .strict()
  .refine((p) => p.maxPrefixTokensToMatch === 0 || p.maxPrefixTokensToMatch >= p.blockSizeTokens, {
    message: 'must be 0 or >= blockSizeTokens; a smaller positive value yields zero prefix blocks',
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
  description: 'Co-locates bursts of prompt-sharing requests arriving within a window.',
  params: burstParams,
  create: (ctx, p): BurstProducer => {
    const maxBlocks = p.maxPrefixTokensToMatch > 0 ? Math.floor(p.maxPrefixTokensToMatch / p.blockSizeTokens) : DEFAULT_MAX_BLOCKS;
    let open: Batch | undefined;

    const join = (entry: BurstEntry): Batch => {
      if (!open) {
        const b: Batch = { entries: [], sealed: undefined as unknown as Promise<void> };
        b.sealed = new Promise((resolve) =>
          setTimeout(() => {
            if (open === b) open = undefined;
            assignBurst(b.entries, p.maxPerReplica, p.minColocateBlocks, p.balanceBy === 'tokens');
            resolve();
          }, p.windowDurationMs),
        );
        open = b;
      }
      if (p.maxBatchSize !== UNLIMITED && open.entries.length >= p.maxBatchSize) throw new Error(`burst prefix batch full: maxBatchSize ${p.maxBatchSize} reached`);
      open.entries.push(entry);
      return open;
    };

    return {
      type: ctx.type,
      name: ctx.name,
      burstPrefixProducer: true,
      async produceAsync(c: SchedulingContext, candidates: readonly Endpoint[], signal: AbortSignal) {
        const seed = chainSeed(c.request.targetModel, c.request.cacheSalt);
        const keys = c.request.prompts.map((prompt) => promptBlockHashes(seed, prompt, p.blockSizeTokens, maxBlocks).map(blockKey));
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
        const totalBlocks = keys.reduce((n, k) => n + k.length, 0);
        const matched = new Map<string, number>();
        // The assigned replica is one of the batch's first request's candidates: it counts only if it is one of ours.
        if (entry.assigned && candidates.some((e) => e.id === entry.assigned!.id)) matched.set(entry.assigned.id, totalBlocks);
        const state: PrefixMatchState = { blockSizeTokens: p.blockSizeTokens, totalBlocks, matched, keys };
        c.state.set(prefixStateKey(ctx.name), state);
      },
    };
  },
});
