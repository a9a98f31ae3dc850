/**
 * `endpoint-attribute-filter` (llm-d-router): keeps the candidates whose numeric endpoint attribute passes a threshold
 * (`value <operator> threshold.value`), e.g. a GPU utilization published by core-metrics-extractor customMetrics.
 *
 * Parameters: `attribute` (required), `producer` (default core-metrics-extractor; see datalayer/endpoint-attribute.ts),
 * `onMissing` (`Pass` keeps an endpoint without the attribute, the default; `Fail` drops it), `fallbackOnEmpty`
 * (false; true returns every candidate when none passes), `algorithm: {type: threshold, threshold: {operator, value}}`
 * with operator LessThan, LessThanOrEqual, GreaterThan, GreaterThanOrEqual, Equal or NotEqual and value a number
 * (default 0, as upstream). `threshold` is the only algorithm upstream implements.
 */
import { z } from 'zod';
import type { Filter } from '../../framework/types.js';
import { attributeReader } from '../datalayer/endpoint-attribute.js';
import { definePlugin } from '../definition.js';

const OPERATORS = {
  LessThan: (value: number, limit: number) => value < limit,
  LessThanOrEqual: (value: number, limit: number) => value <= limit,
  GreaterThan: (value: number, limit: number) => value > limit,
  GreaterThanOrEqual: (value: number, limit: number) => value >= limit,
  Equal: (value: number, limit: number) => value === limit,
  NotEqual: (value: number, limit: number) => value !== limit,
} as const;
const OPERATOR_NAMES = Object.keys(OPERATORS) as Array<keyof typeof OPERATORS>;

export const endpointAttributeFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps endpoints whose numeric attribute passes a threshold.',
  params: z
    .object({
      attribute: z.string({ error: 'is required' }).min(1, 'must not be empty'),
      producer: z.string().optional(),
      onMissing: z
        .enum(['', 'Pass', 'Fail'], { error: 'must be Pass or Fail' })
        .default('Pass')
        .transform((value) => value || 'Pass'),
      fallbackOnEmpty: z.boolean().default(false),
      algorithm: z
        .object(
          {
            type: z.literal('threshold', { error: 'must be "threshold" (the only algorithm upstream implements)' }),
            threshold: z
              .object(
                {
                  operator: z.enum(OPERATOR_NAMES, { error: `must be one of ${OPERATOR_NAMES.join(', ')}` }),
                  value: z.number().default(0),
                },
                { error: 'is required when algorithm.type is threshold' },
              )
              .strict(),
          },
          { error: 'is required' },
        )
        .strict(),
    })
    .strict(),
  create: (ctx, params): Filter => {
    const read = attributeReader(ctx, 'attribute', params.attribute, params.producer);
    const passes = OPERATORS[params.algorithm.threshold.operator];
    const limit = params.algorithm.threshold.value;
    const passOnMissing = params.onMissing === 'Pass';
    return {
      type: ctx.type,
      name: ctx.name,
      filter(_cycle, endpoints) {
        const kept = endpoints.filter((endpoint) => {
          const v = read(endpoint);
          return v === undefined ? passOnMissing : passes(v, limit);
        });
        return kept.length === 0 && params.fallbackOnEmpty ? [...endpoints] : kept;
      },
    };
  },
});
