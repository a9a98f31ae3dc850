/**
 * `no-hit-lru-scorer`: spreads cold requests (no candidate holds any prefix block) over the endpoints least recently
 * given one, so new prefixes land where the cache is coldest.
 *
 * - Some candidate has matchedBlocks > 0 → every candidate scores 0.5 (the prefix scorer decides).
 * - Cold: endpoints never given a cold request come first in candidate order, then used ones by LRU age, oldest first;
 *   the i-th of n scores 1 − i/(n − 1) (a single candidate scores 1).
 * - PreRequest (cold requests only): the decode pick and the pick of the profile named "prefill" become the most
 *   recently used.
 *
 * Parameters: `lruSize` (int, default 1024; 0 or less means the default, as upstream), `prefixMatchInfoProducerName`
 * (default: the first producer), and llm-d v0.7.1's `prefixPluginType` / `prefixPluginName`, which name the prefix
 * plugin whose match info is read (see producer-ref.ts; llm-d-router keeps them but no longer reads them).
 */
import { z } from 'zod';
import type { Endpoint, PreRequest, Scorer, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { PREFIX_MATCH_DATA, prefixState } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';
import { prefixProducerFor } from './producer-ref.js';

export const noHitLruScorer = definePlugin({
  kind: 'scorer',
  requires: [PREFIX_MATCH_DATA],
  description: 'Cold requests go to the least recently used endpoints.',
  params: z.object({
    lruSize: z
      .number()
      .int()
      .default(1024)
      .transform((count) => (count > 0 ? count : 1024)),
    prefixMatchInfoProducerName: z.string().optional(),
    prefixPluginType: z.string().min(1).optional(),
    prefixPluginName: z.string().min(1).optional(),
  }).strict(),
  create: (ctx, params): Scorer & PreRequest => {
    const producer = prefixProducerFor(ctx, params);
    const coldKey = `no-hit-lru/${ctx.name}/cold`;
    /** Endpoint ids, least recently used first (Map keeps insertion order). */
    const lru = new Map<string, true>();
    const touch = (id: string) => {
      lru.delete(id);
      lru.set(id, true);
      if (lru.size > params.lruSize) lru.delete(lru.keys().next().value!);
    };
    return {
      type: ctx.type,
      name: ctx.name,
      score(context: SchedulingContext, endpoints: readonly Endpoint[]) {
        const s = prefixState(context, producer);
        const hot = s !== undefined && endpoints.some((endpoint) => (s.matched.get(endpoint.id) ?? 0) > 0);
        if (hot) return endpoints.map(() => 0.5);
        context.state.set(coldKey, true);
        const n = endpoints.length;
        if (n === 1) return [1];
        const neverUsed: number[] = [];
        const used: Array<{ i: number; age: number }> = [];
        const ages = new Map<string, number>();
        let age = 0;
        for (const id of lru.keys()) ages.set(id, age++);
        endpoints.forEach((endpoint, i) => {
          const a = ages.get(endpoint.id);
          if (a === undefined) neverUsed.push(i);
          else used.push({ i, age: a });
        });
        used.sort((left, right) => left.age - right.age);
        const out = new Float64Array(n);
        const order = [...neverUsed, ...used.map((entry) => entry.i)];
        order.forEach((idx, rank) => (out[idx] = 1 - rank / (n - 1)));
        return out;
      },
      preRequest(context: SchedulingContext, result: SchedulingResult) {
        if (context.state.get(coldKey) !== true) return;
        const decode = result.results.get(result.primaryProfile)?.targets[0];
        const prefill = result.results.get('prefill')?.targets[0];
        if (decode) touch(decode.id);
        if (prefill) touch(prefill.id);
      },
    };
  },
});
