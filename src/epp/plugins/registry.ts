/**
 * Every plugin type pd-router accepts in an EndpointPickerConfig, by its upstream type name (llm-d-router, llm-d
 * v0.7.1 and GAIE v1.4/v1.5, old names included). This is the one place a type string is written; each entry's file
 * documents the plugin's parameters and formula. Upstream types pd-router lacks are listed, with the reason, in
 * UNSUPPORTED_UPSTREAM_TYPES, so a config naming one fails at load saying so.
 */
import {
  alwaysDisaggMultimodalDecider,
  alwaysDisaggPdDecider,
  costBasedPdDecider,
  prefixBasedPdDecider,
  type DeciderDefinition,
} from '../../decider/index.js';
import { probabilisticAdmitter } from './admitter/probabilistic-admitter.js';
import { definePlugin, kindsOf, type PluginDefinition } from './definition.js';
import { byLabelFilter } from './filter/by-label.js';
import { decodeFilter } from './filter/decode-filter.js';
import { encodeFilter } from './filter/encode-filter.js';
import { endpointAttributeFilter } from './filter/endpoint-attribute-filter.js';
import { labelSelectorFilter } from './filter/label-selector-filter.js';
import { concurrencyDetector, utilizationDetector } from './flow-control/saturation-detectors.js';
import {
  DEFAULT_FAIRNESS_POLICY,
  DEFAULT_ORDERING_POLICY,
  DEFAULT_USAGE_LIMIT_POLICY,
  FLOW_CONTROL_POLICIES,
} from './flow-control/policies.js';
import { prefillFilter } from './filter/prefill-filter.js';
import { sessionAffinityFilter } from './filter/session-affinity-filter.js';
import { topologyAffinityFilter } from './filter/topology-affinity-filter.js';
import { maxScorePicker } from './picker/max-score-picker.js';
import { randomPicker } from './picker/random-picker.js';
import { weightedRandomPicker } from './picker/weighted-random-picker.js';
import { dataParallelProfileHandler } from './profile-handler/data-parallel-profile-handler.js';
import { disaggHeadersHandler } from './profile-handler/disagg-headers-handler.js';
import { disaggProfileHandler } from './profile-handler/disagg-profile-handler.js';
import { headerProfileHandler } from './profile-handler/header-profile-handler.js';
import { pdProfileHandler } from './profile-handler/pd-profile-handler.js';
import { singleProfileHandler } from './profile-handler/single-profile-handler.js';
import { approxPrefixCacheProducer } from './producer/approx-prefix-cache-producer.js';
import { burstPrefixCacheProducer } from './producer/burst-prefix-cache-producer.js';
import { mmEmbeddingsCacheProducer } from './producer/mm-embeddings-cache-producer.js';
import { precisePrefixCacheProducer } from './producer/precise-prefix-cache-producer.js';
import { sessionIdProducer } from './producer/session-id-producer.js';
import { activeRequestScorer } from './scorer/active-request-scorer.js';
import { contextLengthAware } from './scorer/context-length-aware.js';
import { endpointAttributeScorer } from './scorer/endpoint-attribute-scorer.js';
import { kvCacheUtilizationScorer } from './scorer/kv-cache-utilization-scorer.js';
import { loadAwareScorer } from './scorer/load-aware-scorer.js';
import { loraAffinityScorer } from './scorer/lora-affinity-scorer.js';
import { noHitLruScorer } from './scorer/no-hit-lru-scorer.js';
import { mmEmbeddingsCacheScorer } from './scorer/mm-embeddings-cache-scorer.js';
import { precisePrefixCacheScorer } from './scorer/precise-prefix-cache-scorer.js';
import { prefixCacheScorer } from './scorer/prefix-cache-scorer.js';
import { queueScorer } from './scorer/queue-scorer.js';
import { runningRequestsSizeScorer } from './scorer/running-requests-size-scorer.js';
import { sessionAffinityScorer } from './scorer/session-affinity-scorer.js';
import { topologyAffinityScorer } from './scorer/topology-affinity-scorer.js';
import { coreMetricsExtractor } from './datalayer/core-metrics-extractor.js';
import { endpointNotificationSource } from './datalayer/endpoint-notification-source.js';
import { fileDiscovery } from './datalayer/file-discovery.js';
import { metricsDataSource } from './datalayer/metrics-data-source.js';
import { modelsDataExtractor, modelsDataSource } from './datalayer/models-data-source.js';
import { tokenProducer } from './datalayer/token-producer.js';
import { topologyExtractor } from './datalayer/topology-extractor.js';
import { anthropicParser } from './parser/anthropic-parser.js';
import { openaiParser } from './parser/openai-parser.js';
import { passthroughParser } from './parser/passthrough-parser.js';
import { vllmhttpParser } from './parser/vllmhttp-parser.js';

