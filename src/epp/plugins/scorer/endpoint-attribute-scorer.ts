/**
 * `endpoint-attribute-scorer` (llm-d-router): scores candidates by a numeric endpoint attribute, linearly:
 * score = (v − min) / (max − min), inverted for `linear_lower_is_better`. The range is the candidates' own
 * (`adaptiveRange`, the default; all equal → 1) or `fixedRange: {min, max}` (values clamped into it). An endpoint
 * without the attribute scores 0 and takes no part in the adaptive range.
 *
 * Parameters: `attributeKey` (required), `producer` (default core-metrics-extractor; see
 * datalayer/endpoint-attribute.ts), `algorithm: {type: linear_lower_is_better | linear_higher_is_better,
 * normalization?: {adaptiveRange: {}} | {fixedRange: {min, max}}}` (at most one strategy; min < max).
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { attributeReader } from '../datalayer/endpoint-attribute.js';
import { definePlugin } from '../definition.js';

export const endpointAttributeScorer = definePlugin({
  kind: 'scorer',
  description: 'Linear score of a numeric endpoint attribute over an adaptive or fixed range.',
  params: z
    .object({
      attributeKey: z.string({ error: 'is required' }).min(1, 'must not be empty'),
      producer: z.string().optional(),
      algorithm: z
        .object(
          {
            type: z.enum(['linear_lower_is_better', 'linear_higher_is_better'], {
              error: 'must be linear_lower_is_better or linear_higher_is_better',
            }),
            normalization: z
              .object({
                fixedRange: z
                  .object({ min: z.number().default(0), max: z.number().default(0) })
                  .strict()
                  .optional(),
                adaptiveRange: z.object({}).strict().optional(),
              })
              .strict()
              .default({})
              .refine(
                (normalization) => !(normalization.fixedRange && normalization.adaptiveRange),
                'at most one normalization strategy: fixedRange or adaptiveRange',
              )
              .refine(
                (normalization) =>
                  !normalization.fixedRange || normalization.fixedRange.min < normalization.fixedRange.max,
                'fixedRange needs min < max',
              ),
          },
          { error: 'is required' },
        )
        .strict(),
    })
    .strict(),
  create: (ctx, params): Scorer => {
    const read = attributeReader(ctx, 'attributeKey', params.attributeKey, params.producer);
    const lowerIsBetter = params.algorithm.type === 'linear_lower_is_better';
    const fixed = params.algorithm.normalization.fixedRange;
    return {
      type: ctx.type,
      name: ctx.name,
      score(_cycle, endpoints) {
        const values = endpoints.map(read);
        let [min, max] = fixed ? [fixed.min, fixed.max] : [Infinity, -Infinity];
        if (!fixed) {
          for (const v of values) {
            if (v === undefined) continue;
            if (v < min) min = v;
            if (v > max) max = v;
          }
        }
        return values.map((value) => {
          if (value === undefined) return 0;
          if (max === min) return 1;
          const x = Math.max(0, Math.min(1, (value - min) / (max - min)));
          return lowerIsBetter ? 1 - x : x;
        });
      },
    };
  },
});
