/**
 * `core-metrics-extractor`: maps the scraped metrics to endpoint fields by engine, chosen per endpoint by the label
 * `llm-d.ai/engine-type` (legacy `inference.networking.k8s.io/engine-type`; default vllm). Built-in engines: vllm and
 * sglang (see datalayer/engine-metrics.ts). No parameters are supported; upstream's custom `engineConfigs` are
 * rejected rather than silently ignored.
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';

export const coreMetricsExtractor = definePlugin({
  kind: 'datalayer',
  description: 'Extracts queue, running, KV usage and cache config from scraped metrics.',
  params: z.object({}).strict(),
  strictParams: true,
  create: (ctx) => ({ type: ctx.type, name: ctx.name, extractor: true }),
});
