/**
 * `core-metrics-extractor` (GAIE v1.4 calls it `model-server-protocol-metrics`): maps the scraped metrics to endpoint
 * fields by engine, chosen per endpoint by a label. Built-in engines (upstream's): vllm, sglang, trtllm-serve,
 * triton-tensorrt-llm, triton (datalayer/engine-metrics.ts).
 *
 * Parameters:
 * - `engineLabelKey` (default `llm-d.ai/engine-type`; pd-router also reads the legacy
 *   `inference.networking.k8s.io/engine-type` while the key is the default).
 * - `defaultEngine` (default vllm): the engine of endpoints without the label; must be a known engine.
 * - `engineConfigs`: engines defined or replaced by name: `name`, `queuedRequestsSpec`, `runningRequestsSpec`,
 *   `kvUsageSpec`, `cacheInfoSpec` (+ `cacheBlockSizeLabelName` = block_size, `cacheNumBlocksLabelName` =
 *   num_gpu_blocks), `cacheBlockSizeSpec`, `cacheNumBlocksSpec`: PromQL-style selectors `name{label=value}`; an empty
 *   spec is not read. A replaced built-in keeps pd-router's extra decider reads (vLLM histograms and counters).
 *   `loraSpec`: the LoRA info gauge (built-in vllm: `vllm:lora_requests_info`), read by `lora-affinity-scorer`.
 *   `customMetrics` ([{attributeKey, metricSpec}]): scalars published as endpoint attributes under the producer
 *   `core-metrics-extractor`, read by `endpoint-attribute-filter` and `endpoint-attribute-scorer`.
 */
import { z } from 'zod';
import { ENGINES, ENGINE_LABELS, EngineRegistry, parseMetricSpec, type EngineMetricNames, type MetricSpec } from '../../datalayer/engine-metrics.js';
import type { Plugin } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const CORE_METRICS_EXTRACTOR_TYPE = 'core-metrics-extractor';
/** Numeric endpoint attributes (engineConfigs customMetrics), read by the endpoint-attribute plugins. */
export const ENDPOINT_ATTRIBUTE_DATA = 'endpoint-attributes';

export interface MetricsExtractor extends Plugin {
  readonly extractor: true;
  readonly engines: EngineRegistry;
}

const metricSpec = z.string().transform((text, ctx): MetricSpec | undefined => {
  try {
    return parseMetricSpec(text);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const engineConfig = z
  .object({
    name: z.string().min(1, 'engine config name cannot be empty').refine((count) => count !== 'default', 'engine config name cannot be "default" (reserved)'),
    queuedRequestsSpec: metricSpec.optional(),
    runningRequestsSpec: metricSpec.optional(),
    kvUsageSpec: metricSpec.optional(),
    loraSpec: metricSpec.optional(),
    cacheInfoSpec: metricSpec.optional(),
    cacheBlockSizeLabelName: z.string().optional(),
    cacheNumBlocksLabelName: z.string().optional(),
    cacheBlockSizeSpec: metricSpec.optional(),
    cacheNumBlocksSpec: metricSpec.optional(),
    customMetrics: z
      .array(z.object({ attributeKey: z.string().min(1, 'custom metric attributeKey cannot be empty'), metricSpec: metricSpec }).strict())
      .default([])
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        for (const [i, c] of list.entries()) {
          if (seen.has(c.attributeKey)) ctx.addIssue({ code: 'custom', path: [i, 'attributeKey'], message: `custom metric attributeKey "${c.attributeKey}" is duplicated` });
          if (!c.metricSpec) ctx.addIssue({ code: 'custom', path: [i, 'metricSpec'], message: `custom metric "${c.attributeKey}" spec cannot be empty` });
          seen.add(c.attributeKey);
        }
      }),
  })
  .strict();

type EngineConfig = z.infer<typeof engineConfig>;

const params = z
  .object({
    engineLabelKey: z.string().default(''),
    defaultEngine: z.string().default(''),
    engineConfigs: z.array(engineConfig).default([]),
  })
  .strict();

function engineOf(config: EngineConfig): EngineMetricNames {
  const builtIn = ENGINES[config.name];
  const one = (metricSpec: MetricSpec | undefined) => (metricSpec ? [metricSpec] : []);
  return {
    waiting: one(config.queuedRequestsSpec),
    running: one(config.runningRequestsSpec),
    kvUsage: one(config.kvUsageSpec),
    cacheConfig: config.cacheInfoSpec
      ? { spec: config.cacheInfoSpec, blockSizeLabel: config.cacheBlockSizeLabelName || 'block_size', numBlocksLabel: config.cacheNumBlocksLabelName || 'num_gpu_blocks' }
      : undefined,
    cacheBlockSize: config.cacheBlockSizeSpec,
    cacheNumBlocks: config.cacheNumBlocksSpec,
    lora: config.loraSpec,
    custom: config.customMetrics.map((metric) => ({ attributeKey: metric.attributeKey, spec: metric.metricSpec! })),
    histograms: builtIn?.histograms ?? {},
    counters: builtIn?.counters ?? {},
  };
}

export const coreMetricsExtractor = definePlugin({
  kind: 'metrics-extractor',
  produces: [ENDPOINT_ATTRIBUTE_DATA],
  description: 'Extracts queue, running, KV usage and cache config from scraped metrics, per engine.',
  params,
  create: (ctx, params): MetricsExtractor => {
    const engines: Record<string, EngineMetricNames> = { ...ENGINES };
    const seen = new Set<string>();
    for (const c of params.engineConfigs) {
      if (seen.has(c.name)) throw new Error(`engineConfigs: engine "${c.name}" is defined twice`);
      seen.add(c.name);
      engines[c.name] = engineOf(c);
    }
    const labelKeys = params.engineLabelKey && params.engineLabelKey !== ENGINE_LABELS[0] ? [params.engineLabelKey] : ENGINE_LABELS;
    const defaultEngine = params.defaultEngine || 'vllm';
    if (!engines[defaultEngine]) throw new Error(`parameter "defaultEngine": "${defaultEngine}" is not a built-in engine or one of engineConfigs`);
    return { type: ctx.type, name: ctx.name, extractor: true, engines: new EngineRegistry(engines, labelKeys, defaultEngine) };
  },
});
