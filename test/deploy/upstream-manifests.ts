/**
 * Container args and environment of llm-d's own manifests, copied verbatim (the file each came from is named), for
 * running pd-router's per-component binaries exactly as those manifests run upstream's images. `${VAR}` placeholders
 * are the deploy scripts' envsubst variables, filled in by the test with the scripts' defaults.
 */

import { upstreamText } from '../fixtures/upstream-configs/index.js';

export interface UpstreamContainer {
  /** Where the args come from. */
  source: string;
  component: 'epp' | 'sidecar' | 'sim';
  args: string[];
  /** Literal environment entries of the container (fieldRef ones are listed in `fieldEnv`). */
  env?: Record<string, string>;
  /** Variables Kubernetes fills from the pod (fieldRef), by name. */
  fieldEnv?: string[];
  /** A volume mount the args refer to: path -> file name -> content (the ConfigMap). */
  mount?: { path: string; files: Record<string, string> };
}

/** llm-d-inference-scheduler v0.7.1 deploy/config/sim-pd-epp-config.yaml (the kind P/D environment's EPP_CONFIG), from the checked fixture. */
const V071_SIM_PD_EPP_CONFIG = upstreamText('llm-d-inference-scheduler-v0.7.1/deploy/config/sim-pd-epp-config.yaml');

/** GAIE chart config/charts/epplib/templates/_config.yaml "default-plugins.yaml", rendered with default values (v1.4.0). */
const GAIE_140_DEFAULT_PLUGINS = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`;

/** The same template in v1.5.0, rendered with default values (metricsDataSource: http, /metrics, insecureSkipVerify). */
const GAIE_150_DEFAULT_PLUGINS = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: metrics-data-source
  parameters:
    scheme: "http"
    path: "/metrics"
    insecureSkipVerify: true
- type: core-metrics-extractor
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`;

/** GAIE chart EPP env (config/charts/epplib/templates/_deployment.yaml), both versions. */
const GAIE_ENV_FIELDS = ['NAMESPACE', 'POD_NAME'];

/** The chart's tracing env with inferenceExtension.tracing.enabled=true and the default tracing values (v1.4.0). */
const GAIE_TRACING_ENV = {
  OTEL_SERVICE_NAME: 'gateway-api-inference-extension',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4317',
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_RESOURCE_ATTRIBUTES: 'k8s.namespace.name=$(NAMESPACE),k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)',
  OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
  OTEL_TRACES_SAMPLER_ARG: '0.1',
};

