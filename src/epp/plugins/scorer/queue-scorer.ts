/**
 * `queue-scorer`: prefers short waiting queues. score = (max − q) / (max − min) over the candidates, q =
 * vllm:num_requests_waiting; when every queue is equal, every endpoint scores 1. No parameters.
 */
import { z } from 'zod';
import type { Endpoint, Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

/** (max − v) / (max − min) over the endpoints; 1 for all when every value is equal. */
export function minMaxLowerIsBetter(endpoints: readonly Endpoint[], value: (endpoint: Endpoint) => number): Float64Array {
  let min = Infinity;
  let max = -Infinity;
  for (const e of endpoints) {
    const v = value(e);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const out = new Float64Array(endpoints.length);
  for (let i = 0; i < endpoints.length; i++) out[i] = max === min ? 1 : (max - value(endpoints[i]!)) / (max - min);
  return out;
}

export const queueScorer = definePlugin({
  kind: 'scorer',
  description: 'Min-max normalized waiting-queue size, shorter is better.',
  params: z.object({}).strict(),
  create: (ctx): Scorer => ({ type: ctx.type, name: ctx.name, score: (_context, endpoints) => minMaxLowerIsBetter(endpoints, (endpoint) => endpoint.metrics.waitingQueueSize) }),
});
