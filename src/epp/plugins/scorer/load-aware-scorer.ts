/**
 * `load-aware-scorer`: an empty waiting queue scores 0.5; otherwise 0.5 × (1 − min(q, threshold) / threshold), so a
 * queue at or beyond the threshold scores 0.
 *
 * Parameters: `threshold` (int, default 128; a value <= 0 means the default, with a load warning, as upstream).
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const loadAwareScorer = definePlugin({
  kind: 'scorer',
  description: 'Waiting-queue size against a threshold, in [0, 0.5].',
  params: z.object({ threshold: z.number().int().default(128) }).strict(),
  create: (ctx, params): Scorer => {
    if (params.threshold <= 0) ctx.warn(`parameter "threshold" ${params.threshold} is not positive; using the default 128, as upstream`);
    const threshold = params.threshold > 0 ? params.threshold : 128;
    return {
    type: ctx.type,
    name: ctx.name,
    score: (_context, endpoints) =>
      endpoints.map((endpoint) => {
        const q = endpoint.metrics.waitingQueueSize;
        return q <= 0 ? 0.5 : 0.5 * (1 - Math.min(q, threshold) / threshold);
      }),
    };
  },
});
