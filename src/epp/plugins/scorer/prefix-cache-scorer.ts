/**
 * `prefix-cache-scorer`: prefers endpoints that already hold the request's prefix, per `approx-prefix-cache-producer`.
 *
 * score = w × min(1, matchedBlocks × blockSize / scale)² + (1 − w) × matchedBlocks / totalBlocks; 0 when the
 * producer left no match info or the request has no blocks. (GAIE v1.4's scorer is the w = 0 case.)
 *
 * Parameters (llm-d-router): `matchLengthWeight` w (0..1, default 0), `matchLengthScaleTokens` scale (int, default
 * 8192; must be > 0 when w > 0), `prefixMatchInfoProducerName` (default: the first approx-prefix-cache-producer).
 *
 * GAIE v1.4/v1.5 parameters: in GAIE the scorer owned the prefix index, configured by `autoTune`, `blockSizeTokens`,
 * `blockSize`, `maxPrefixBlocksToMatch`, `maxPrefixTokensToMatch` and `lruCapacityPerServer`. As GAIE v1.5's loader
 * does, pd-router's loader moves them to the `approx-prefix-cache-producer` it creates for the scorer, where they
 * mean what approx-prefix-cache-producer.ts says (`maxPrefixBlocksToMatch` keeps its reach in tokens). Where GAIE
 * v1.5 would drop them silently, pd-router fails: when an approx-prefix-cache-producer is configured (set them
 * there) or `prefixMatchInfoProducerName` is set, or when two scorers set different values (one producer is created).
 * `hashBlockSize` (GAIE v0.x's block size in characters, which GAIE v1.x no longer reads) is accepted with a warning
 * and has no effect, as in llm-d v0.7.1.
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { PREFIX_MATCH_DATA, prefixState } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';
import { PRODUCER_PARAMETER_KEYS, approxPrefixCacheParams } from '../producer/approx-prefix-cache-producer.js';
import { resolvePrefixProducer, type PrefixConsumer } from './producer-ref.js';

/** The GAIE producer parameters a scorer may carry; validated by the loader with the producer's schema. */
const producerKeys = Object.fromEntries(PRODUCER_PARAMETER_KEYS.map((k) => [k, z.unknown().optional()])) as Record<(typeof PRODUCER_PARAMETER_KEYS)[number], z.ZodOptional<z.ZodUnknown>>;

export const prefixCacheScorer = definePlugin({
  kind: 'scorer',
  requires: [PREFIX_MATCH_DATA],
  producerParameters: {
    data: PREFIX_MATCH_DATA,
    index: 'prefix',
    keys: PRODUCER_PARAMETER_KEYS,
    params: approxPrefixCacheParams,
    producerReference: 'prefixMatchInfoProducerName',
  },
  description: 'Fraction of the prompt prefix the endpoint is believed to hold.',
  params: z
    .object({
      matchLengthWeight: z.number().min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').default(0),
      matchLengthScaleTokens: z.number().int().min(0, 'must be >= 0').default(8192),
      prefixMatchInfoProducerName: z.string().optional(),
      hashBlockSize: z.number().int().optional(),
      ...producerKeys,
    })
    .strict()
    .refine((params) => params.matchLengthWeight === 0 || params.matchLengthScaleTokens > 0, {
      message: 'must be > 0 when matchLengthWeight is > 0',
      path: ['matchLengthScaleTokens'],
    }),
  create: (ctx, params): Scorer & PrefixConsumer => {
    if (params.hashBlockSize !== undefined) {
      ctx.warn(`parameter "hashBlockSize" (GAIE v0.x's block size in characters) has no effect, as in GAIE v1.x; the block size is blockSizeTokens or the model server's`);
    }
    const producer = resolvePrefixProducer(ctx, params.prefixMatchInfoProducerName);
    const w = params.matchLengthWeight;
    return {
      type: ctx.type,
      name: ctx.name,
      prefixProducer: producer,
      score(context, endpoints) {
        const out = new Float64Array(endpoints.length);
        const s = prefixState(context, producer);
        if (!s || s.totalBlocks === 0) return out;
        for (let i = 0; i < endpoints.length; i++) {
          const m = s.matched.get(endpoints[i]!.id) ?? 0;
          if (m === 0) continue;
          const length = w > 0 ? Math.min(1, (m * s.blockSizeTokens) / params.matchLengthScaleTokens) : 0;
          out[i] = w * length * length + (1 - w) * (m / s.totalBlocks);
        }
        return out;
      },
    };
  },
});
