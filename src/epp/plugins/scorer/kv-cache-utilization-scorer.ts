/** `kv-cache-utilization-scorer`: score = 1 − vllm:kv_cache_usage_perc (0..1). No parameters. */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const kvCacheUtilizationScorer = definePlugin({
  kind: 'scorer',
  description: 'Free KV-cache fraction.',
  params: z.object({}).strict(),
  create: (ctx): Scorer => ({
    type: ctx.type,
    name: ctx.name,
    score: (_context, endpoints) => endpoints.map((endpoint) => 1 - endpoint.metrics.kvCacheUsage),
  }),
});
