/**
 * `pd-router epp` flags. Names and defaults follow llm-d's EPP (`pkg/epp/server/options.go`) where they mean the same;
 * the rest (body and buffer bounds, scrape timeout, stream idle bound, --endpoints-file, API-server override) are
 * pd-router's. Upstream flags pd-router has under another name, or lacks, are in upstream-flags.ts. The EndpointPickerConfig itself comes from --config-file / --config-text (not --config, which is the
 * file of these flags, as for every pd-router command).
 */
import type { KubeClientSettings } from '../common/kubernetes/kubeconfig.js';
import { METRICS_FAMILIES } from './metrics.js';
import {
  opt,
  loggingOptions,
  shutdownOptions,
  tracingOptions,
  defaultValues,
  type CommandDefinition,
  type OptionValues,
} from '../common/index.js';
import { eppUpstream } from './upstream-flags.js';

const port = (def: number, description: string) => opt.int({ default: def, min: 0, max: 65535, description });

/** The EPP's flag table: names, defaults, descriptions and validation (drives --help, env vars and config files). */
export const eppOptions = {
  configFile: opt.string({
    default: '',
    description:
      "EndpointPickerConfig YAML file (an empty file is an error); no --config-file and no --config-text runs llm-d's default single-profile config.",
  }),
  configText: opt.string({ default: '', description: 'EndpointPickerConfig YAML given inline.' }),
  maxConfigSize: opt.bytes({
    default: 256 * 1024,
    min: 1024,
    description:
      'pd-router: largest EndpointPickerConfig (--config-file or --config-text); a larger one is refused before parsing.',
  }),
  decisionHeader: opt.oneOf(['off', 'on-request', 'always'] as const, {
    default: 'off',
    description:
      "pd-router: return the P/D decision (type, reason, the decider's numbers) in the x-pd-router-decision response header: never, only when the request carries x-pd-router-debug: decision, or always.",
  }),
  configParam: opt.list({
    default: [],
    itemHint: 'a list of <plugin-name>.<parameter>=<value>',
    description:
      'pd-router: set a plugin parameter over the config file, e.g. --config-param=prefix-based-pd-decider.nonCachedTokens=256 (repeatable).',
  }),
  host: opt.string({ default: '0.0.0.0', description: 'Address the gRPC, health and metrics servers listen on.' }),
  grpcPort: port(9002, 'ext_proc gRPC port.'),
  grpcHealthPort: port(9003, 'gRPC health port (grpc.health.v1, plain text).'),
  metricsPort: port(9090, 'Prometheus /metrics port (HTTP; see --metrics-endpoint-auth).'),
  metricsFamily: opt.oneOf(METRICS_FAMILIES, {
    default: 'both',
    description:
      "pd-router: which metric names /metrics serves: llm-d (llm-d-router's llm_d_epp_*), gaie (GAIE v1.4's inference_objective_*, inference_pool_*, inference_extension_* and llm-d-inference-scheduler v0.7.1's llm_d_inference_scheduler_*), or both; one measurement updates every family served.",
  }),
  secureServing: opt.bool({
    default: true,
    description: 'TLS on the ext_proc port (self-signed unless --cert-path); --secure-serving=false for plain gRPC.',
  }),
  certPath: opt.string({
    default: '',
    description: 'Directory with tls.crt and tls.key for --secure-serving, reloaded when they change.',
  }),
  poolName: opt.string({ default: '', description: 'InferencePool to watch for endpoints (Kubernetes discovery).' }),
  poolNamespace: opt.string({
    default: '',
    env: ['NAMESPACE'],
    description: 'Namespace of the pool or selector; empty: $NAMESPACE, else "default".',
  }),
  poolGroup: opt.oneOf(['inference.networking.k8s.io', 'inference.networking.x-k8s.io'] as const, {
    default: 'inference.networking.k8s.io',
    description: 'API group of the InferencePool (v1, or v1alpha2 for inference.networking.x-k8s.io).',
  }),
  endpointSelector: opt.string({
    default: '',
    description: 'Label selector of model-server pods, without an InferencePool (key=value,...).',
  }),
  endpointTargetPorts: opt.list({
    default: [],
    itemHint: 'a comma-separated list of 1 to 8 ports',
    description: 'Ports of each selected pod (with --endpoint-selector), one endpoint per port.',
  }),
  endpointsFile: opt.string({
    default: '',
    description: 'pd-router: YAML/JSON endpoints file (file-discovery format), hot-reloaded; no Kubernetes needed.',
  }),
  kubeApiServer: opt.string({
    default: '',
    description:
      'pd-router: Kubernetes API server URL used without credentials (kubectl proxy, tests); default in-cluster/kubeconfig.',
  }),
  kubeconfig: opt.string({
    default: '',
    description:
      'kubeconfig file when not running in a cluster (empty: $KUBECONFIG, else in-cluster, else ~/.kube/config).',
  }),
  kubeApiTimeout: opt.duration({
    default: 30_000,
    min: 1,
    description:
      'pd-router: deadline of each Kubernetes API call (list, get, create, replace) and of a watch until the API server answers.',
  }),
  kubeMaxResponseSize: opt.bytes({
    default: 64 * 1024 * 1024,
    min: 1024,
    description:
      'pd-router: largest Kubernetes API answer (a list) and watch event read; a larger one fails the call, which is retried with backoff.',
  }),
  refreshMetricsInterval: opt.duration({
    default: 50,
    min: 1,
    description: "How often each endpoint's /metrics is scraped (llm-d's base tick).",
  }),
  metricsStalenessThreshold: opt.duration({
    default: 2000,
    min: 1,
    description: 'Metrics older than this mark an endpoint stale (and leave the pool gauges).',
  }),
  metricsScrapeTimeout: opt.duration({
    default: 1000,
    min: 1,
    description: 'pd-router: deadline of one metrics scrape (connect, headers and body).',
  }),
  maxMetricsResponseSize: opt.bytes({
    default: 16 * 1024 * 1024,
    min: 1024,
    description: 'pd-router: largest /metrics answer read; larger counts as a scrape failure.',
  }),
  maxRequestBodySize: opt.bytes({
    default: 64 * 1024 * 1024,
    min: 1024,
    description: 'pd-router: largest request body buffered; beyond it the request gets 413 PayloadTooLarge.',
  }),
  maxResponseBodyBuffer: opt.bytes({
    default: 16 * 1024 * 1024,
    min: 1024,
    description:
      'pd-router: non-streaming responses larger than this are passed through unbuffered (no usage metrics).',
  }),
  streamIdleTimeout: opt.duration({
    default: 3_600_000,
    description:
      'pd-router: an ext_proc stream with no message for this long is ended (DEADLINE_EXCEEDED); 0 disables.',
  }),
  requestBufferBudget: opt.bytes({
    default: 256 * 1024 * 1024,
    min: 1024,
    description:
      'pd-router: request body bytes all streams together may hold while bodies arrive; a request that would pass it gets 503 (rejected-saturated). At least --max-request-body-size.',
  }),
  connectionStreamBurst: opt.int({
    default: 900,
    min: 1,
    max: 990,
    description:
      'pd-router: ext_proc streams one connection may open at once (refilled at --connection-stream-rate per second) before the EPP closes it gracefully (GOAWAY NO_ERROR: its streams finish, the client reconnects). Each stream may end in a reset, and nghttp2 answers its 1001st quick reset with GOAWAY INTERNAL_ERROR, which fails every stream on the connection.',
  }),
  connectionStreamRate: opt.int({
    default: 33,
    min: 0,
    max: 33,
    description:
      "pd-router: streams per second added back to --connection-stream-burst (at most nghttp2's reset refill, 33).",
  }),
  grpcKeepaliveTime: opt.duration({
    default: 60_000,
    description:
      'pd-router: an ext_proc connection is pinged after this long without a ping (and its socket gets TCP keepalive probes after this long idle); 0 disables both.',
  }),
  grpcKeepaliveTimeout: opt.duration({
    default: 20_000,
    min: 1,
    description:
      'pd-router: longest wait for a keepalive ping answer; beyond it the connection is closed (its peer is gone) and its streams fail.',
  }),
  requestBodyTimeout: opt.duration({
    default: 60_000,
    description:
      'pd-router: longest wait for the next request body chunk (from the request headers on); beyond it the request gets 408 and its stream ends; 0 disables.',
  }),
  flowControlRequestTtl: opt.duration({
    default: 30_000,
    min: 1,
    description:
      'pd-router: how long a request may wait in a flow-control queue when the EndpointPickerConfig sets no flowControl.defaultRequestTTL (upstream: unbounded); then it gets 429 (rejected-ttl-expired).',
  }),
  flowControlBandMaxRequests: opt.int({
    default: 5000,
    min: 1,
    description:
      'pd-router: queued requests a priority band holds when its config sets no maxRequests (upstream: unbounded); beyond it 429 (rejected-saturated).',
  }),
  flowControlMaxFlows: opt.int({
    default: 1024,
    min: 1,
    description:
      'pd-router: flow-control queues (fairness id x priority) all bands hold together; a request that would open one more gets 429 (rejected-saturated).',
  }),
  flowControlPollInterval: opt.duration({
    default: 50,
    min: 1,
    description:
      'pd-router: while requests wait, how often flow control re-checks saturation besides completions and metrics scrapes.',
  }),
  haEnableLeaderElection: opt.bool({
    default: false,
    description:
      "Leader election between EPP replicas over a coordination.k8s.io Lease (epp-<namespace>-<pool>.gateway-api-inference-extension.sigs.k8s.io in the pool's namespace): only the leader reports ready and routes; followers keep discovery and metrics warm and answer ext_proc with 503 (x-llm-d-request-dropped-reason: rejected-not-leader).",
  }),
  haLeaseName: opt.string({
    default: '',
    description:
      "pd-router: the Lease to hold instead of upstream's name (needed with --endpoints-file; with --endpoint-selector upstream names it after $POD_NAME's Deployment).",
  }),
  haLeaseDuration: opt.duration({
    default: 15_000,
    min: 1000,
    description:
      "pd-router: how long followers wait after the last renew they saw before taking the Lease (controller-runtime's default; written as whole seconds).",
  }),
  haRenewDeadline: opt.duration({
    default: 10_000,
    min: 1,
    description:
      'pd-router: a leader that has not renewed for this long (monotonic time, from sending the renew) stops serving; shorter than --ha-lease-duration.',
  }),
  haRetryPeriod: opt.duration({
    default: 2_000,
    min: 1,
    description:
      'pd-router: how often the leader renews and followers poll the Lease (followers also watch it, so a release is seen at once).',
  }),
  metricsEndpointAuth: opt.bool({
    default: true,
    description:
      'Require a bearer token on /metrics: TokenReview, then a SubjectAccessReview for get on the non-resource URL /metrics (401/403 otherwise). Applies when the EPP uses the Kubernetes API (--pool-name, --endpoint-selector or --ha-enable-leader-election); with an endpoints file alone /metrics stays open unless --metrics-endpoint-auth-always.',
  }),
  metricsEndpointAuthAlways: opt.bool({
    default: false,
    description:
      "pd-router: apply --metrics-endpoint-auth with an endpoints file too (upstream's behaviour; the reviews go to the in-cluster, --kubeconfig or --kube-api-server API server).",
  }),
  metricsAuthCacheTtl: opt.duration({
    default: 60_000,
    description:
      "pd-router: how long a token's review outcome (allowed, 401 or 403) is reused; 0 reviews every scrape.",
  }),
  metricsAuthCacheSize: opt.int({
    default: 1024,
    min: 0,
    max: 1_000_000,
    description:
      'pd-router: most tokens whose outcome is cached (the oldest go first), and most distinct tokens under review at once (beyond: 503).',
  }),
  metricsAuthTimeout: opt.duration({
    default: 10_000,
    min: 1,
    description:
      'pd-router: deadline of each TokenReview and SubjectAccessReview (upstream: 10s); a review that fails answers 500.',
  }),
  kvIndexMaxEntries: opt.int({
    default: 1_048_576,
    min: 1,
    description:
      'pd-router: (endpoint, block) entries the precise prefix index (precise-prefix-cache-producer/-scorer) holds at most; past it the oldest blocks of the endpoint holding the most are dropped. About 100 bytes each.',
  }),
  kvEventsMaxMessageSize: opt.bytes({
    default: 16 * 1024 * 1024,
    min: 1024,
    description: 'pd-router: largest KV-event message accepted; libzmq disconnects a publisher sending a larger one.',
  }),
  kvEventsMaxMessageRate: opt.int({
    default: 5000,
    min: 0,
    description:
      "pd-router: KV-event messages per second one publisher may send (burst: one second's worth); beyond it they are dropped and counted; 0 = unlimited.",
  }),
  kvEventsReceiveHwm: opt.int({
    default: 10000,
    min: 1,
    description: 'pd-router: KV-event messages queued per ZMQ socket before libzmq drops new ones.',
  }),
  kvEventsRequired: opt.bool({
    default: true,
    description:
      "pd-router: when a precise plugin's KV-events socket cannot be bound, report NOT_SERVING (retrying the bind every 5s); --kv-events-required=false serves anyway, scoring from the approximate index until it binds.",
  }),
  tokenizerCacheTokens: opt.int({
    default: 4_194_304,
    min: 0,
    description:
      'pd-router: token ids the tokenizer plugins cache (4 bytes each), least recently used out first; 0 disables the cache.',
  }),
  ...tracingOptions,
  // llm-d's EPP traces by default (both releases); its sidecar does not (llm-d-router's; v0.7.1's always did).
  tracing: opt.bool({
    default: true,
    description: tracingOptions.tracing.description,
  }),
  ...shutdownOptions,
  ...loggingOptions,
};

