/**
 * `lora-affinity-scorer` (GAIE v1.5, llm-d-router): prefers model servers where the request's target model (a LoRA
 * adapter name) is already loaded or can be loaded soon, from `vllm:lora_requests_info` (core-metrics-extractor's
 * loraSpec; the newest series): 1 when the adapter is running there; 0.8 when the server has room for another
 * adapter (adapters running + waiting < max_lora); 0.6 when the adapter is waiting there; else 0. A server that has
 * reported no LoRA info (no adapter loaded yet, or an engine without a loraSpec) has no room: 0. No parameters.
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const loraAffinityScorer = definePlugin({
  kind: 'scorer',
  description: 'LoRA adapter affinity: running 1, room to load 0.8, waiting 0.6, else 0.',
  params: z.object({}).strict(),
  create: (ctx): Scorer => ({
    type: ctx.type,
    name: ctx.name,
    score(cycle, endpoints) {
      const target = cycle.request.targetModel;
      const out = new Float64Array(endpoints.length);
      for (let i = 0; i < endpoints.length; i++) {
        const lora = endpoints[i].metrics.lora;
        if (!lora) continue;
        const running = new Set(lora.running);
        const waiting = new Set(lora.waiting);
        if (running.has(target)) out[i] = 1;
        else if (running.size + waiting.size < lora.maxLoras) out[i] = 0.8;
        else if (waiting.has(target)) out[i] = 0.6;
      }
      return out;
    },
  }),
});