export const UPSTREAM_CONTAINERS: Record<string, UpstreamContainer> = {
  'v0.7.1 EPP': {
    source: 'llm-d-inference-scheduler v0.7.1 deploy/components/inference-gateway/deployments.yaml (container epp)',
    component: 'epp',
    args: ['--pool-name', '${POOL_NAME}', '--v', '4', '--zap-encoder', 'json', '--grpc-port', '9002', '--grpc-health-port', '9003'],
  },
  'v0.7.1 EPP, kind environment': {
    source: 'llm-d-inference-scheduler v0.7.1 deploy/environments/dev/base-kind-istio/patch-deployments.yaml (container epp)',
    component: 'epp',
    args: [
      '--pool-name', '${POOL_NAME}',
      '--pool-namespace', 'default',
      '--v', '4',
      '--zap-encoder', 'json',
      '--grpc-port', '9002',
      '--grpc-health-port', '9003',
      '--config-file', '/etc/epp/epp-config.yaml',
      '--metrics-endpoint-auth=false',
    ],
    mount: { path: '/etc/epp', files: { 'epp-config.yaml': V071_SIM_PD_EPP_CONFIG } },
  },
  'v0.7.1 sidecar': {
    source: 'llm-d-inference-scheduler v0.7.1 deploy/components/vllm-sim-pd/deployments.yaml (vllm-sim-d, initContainer routing-sidecar)',
    component: 'sidecar',
    args: ['--port=8000', '--vllm-port=8200', '--kv-connector=nixlv2', '--secure-proxy=false', '--data-parallel-size=${VLLM_DATA_PARALLEL_SIZE}'],
    fieldEnv: ['POD_IP'],
  },
  'v0.7.1 simulator (decode)': {
    source: 'llm-d-inference-scheduler v0.7.1 deploy/components/vllm-sim-pd/deployments.yaml (vllm-sim-d, container vllm)',
    component: 'sim',
    args: ['--port=8200', '--model=${MODEL_NAME}', '--data-parallel-size=${VLLM_DATA_PARALLEL_SIZE}'],
    env: { PORT: '8200' },
  },
  'v0.7.1 simulator with KV events': {
    source: 'llm-d-inference-scheduler v0.7.1 deploy/components/vllm-sim/deployments.yaml (container vllm)',
    component: 'sim',
    args: [
      '--port=8200',
      '--model=${MODEL_NAME}',
      '--enable-kvcache=${KV_CACHE_ENABLED}',
      '--kv-cache-size=1024',
      '--block-size=16',
      '--zmq-endpoint=tcp://${EPP_NAME}.default.svc.cluster.local:5557',
      '--event-batch-size=16',
      '--data-parallel-size=${VLLM_DATA_PARALLEL_SIZE}',
    ],
  },
  'GAIE v1.4.0 chart, default values': {
    source: 'gateway-api-inference-extension v1.4.0 config/charts/inferencepool (epplib/templates/_deployment.yaml), `helm template ${POOL_NAME} .` with default values',
    component: 'epp',
    args: [
      '--pool-name', '${POOL_NAME}',
      '--pool-namespace', 'default',
      '--pool-group', 'inference.networking.k8s.io',
      '--zap-encoder', 'json',
      '--config-file', '/config/default-plugins.yaml',
      '--v', '1',
      '--tracing=false',
    ],
    fieldEnv: GAIE_ENV_FIELDS,
    mount: { path: '/config', files: { 'default-plugins.yaml': GAIE_140_DEFAULT_PLUGINS } },
  },
  'GAIE v1.4.0 chart, 3 replicas, tracing on, metrics auth off': {
    source:
      'gateway-api-inference-extension v1.4.0 config/charts/inferencepool, --set inferenceExtension.replicas=3,inferenceExtension.tracing.enabled=true,inferenceExtension.monitoring.prometheus.auth.enabled=false',
    component: 'epp',
    args: [
      '--pool-name', '${POOL_NAME}',
      '--pool-namespace', 'default',
      '--pool-group', 'inference.networking.k8s.io',
      '--zap-encoder', 'json',
      '--config-file', '/config/default-plugins.yaml',
      '--ha-enable-leader-election',
      '--v', '1',
      '--tracing=true',
      '--metrics-endpoint-auth=false',
    ],
    env: GAIE_TRACING_ENV,
    fieldEnv: [...GAIE_ENV_FIELDS, 'OTEL_RESOURCE_ATTRIBUTES_NODE_NAME', 'OTEL_RESOURCE_ATTRIBUTES_POD_NAME'],
    mount: { path: '/config', files: { 'default-plugins.yaml': GAIE_140_DEFAULT_PLUGINS } },
  },
  'GAIE v1.5.0 chart, default values': {
    source: 'gateway-api-inference-extension v1.5.0 config/charts/inferencepool (epplib/templates/_deployment.yaml), `helm template ${POOL_NAME} .` with default values',
    component: 'epp',
    args: [
      '--pool-name', '${POOL_NAME}',
      '--pool-namespace', 'default',
      '--pool-group', 'inference.networking.k8s.io',
      '--zap-encoder', 'json',
      '--config-file', '/config/default-plugins.yaml',
      '--v', '1',
      '--tracing=false',
    ],
    fieldEnv: GAIE_ENV_FIELDS,
    mount: { path: '/config', files: { 'default-plugins.yaml': GAIE_150_DEFAULT_PLUGINS } },
  },
  'llm-d-router ebab687 EPP': {
    source: 'llm-d-router ebab687 deploy/components/inference-gateway/deployment.yaml (container epp)',
    component: 'epp',
    args: [
      '--pool-name', '${POOL_NAME}',
      '--pool-namespace', '${NAMESPACE}',
      '--v', '4',
      '--zap-encoder', 'json',
      '--grpc-port', '9002',
      '--grpc-health-port', '9003',
      '--config-file', '/etc/epp/epp-config.yaml',
      '--allow-experimental-plugins=true',
      '--metrics-endpoint-auth=${METRICS_ENDPOINT_AUTH}',
      '--ha-enable-leader-election=${ENABLE_LEADER_ELECTION}',
    ],
    mount: { path: '/etc/epp', files: { 'epp-config.yaml': V071_SIM_PD_EPP_CONFIG } },
  },
  'llm-d-router ebab687 sidecar, P/D environment': {
    source: 'llm-d-router ebab687 deploy/environments/dev/p-d/patch-decode.yaml (initContainer routing-sidecar)',
    component: 'sidecar',
    args: ['--port=8000', '--kv-connector=${CONNECTOR_TYPE}', '--mooncake-bootstrap-port=8000', '--secure-proxy=false', '--data-parallel-size=${VLLM_DATA_PARALLEL_SIZE}'],
    fieldEnv: ['POD_IP'],
  },
  'llm-d-router ebab687 simulator (decode)': {
    source: 'llm-d-router ebab687 deploy/components/vllm-decode/deployment.yaml (container vllm)',
    component: 'sim',
    args: ['--port=8200', '--model=${MODEL_NAME}', '--data-parallel-size=${VLLM_DATA_PARALLEL_SIZE}', '--render-url=${VLLM_RENDER_URL}', '${VLLM_EXTRA_ARGS_D}'],
  },
};

/** The deploy scripts' defaults (llm-d-inference-scheduler v0.7.1 and llm-d-router ebab687 scripts/kind-dev-env.sh, Makefile). */
export const ENVSUBST_DEFAULTS: Record<string, string> = {
  MODEL_NAME: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
  POOL_NAME: 'tinyllama-1-1b-chat-v1-0-inference-pool',
  EPP_NAME: 'tinyllama-1-1b-chat-v1-0-endpoint-picker',
  NAMESPACE: 'default',
  VLLM_DATA_PARALLEL_SIZE: '1',
  // The script's default is false; true is the KV-cache environment, the one that deploys components/vllm-sim.
  KV_CACHE_ENABLED: 'true',
  CONNECTOR_TYPE: 'nixlv2',
  METRICS_ENDPOINT_AUTH: 'false',
  ENABLE_LEADER_ELECTION: 'false',
  VLLM_RENDER_URL: 'http://vllm-render:8082',
  VLLM_EXTRA_ARGS_D: '',
};

/** envsubst: `${VAR}` from the variables. */
export function envsubst(args: readonly string[], vars: Record<string, string> = ENVSUBST_DEFAULTS): string[] {
  return args.map((left) => left.replace(/\$\{([A-Z_][A-Z0-9_]*)\}/g, (message, value: string) => vars[value] ?? message));
}