/** The EPP's options, parsed. */
export type EppConfig = OptionValues<typeof eppOptions>;

/** How the EPP's Kubernetes features (discovery, CRDs, leader election, /metrics auth) reach the API server. */
export function kubeClientSettings(optionValues: EppConfig): KubeClientSettings {
  return {
    server: optionValues.kubeApiServer || undefined,
    kubeconfig: optionValues.kubeconfig || undefined,
    requestTimeoutMs: optionValues.kubeApiTimeout,
    maxResponseBytes: optionValues.kubeMaxResponseSize,
  };
}

/** `pd-router epp`: the command, its options and its start function. */
export const eppCommand: CommandDefinition<typeof eppOptions> = {
  name: 'epp',
  summary: 'Endpoint Picker: Envoy ext_proc server choosing decode and prefill endpoints (llm-d EPP compatible).',
  description: `Serves envoy.service.ext_proc.v3.ExternalProcessor (FULL_DUPLEX_STREAMED) on --grpc-port, gRPC health on
--grpc-health-port and Prometheus metrics on --metrics-port. Endpoints come from exactly one of: --endpoints-file,
the config's file-discovery plugin, --pool-name (InferencePool), or --endpoint-selector with --endpoint-target-ports.`,
  options: eppOptions,
  envPrefix: 'PD_EPP',
  compat: eppUpstream,
  validate: (optionValues) => {
    const problems: string[] = [];
    const sources = [
      optionValues.endpointsFile && '--endpoints-file',
      optionValues.poolName && '--pool-name',
      optionValues.endpointSelector && '--endpoint-selector',
    ].filter(Boolean);
    if (sources.length > 1) problems.push(`give only one endpoint source, got ${sources.join(' and ')}`);
    if (optionValues.configFile && optionValues.configText)
      problems.push('give --config-file or --config-text, not both');
    if (optionValues.endpointSelector) {
      if (optionValues.endpointTargetPorts.length < 1 || optionValues.endpointTargetPorts.length > 8)
        problems.push('--endpoint-selector needs 1 to 8 --endpoint-target-ports');
      for (const p of optionValues.endpointTargetPorts) {
        const n = Number(p);
        if (!Number.isInteger(n) || n < 1 || n > 65535)
          problems.push(`invalid value "${p}" in --endpoint-target-ports: expected a port between 1 and 65535`);
      }
    } else if (optionValues.endpointTargetPorts.length > 0)
      problems.push('--endpoint-target-ports needs --endpoint-selector');
    if (!optionValues.secureServing && optionValues.certPath) problems.push('--cert-path needs --secure-serving');
    if (optionValues.haRenewDeadline >= optionValues.haLeaseDuration)
      problems.push(
        `--ha-renew-deadline (${optionValues.haRenewDeadline} ms) must be shorter than --ha-lease-duration (${optionValues.haLeaseDuration} ms)`,
      );
    // client-go's rule: the renew deadline must leave room for a jittered retry.
    if (optionValues.haRenewDeadline <= optionValues.haRetryPeriod * 1.2)
      problems.push(
        `--ha-renew-deadline (${optionValues.haRenewDeadline} ms) must be longer than 1.2 x --ha-retry-period (${optionValues.haRetryPeriod} ms)`,
      );
    if (optionValues.requestBufferBudget < optionValues.maxRequestBodySize)
      problems.push(
        `--request-buffer-budget (${optionValues.requestBufferBudget} bytes) must be at least --max-request-body-size (${optionValues.maxRequestBodySize} bytes)`,
      );
    return problems;
  },
  epilog: `Plugin parameters (for example approx-prefix-cache-producer lruCapacityPerServer=31250 and
maxPrefixTokensToMatch=131072, no-hit-lru-scorer lruSize=1024, disagg-profile-handler
onPrefillUnavailable=decode-only) are set in the EndpointPickerConfig; see src/epp/README.md.`,
};

/** Defaults with overrides: how tests and the dev stack configure an EPP in-process. */
export function eppConfig(overrides: Partial<EppConfig> = {}): EppConfig {
  return { ...defaultValues(eppOptions), ...overrides };
}