/** The same plugin under an older upstream name; using it logs a deprecation warning naming `current`. */
function alias(def: PluginDefinition, current: string): PluginDefinition {
  return { ...def, deprecatedFor: current };
}

/** A decider from src/decider as an EPP plugin. */
function deciderPlugin(definition: DeciderDefinition): PluginDefinition {
  return definePlugin({
    kind: 'decider',
    description: definition.description,
    params: definition.params,
    create: (ctx, params) => definition.create(ctx.type, ctx.name, params),
  });
}

/** Every plugin type pd-router accepts, by its upstream type name. */
export const PLUGIN_REGISTRY: Readonly<Record<string, PluginDefinition>> = {
  // filters
  'decode-filter': decodeFilter,
  'prefill-filter': prefillFilter,
  'encode-filter': encodeFilter,
  'label-selector-filter': labelSelectorFilter,
  'by-label-selector': alias(labelSelectorFilter, 'label-selector-filter'),
  'by-label': byLabelFilter,
  'topology-affinity-filter': topologyAffinityFilter,
  'endpoint-attribute-filter': endpointAttributeFilter,
  'session-affinity-filter': sessionAffinityFilter,
  // scorers
  'queue-scorer': queueScorer,
  'running-requests-size-scorer': runningRequestsSizeScorer,
  'kv-cache-utilization-scorer': kvCacheUtilizationScorer,
  'load-aware-scorer': loadAwareScorer,
  'active-request-scorer': activeRequestScorer,
  'no-hit-lru-scorer': noHitLruScorer,
  'prefix-cache-scorer': prefixCacheScorer,
  'mm-embeddings-cache-scorer': mmEmbeddingsCacheScorer,
  'precise-prefix-cache-scorer': precisePrefixCacheScorer,
  'topology-affinity-scorer': topologyAffinityScorer,
  'endpoint-attribute-scorer': endpointAttributeScorer,
  'lora-affinity-scorer': loraAffinityScorer,
  'context-length-aware': contextLengthAware,
  'session-affinity-scorer': sessionAffinityScorer,
  // pickers
  'max-score-picker': maxScorePicker,
  'random-picker': randomPicker,
  'weighted-random-picker': weightedRandomPicker,
  // profile handlers and header writers
  'single-profile-handler': singleProfileHandler,
  'disagg-profile-handler': disaggProfileHandler,
  'pd-profile-handler': pdProfileHandler,
  'data-parallel-profile-handler': dataParallelProfileHandler,
  'header-profile-handler': headerProfileHandler,
  'disagg-headers-handler': disaggHeadersHandler,
  'prefill-header-handler': alias(disaggHeadersHandler, 'disagg-profile-handler'),
  // deciders (src/decider)
  'always-disagg-pd-decider': deciderPlugin(alwaysDisaggPdDecider),
  'prefix-based-pd-decider': deciderPlugin(prefixBasedPdDecider),
  'always-disagg-multimodal-decider': deciderPlugin(alwaysDisaggMultimodalDecider),
  // pd-router's own (not in llm-d)
  'cost-based-pd-decider': deciderPlugin(costBasedPdDecider as DeciderDefinition),
  // data producers
  'approx-prefix-cache-producer': approxPrefixCacheProducer,
  'mm-embeddings-cache-producer': mmEmbeddingsCacheProducer,
  'precise-prefix-cache-producer': precisePrefixCacheProducer,
  'burst-prefix-cache-producer': burstPrefixCacheProducer,
  'token-producer': tokenProducer,
  'session-id-producer': sessionIdProducer,
  tokenizer: alias(tokenProducer, 'token-producer'),
  // data layer
  'file-discovery': fileDiscovery,
  'metrics-data-source': metricsDataSource,
  'endpoint-notification-source': endpointNotificationSource,
  'core-metrics-extractor': coreMetricsExtractor,
  'model-server-protocol-metrics': alias(coreMetricsExtractor, 'core-metrics-extractor'),
  'topology-extractor': topologyExtractor,
  'models-data-source': modelsDataSource,
  'models-data-extractor': modelsDataExtractor,
  'model-server-protocol-models': alias(modelsDataExtractor, 'models-data-extractor'),
  // admitters (run after flow control, before the scheduler)
  'probabilistic-admitter': probabilisticAdmitter,
  // request parsers
  'openai-parser': openaiParser,
  'anthropic-parser': anthropicParser,
  'vllmhttp-parser': vllmhttpParser,
  'passthrough-parser': passthroughParser,
  // flow control: enforced by src/epp/flowcontrol with the flowControl feature gate on
  // (what is not: config/flow-control-section.ts)
  'utilization-detector': utilizationDetector,
  'concurrency-detector': concurrencyDetector,
  ...FLOW_CONTROL_POLICIES,
};

