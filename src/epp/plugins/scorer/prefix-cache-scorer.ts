/**
 * `prefix-cache-scorer`: prefers endpoints that already hold the request's prefix, per `approx-prefix-cache-producer`.
 *
 * score = w × min(1, matchedBlocks × blockSize / scale)² + (1 − w) × matchedBlocks / totalBlocks; 0 when the
 * producer left no match info or the request has no blocks.
 *
 * Parameters: `matchLengthWeight` w (0..1, default 0), `matchLengthScaleTokens` scale (int > 0, default 8192),
 * `prefixMatchInfoProducerName` (default: the first approx-prefix-cache-producer).
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { prefixState } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';
import { resolvePrefixProducer } from './producer-ref.js';

export const prefixCacheScorer = definePlugin({
  kind: 'scorer',
  description: 'Fraction of the prompt prefix the endpoint is believed to hold.',
  params: z.object({
    matchLengthWeight: z.number().min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').default(0),
    matchLengthScaleTokens: z.number().int().positive('must be > 0').default(8192),
    prefixMatchInfoProducerName: z.string().optional(),
  }),
  create: (ctx, p): Scorer => {
    const producer = resolvePrefixProducer(ctx, p.prefixMatchInfoProducerName);
    const w = p.matchLengthWeight;
    return {
      type: ctx.type,
      name: ctx.name,
      score(c, endpoints) {
        const out = new Float64Array(endpoints.length);
        const s = prefixState(c, producer);
        if (!s || s.totalBlocks === 0) return out;
        for (let i = 0; i < endpoints.length; i++) {
          const m = s.matched.get(endpoints[i]!.id) ?? 0;
          if (m === 0) continue;
          const length = Math.min(1, (m * s.blockSizeTokens) / p.matchLengthScaleTokens);
          out[i] = w * length * length + (1 - w) * (m / s.totalBlocks);
        }
        return out;
      },
    };
  },
});
