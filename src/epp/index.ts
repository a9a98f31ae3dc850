/** The Endpoint Picker: `pd-router epp`, and the pieces other components reuse in-process. */
export { eppCommand, eppOptions, eppConfig, type EppConfig } from './options.js';
export { eppUpstream } from './upstream-flags.js';
export { startEpp, type EppHandle, type StartEppOptions } from './epp.js';
export { applyConfigParams } from './config/config-params.js';
export { loadEndpointPickerConfig, type LoadedEndpointPickerConfig, type LoadDependencies } from './config/loader.js';
export { DEFAULT_CONFIG_YAML, ACCEPTED_API_VERSIONS } from './config/schema.js';
export { LLM_D_PD_EPP_CONFIG, LLM_D_SIM_PD_EPP_CONFIG } from './config/llm-d-configs.js';
export { PLUGIN_REGISTRY, UNSUPPORTED_UPSTREAM_TYPES } from './plugins/registry.js';
export type { PluginDefinition, PluginFactoryContext, PluginKind } from './plugins/definition.js';
export { EndpointStore, endpointFromSpec, emptyMetrics, type EndpointSpec } from './datalayer/endpoint-store.js';
export { parseEndpointsFile } from './datalayer/endpoints-file.js';
export { EppMetrics } from './metrics.js';
export { InferenceError } from './framework/errors.js';
export * from './framework/types.js';
export { SYSTEM_OWNED_HEADERS, firstHeader, writeDisaggHeaders } from './routing-headers.js';
export {
  DATA_PARALLEL_HOST_PORT,
  DESTINATION_ENDPOINT,
  DESTINATION_ENDPOINT_SERVED,
  DESTINATION_METADATA_NAMESPACE,
  DROPPED_REASON,
  ENCODER_HOSTS_PORTS,
  FAIRNESS_ID_HEADERS,
  MODEL_REWRITE_HEADERS,
  OBJECTIVE_HEADERS,
  PREFILLER_HOST_PORT,
  ROUTING_HEADERS,
  SUBSET_HINT_KEY,
  SUBSET_HINT_NAMESPACE,
} from '../common/pd-contract.js';
export { healthClientConstructor } from './health.js';
export { DECISION_HEADER, DEBUG_REQUEST_HEADER, formatDecision } from './extproc/stream.js';