/**
 * The plugins the loader adds where a config leaves a slot empty, as llm-d's loader does (`loader/defaults.go`):
 * a profile's picker, the handler of a single profile, the request parsers, the metrics source (unless
 * `dataLayer.injectDefaults: false`) and the saturation detector. Producers of required data are found by their
 * `produces` declaration instead.
 */
export const LOADER_DEFAULTS = {
  picker: 'max-score-picker',
  profileHandler: 'single-profile-handler',
  parsers: ['openai-parser', 'anthropic-parser', 'vllmhttp-parser', 'passthrough-parser'],
  metricsSource: 'metrics-data-source',
  saturationDetector: 'utilization-detector',
  /** Upstream's default flow-control policies, which a reference may name without configuring them. */
  flowControlPolicies: [DEFAULT_FAIRNESS_POLICY, DEFAULT_ORDERING_POLICY, DEFAULT_USAGE_LIMIT_POLICY],
} as const;

/**
 * The registry's producer of `data`: the first type that declares it produces it, an alias never, nor a scorer that
 * also produces (v0.7.1's precise-prefix-cache-scorer, which needs KV events to be of use).
 */
export function producerTypeOf(registry: Readonly<Record<string, PluginDefinition>>, data: string): string | undefined {
  return Object.entries(registry).find(
    ([, def]) => !def.deprecatedFor && def.produces?.includes(data) && !kindsOf(def).includes('scorer'),
  )?.[0];
}

/** Upstream plugin types pd-router does not implement, with the reason; named in the load error. */
export const UNSUPPORTED_UPSTREAM_TYPES: Readonly<Record<string, string>> = {
  'p2p-source-producer': 'peer-to-peer KV-cache sources are not implemented',
  'token-load-scorer': 'token-load scoring (inflight-load-producer) is not implemented',
  'inflight-load-producer':
    'active-request-scorer counts the requests this EPP routed itself; there is no separate producer',
  'header-label-affinity-scorer': 'header-to-label affinity is not implemented',
  'utilization-filter': 'not implemented; utilization-detector, listed in a profile, filters on the same thresholds',
  'dcgm-data-source': 'GPU metrics from DCGM are not collected',
  'dcgm-extractor': 'GPU metrics from DCGM are not collected',
  'k8s-notification-source': 'Kubernetes notification data sources are not implemented',
  'predicted-latency-producer': 'latency prediction is not implemented',
  'predicted-latency-scorer': 'latency prediction is not implemented',
  'latency-scorer': 'latency prediction is not implemented',
  'latency-slo-admitter': 'latency prediction and SLO admission are not implemented',
  'slo-headroom-tier-filter': 'latency prediction is not implemented',
  'prefix-cache-affinity-filter': 'latency-aware prefix affinity is not implemented',
  'disaggregatedset-rollout-screener': 'DisaggregatedSet rollout screening is not implemented',
  'request-attribute-reporter': 'request attribute reporting to Envoy metadata is not implemented',
  'agent-identity': 'agent identity headers are not implemented',
  'header-based-testing-filter': 'conformance-test plugins are not implemented',
  'destination-endpoint-served-verifier': 'conformance-test plugins are not implemented',
  'multicluster-session-affinity-filter': 'multi-cluster pools are not implemented',
  'multicluster-queue-scorer': 'multi-cluster pools are not implemented',
  'multicluster-kv-cache-utilization-scorer': 'multi-cluster pools are not implemented',
  'multicluster-prefix-cache-scorer': 'multi-cluster pools are not implemented',
  'multicluster-approx-prefix-cache-producer': 'multi-cluster pools are not implemented',
  'multicluster-metrics-data-source': 'multi-cluster pools are not implemented',
  'multicluster-metrics-extractor': 'multi-cluster pools are not implemented',
  'multicluster-file-discovery': 'multi-cluster pools are not implemented',
  'local-syncer': 'cross-replica state sync is not implemented',
  'vllmgrpc-parser': 'gRPC model servers are not supported',
  'sglanggrpc-parser': 'gRPC model servers are not supported',
  'sglanghttp-parser': "SGLang's native /generate API is not parsed",
  'vertexai-parser': 'not implemented',
};
