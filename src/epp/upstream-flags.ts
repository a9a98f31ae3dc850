/**
 * Every flag and environment variable of llm-d's EPP, in the releases pd-router is a drop-in for, and what pd-router
 * does with it. Read from upstream's source:
 * - v0.7.1: llm-d-inference-scheduler v0.7.1 cmd/epp runs GAIE v1.4.0's runner (cmd/epp/runner/runner.go,
 *   pkg/epp/server/options.go, controller-runtime's zap.Options.BindFlags) and adds only its plugins and OTEL_* tracing.
 * - gaie-v1.5.0: GAIE v1.5.0's runner, the EPP image the GAIE v1.5.0 chart deploys: the same flags as v1.4.0.
 * - ebab687: llm-d-router's own runner (cmd/epp/runner, pkg/epp/server/options.go, pkg/common/observability/logging).
 * The manifests that pass them: v0.7.1 deploy/components/inference-gateway/deployments.yaml, the GAIE chart
 * (config/charts/epplib/templates/_deployment.yaml), llm-d-router deploy/components/inference-gateway/deployment.yaml.
 * The interop suite checks the flag list against the binaries' --help.
 */
import { compat, opt, zapLoggingFlags, type CompatEntry, type CompatTable } from '../common/index.js';

const V071 = 'v0.7.1';
const GAIE15 = 'gaie-v1.5.0';
const EBAB = 'ebab687';
const ALL = [V071, GAIE15, EBAB] as const;
const GAIE = [V071, GAIE15] as const;

const yes = (flag: boolean) => flag;
const no = (flag: boolean) => !flag;

/** GAIE v1.4.0+ rejects these when set ("configure metrics via engineConfigs"); pd-router reads the engine's names. */
const metricName = (what: string, dflt: string): CompatEntry =>
  compat.ignored(
    ALL,
    opt.string({ default: dflt, description: `Prometheus metric for ${what}.` }),
    "pd-router reads each engine's own metric names (vLLM, SGLang; see the core-metrics-extractor plugin); upstream rejects this flag since GAIE v1.4.0.",
    { harmless: (value: string) => value === dflt, deprecated: 'use engineConfigs in EndpointPickerConfig' },
  );

const metricsSource = (
  spec: CompatEntry['spec'],
  param: string,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the value of whichever option the entry holds
  harmless: (value: any) => boolean,
  releases: readonly string[] = GAIE,
): CompatEntry =>
  compat.ignored(
    releases,
    spec!,
    `set the metrics-data-source plugin's "${param}" parameter in the EndpointPickerConfig instead (GAIE v1.5.0 deprecates the flag the same way).`,
    { harmless, deprecated: 'configure the metrics data source in EndpointPickerConfig' },
  );

/** Read by the tracing module and the OTLP exporter when --tracing is on (src/common/tracing). */
const otel = (releases: readonly string[] = ALL): CompatEntry =>
  compat.implemented(undefined, releases, { via: 'the OpenTelemetry exporter (with --tracing)' });

const latencyPredictor = (name: string): CompatEntry =>
  compat.ignored(
    [EBAB],
    opt.string({ default: '', description: `Latency predictor ${name}.` }),
    'the predicted-latency plugins are not implemented (a config naming them fails to load).',
  );

