/**
 * `load-aware-scorer`: an empty waiting queue scores 0.5; otherwise 0.5 × (1 − min(q, threshold) / threshold), so a
 * queue at or beyond the threshold scores 0.
 *
 * Parameters: `threshold` (int > 0, default 128).
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const loadAwareScorer = definePlugin({
  kind: 'scorer',
  description: 'Waiting-queue size against a threshold, in [0, 0.5].',
  params: z.object({ threshold: z.number().int().positive('must be > 0').default(128) }),
  create: (ctx, p): Scorer => ({
    type: ctx.type,
    name: ctx.name,
    score: (_c, endpoints) =>
      endpoints.map((e) => {
        const q = e.metrics.waitingQueueSize;
        return q <= 0 ? 0.5 : 0.5 * (1 - Math.min(q, p.threshold) / p.threshold);
      }),
  }),
});
