/**
 * Every plugin type pd-router accepts in an EndpointPickerConfig, by its upstream type name. This is the one place a
 * type string is written; each entry's file documents the plugin's parameters and formula.
 */
import { alwaysDisaggMultimodalDecider, alwaysDisaggPdDecider, costBasedPdDecider, prefixBasedPdDecider, type DeciderDefinition } from '../../decider/index.js';
import { definePlugin, type PluginDefinition } from './definition.js';
import { byLabelFilter } from './filter/by-label.js';
import { decodeFilter } from './filter/decode-filter.js';
import { encodeFilter } from './filter/encode-filter.js';
import { labelSelectorFilter } from './filter/label-selector-filter.js';
import { prefillFilter } from './filter/prefill-filter.js';
import { maxScorePicker } from './picker/max-score-picker.js';
import { randomPicker } from './picker/random-picker.js';
import { weightedRandomPicker } from './picker/weighted-random-picker.js';
import { disaggHeadersHandler } from './profile-handler/disagg-headers-handler.js';
import { disaggProfileHandler } from './profile-handler/disagg-profile-handler.js';
import { pdProfileHandler } from './profile-handler/pd-profile-handler.js';
import { singleProfileHandler } from './profile-handler/single-profile-handler.js';
import { approxPrefixCacheProducer } from './producer/approx-prefix-cache-producer.js';
import { activeRequestScorer } from './scorer/active-request-scorer.js';
import { kvCacheUtilizationScorer } from './scorer/kv-cache-utilization-scorer.js';
import { loadAwareScorer } from './scorer/load-aware-scorer.js';
import { noHitLruScorer } from './scorer/no-hit-lru-scorer.js';
import { prefixCacheScorer } from './scorer/prefix-cache-scorer.js';
import { queueScorer } from './scorer/queue-scorer.js';
import { coreMetricsExtractor } from './datalayer/core-metrics-extractor.js';
import { fileDiscovery } from './datalayer/file-discovery.js';
import { metricsDataSource } from './datalayer/metrics-data-source.js';
import { tokenProducer } from './datalayer/token-producer.js';
import { anthropicParser } from './parser/anthropic-parser.js';
import { openaiParser } from './parser/openai-parser.js';
import { passthroughParser } from './parser/passthrough-parser.js';
import { vllmhttpParser } from './parser/vllmhttp-parser.js';

/** A decider from src/decider as an EPP plugin. */
function deciderPlugin(d: DeciderDefinition): PluginDefinition {
  return definePlugin({ kind: 'decider', description: d.description, params: d.params, create: (ctx, params) => d.create(ctx.type, ctx.name, params) });
}

export const PLUGIN_REGISTRY: Readonly<Record<string, PluginDefinition>> = {
  // filters
  'decode-filter': decodeFilter,
  'prefill-filter': prefillFilter,
  'encode-filter': encodeFilter,
  'label-selector-filter': labelSelectorFilter,
  'by-label': byLabelFilter,
  // scorers
  'queue-scorer': queueScorer,
  'kv-cache-utilization-scorer': kvCacheUtilizationScorer,
  'load-aware-scorer': loadAwareScorer,
  'active-request-scorer': activeRequestScorer,
  'no-hit-lru-scorer': noHitLruScorer,
  'prefix-cache-scorer': prefixCacheScorer,
  // pickers
  'max-score-picker': maxScorePicker,
  'random-picker': randomPicker,
  'weighted-random-picker': weightedRandomPicker,
  // profile handlers and header writers
  'single-profile-handler': singleProfileHandler,
  'disagg-profile-handler': disaggProfileHandler,
  'pd-profile-handler': pdProfileHandler,
  'disagg-headers-handler': disaggHeadersHandler,
  'prefill-header-handler': disaggHeadersHandler,
  // deciders (src/decider)
  'always-disagg-pd-decider': deciderPlugin(alwaysDisaggPdDecider),
  'prefix-based-pd-decider': deciderPlugin(prefixBasedPdDecider),
  'always-disagg-multimodal-decider': deciderPlugin(alwaysDisaggMultimodalDecider),
  // pd-router's own (not in llm-d)
  'cost-based-pd-decider': deciderPlugin(costBasedPdDecider as DeciderDefinition),
  // data producers
  'approx-prefix-cache-producer': approxPrefixCacheProducer,
  'token-producer': tokenProducer,
  // data layer
  'file-discovery': fileDiscovery,
  'metrics-data-source': metricsDataSource,
  'core-metrics-extractor': coreMetricsExtractor,
  // request parsers
  'openai-parser': openaiParser,
  'anthropic-parser': anthropicParser,
  'vllmhttp-parser': vllmhttpParser,
  'passthrough-parser': passthroughParser,
};

/** Upstream plugin types pd-router does not implement, with what to use instead; named in the load error. */
export const UNSUPPORTED_UPSTREAM_TYPES: Readonly<Record<string, string>> = {
  'precise-prefix-cache-scorer': 'it needs vLLM KV-cache events; use approx-prefix-cache-producer with prefix-cache-scorer',
  'session-affinity-scorer': 'not implemented',
  'lora-affinity-scorer': 'LoRA scheduling is not implemented',
  'utilization-detector': 'saturation-based shedding needs InferenceObjective priorities, which pd-router does not read',
  'vllmgrpc-parser': 'gRPC model servers are not supported',
  'sglanggrpc-parser': 'gRPC model servers are not supported',
  'vertexai-parser': 'not implemented',
};