/** llm-d's and GAIE's EPP flags, each implemented, mapped to pd-router's, or ignored with a reason. */
export const eppUpstream: CompatTable = {
  releases: {
    [V071]: 'llm-d-inference-scheduler v0.7.1 cmd/epp (GAIE v1.4.0 runner)',
    [GAIE15]: 'gateway-api-inference-extension v1.5.0 cmd/epp',
    [EBAB]: 'llm-d-router ebab687 cmd/epp',
  },
  flags: {
    'grpc-port': compat.implemented('grpcPort', ALL),
    'grpc-health-port': compat.implemented('grpcHealthPort', ALL),
    'metrics-port': compat.implemented('metricsPort', ALL),
    'pool-group': compat.implemented('poolGroup', ALL),
    'pool-namespace': compat.implemented('poolNamespace', ALL),
    'pool-name': compat.implemented('poolName', ALL),
    'endpoint-selector': compat.implemented('endpointSelector', ALL),
    'endpoint-target-ports': compat.implemented('endpointTargetPorts', ALL),
    'refresh-metrics-interval': compat.implemented('refreshMetricsInterval', ALL),
    'metrics-staleness-threshold': compat.implemented('metricsStalenessThreshold', ALL),
    'cert-path': compat.implemented('certPath', ALL),
    'secure-serving': compat.implemented('secureServing', ALL),
    'config-file': compat.implemented('configFile', ALL),
    'config-text': compat.implemented('configText', ALL),
    'drain-timeout': compat.mapsTo(
      [EBAB],
      opt.duration({ default: 30_000, description: 'Graceful shutdown window after SIGTERM.' }),
      '--shutdown-timeout',
      (value: number, set) => set.set('shutdownTimeout', value),
    ),
    ...zapLoggingFlags(ALL, { verbosity: ALL }),
    'ha-enable-leader-election': compat.implemented('haEnableLeaderElection', ALL),
    tracing: compat.implemented('tracing', ALL),
    'metrics-endpoint-auth': compat.implemented('metricsEndpointAuth', ALL),
    'metrics-client-ca-file': compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'CA requiring client certificates on /metrics.' }),
      'the metrics endpoint serves plain HTTP (no mTLS).',
      {
        harmless: (value: string) => value === '',
      },
    ),
    'metrics-cert-dir': compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'Certificates for TLS on /metrics.' }),
      'the metrics endpoint serves plain HTTP.',
      {
        harmless: (value: string) => value === '',
      },
    ),
    'enable-cert-reload': compat.ignored(
      ALL,
      opt.bool({ default: false, description: 'Reload the --cert-path certificates when they change.' }),
      'pd-router always reloads the --cert-path certificates when they change.',
      { harmless: yes },
    ),
    'health-checking': compat.ignored(
      ALL,
      opt.bool({ default: false, description: 'Also serve grpc.health.v1 on the ext_proc port.' }),
      'gRPC health is served on --grpc-health-port only.',
      { harmless: no },
    ),
    'enable-pprof': compat.ignored(
      ALL,
      opt.bool({ default: true, description: 'Go pprof handlers on the metrics port.' }),
      'there are no pprof handlers (a Node.js process; use --inspect).',
      {
        harmless: no,
      },
    ),
    'disable-endpoint-subset-filter': compat.ignored(
      ALL,
      opt.bool({ default: false, description: 'Ignore the x-gateway-destination-endpoint-subset metadata.' }),
      'pd-router does not read the destination endpoint subset metadata: every request may go to any endpoint of the pool.',
      { harmless: yes },
    ),
    'refresh-prometheus-metrics-interval': compat.ignored(
      ALL,
      opt.duration({ default: 5000, description: 'How often the pool gauges are refreshed.' }),
      'pd-router computes the pool gauges when /metrics is scraped, so there is no refresh interval.',
      { harmless: () => true },
    ),
    'model-server-metrics-scheme': metricsSource(
      opt.string({
        default: 'http',
        pattern: /^https?$/,
        patternHint: 'http or https',
        description: 'Scheme for scraping model servers.',
      }),
      'scheme',
      (value: string) => value === 'http',
    ),
    'model-server-metrics-path': metricsSource(
      opt.string({ default: '/metrics', description: 'Path scraped on model servers.' }),
      'path',
      (value: string) => value === '/metrics',
    ),
    'model-server-metrics-port': metricsSource(
      opt.int({ default: 0, min: 0, max: 65535, description: 'Port scraped on model servers (0: the serving port).' }),
      'port',
      (value: number) => value === 0,
    ),
    'model-server-metrics-https-insecure-skip-verify': metricsSource(
      opt.bool({ default: true, description: 'Skip certificate checks when scraping over https.' }),
      'insecureSkipVerify',
      yes,
    ),
    'total-queued-requests-metric': metricName('the number of queued requests', 'vllm:num_requests_waiting'),
    'total-running-requests-metric': metricName('the number of running requests', 'vllm:num_requests_running'),
    'kv-cache-usage-percentage-metric': metricName(
      'the fraction of KV-cache blocks in use',
      'vllm:kv_cache_usage_perc',
    ),
    'lora-info-metric': metricName('LoRA information', 'vllm:lora_requests_info'),
    'cache-info-metric': metricName('cache configuration', 'vllm:cache_config_info'),
    'grpc-max-recv-msg-size': compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'Largest gRPC message received (10MiB, 25MB).' }),
      'the ext_proc receive limit follows --max-request-body-size and --max-response-body-buffer (plus 1 MiB).',
      { harmless: (value: string) => value === '' },
    ),
    'grpc-max-send-msg-size': compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'Largest gRPC message sent.' }),
      'sent messages are not limited (bodies are re-chunked below 62000 bytes).',
      {
        harmless: (value: string) => value === '',
      },
    ),
    'emit-endpoint-scores': compat.ignored(
      [EBAB],
      opt.bool({ default: false, description: 'Per-endpoint scores in the envoy.lb metadata.' }),
      'per-endpoint scores are not emitted (x-pd-router-decision gives the decision and its numbers).',
      { harmless: no },
    ),
    'enable-grpc-stream-metrics': compat.ignored(
      [EBAB],
      opt.bool({ default: false, description: 'ext_proc stream metrics.' }),
      'the ext_proc stream metrics are not implemented.',
      { harmless: no },
    ),
    'tls-min-version': compat.ignored(
      [EBAB],
      opt.string({
        default: '',
        pattern: /^(|VersionTLS1[0-3])$/,
        patternHint: 'one of VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13',
        description: 'Minimum TLS version for secure serving.',
      }),
      "Node.js's minimum, TLS 1.2, applies.",
      { harmless: (value: string) => value === '' || value === 'VersionTLS12' },
    ),
    'tls-cipher-suites': compat.ignored(
      [EBAB],
      opt.list({ default: [], description: 'TLS 1.2 cipher suites (Go names).' }),
      "Node.js's default TLS 1.2 cipher list applies.",
      {
        harmless: (items: string[]) => items.length === 0,
      },
    ),
    'allow-experimental-plugins': compat.ignored(
      [EBAB],
      opt.bool({ default: false, description: 'Allow alpha plugins.' }),
      'pd-router has no experimental plugin gate: every plugin it implements loads.',
      { harmless: yes },
    ),
  },
  env: {
    NAMESPACE: compat.implemented('poolNamespace', ALL),
    KUBECONFIG: compat.implemented(undefined, ALL, { via: 'the Kubernetes client (when --kubeconfig is not given)' }),
    POD_NAME: compat.implemented(undefined, ALL, {
      via: "the leader election Lease name with --endpoint-selector (the pod's Deployment name, as upstream)",
    }),
    HF_TOKEN: compat.ignored(
      ALL,
      opt.string({ default: '', description: 'Hugging Face token for tokenizers (precise prefix cache).' }),
      'pd-router downloads no tokenizer.',
      { harmless: () => true },
    ),
    ENABLE_EXPERIMENTAL_DATALAYER_V2: compat.ignored(
      [V071],
      opt.bool({ default: false, description: 'Feature gate: pluggable data layer.' }),
      "pd-router's data layer is always the pluggable one (metrics-data-source, core-metrics-extractor).",
      { harmless: yes },
    ),
    ENABLE_EXPERIMENTAL_FLOW_CONTROL_LAYER: compat.ignored(
      GAIE,
      opt.bool({ default: false, description: 'Feature gate: flow control.' }),
      'flow control is not implemented: requests are never queued or shed by the EPP.',
      { harmless: no },
    ),
    SD_QUEUE_DEPTH_THRESHOLD: compat.ignored(
      [V071],
      opt.string({ default: '', description: 'Saturation detector queue depth.' }),
      'the saturation detector is not implemented (no request is shed).',
    ),
    SD_KV_CACHE_UTIL_THRESHOLD: compat.ignored(
      [V071],
      opt.string({ default: '', description: 'Saturation detector KV utilization.' }),
      'the saturation detector is not implemented (no request is shed).',
    ),
    SD_METRICS_STALENESS_THRESHOLD: compat.ignored(
      [V071],
      opt.string({ default: '', description: 'Saturation detector staleness.' }),
      'the saturation detector is not implemented; --metrics-staleness-threshold governs staleness.',
    ),
    OTEL_SERVICE_NAME: otel(),
    OTEL_EXPORTER_OTLP_ENDPOINT: otel(),
    OTEL_TRACES_EXPORTER: otel(),
    OTEL_TRACES_SAMPLER: otel(),
    OTEL_TRACES_SAMPLER_ARG: otel(),
    OTEL_RESOURCE_ATTRIBUTES: otel(),
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otel([EBAB]),
    OTEL_EXPORTER_OTLP_INSECURE: otel([EBAB]),
    OTEL_EXPORTER_OTLP_TRACES_INSECURE: otel([EBAB]),
    OTEL_EXPORTER_OTLP_CERTIFICATE: otel([EBAB]),
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: otel([EBAB]),
    TRAINING_SERVER_URL: latencyPredictor('training server URL'),
    PREDICTION_SERVER_URL: latencyPredictor('prediction server URLs'),
    LATENCY_MAX_SAMPLE_SIZE: latencyPredictor('sample size'),
    LATENCY_FLUSH_INTERVAL_SEC: latencyPredictor('flush interval'),
    LATENCY_USE_NATIVE_XGBOOST: latencyPredictor('XGBoost switch'),
    LATENCY_HTTP_TIMEOUT_SEC: latencyPredictor('HTTP timeout'),
    LATENCY_METRICS_INTERVAL_SEC: latencyPredictor('metrics interval'),
    LATENCY_MAX_BULK_SIZE: latencyPredictor('bulk size'),
    LATENCY_COALESCE_WINDOW_MS: latencyPredictor('coalesce window'),
    LATENCY_MAX_COALESCED_ROWS: latencyPredictor('coalesced rows'),
    LATENCY_MAX_CONCURRENT_DISPATCHES: latencyPredictor('concurrent dispatches'),
  },
};
