/**
 * `queue-scorer`: prefers short waiting queues. score = (max − q) / (max − min) over the candidates, q =
 * vllm:num_requests_waiting; when every queue is equal, every endpoint scores 1. No parameters.
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const queueScorer = definePlugin({
  kind: 'scorer',
  description: 'Min-max normalized waiting-queue size, shorter is better.',
  params: z.object({}),
  create: (ctx): Scorer => ({
    type: ctx.type,
    name: ctx.name,
    score(_c, endpoints) {
      let min = Infinity;
      let max = -Infinity;
      for (const e of endpoints) {
        const q = e.metrics.waitingQueueSize;
        if (q < min) min = q;
        if (q > max) max = q;
      }
      const out = new Float64Array(endpoints.length);
      for (let i = 0; i < endpoints.length; i++) out[i] = max === min ? 1 : (max - endpoints[i]!.metrics.waitingQueueSize) / (max - min);
      return out;
    },
  }),
});
