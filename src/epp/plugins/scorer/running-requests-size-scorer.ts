/**
 * `running-requests-size-scorer` (GAIE v1.4/v1.5, llm-d-router): prefers endpoints running fewer requests.
 * score = (max − r) / (max − min) over the candidates, r = vllm:num_requests_running; when every count is equal, every
 * endpoint scores 1. No parameters.
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { minMaxLowerIsBetter } from './queue-scorer.js';

export const runningRequestsSizeScorer = definePlugin({
  kind: 'scorer',
  description: 'Min-max normalized running-request count, fewer is better.',
  params: z.object({}).strict(),
  create: (ctx): Scorer => ({ type: ctx.type, name: ctx.name, score: (_context, endpoints) => minMaxLowerIsBetter(endpoints, (endpoint) => endpoint.metrics.runningRequests) }),
});
