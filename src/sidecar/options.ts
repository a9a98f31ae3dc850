/**
 * `pd-router sidecar` flags. Upstream llm-d sidecar names and defaults where they mean the same (cmd/pd-sidecar,
 * pkg/sidecar/proxy/options.go), including its config file flags `--configuration` (inline YAML) and
 * `--configuration-file`, and its environment variables (INFERENCE_POOL, ENABLE_PREFILLER_SAMPLING, ...).
 * Flags marked "pd-router" are ours: deadlines, failure policy, body limits, static SSRF allowlists. Upstream flags
 * pd-router has under another name, or lacks, are in upstream-flags.ts.
 */
import {
  defaultValues,
  loggingOptions,
  opt,
  parseTarget,
  shutdownOptions,
  tracingOptions,
  type CommandDefinition,
  type OptionValues,
} from '../common/index.js';
import { sidecarUpstream } from './upstream-flags.js';

export const TLS_STAGES = ['prefiller', 'decoder', 'encoder'] as const;
export const CONNECTORS = ['nixlv2', 'sglang', 'shared-storage', 'mooncake', 'offloading'] as const;
export const FAILURE_POLICIES = ['fail', 'retry', 'local'] as const;
/** --ec-connector: '' (no encode stage), ec-example (encoders primed, answers discarded), ec-nixl (ec_transfer_params). */
export const EC_CONNECTORS = ['', 'ec-example', 'ec-nixl'] as const;

/** The sidecar's flag table. */
export const sidecarOptions = {
  port: opt.int({
    default: 8000,
    min: 0,
    max: 65535,
    description: 'Listen port (0: any free port); data-parallel rank r listens on port+r.',
  }),
  host: opt.string({ default: '0.0.0.0', description: 'pd-router: address to listen on.' }),
  modelServerPort: opt.int({
    default: 8200,
    min: 1,
    max: 65535,
    aliases: ['vllm-port'],
    description:
      'Port of the local vLLM (decoder) on localhost; rank r uses port+r. --vllm-port is the deprecated name.',
  }),
  modelServerHost: opt.string({
    default: 'localhost',
    description: 'pd-router: host of the local vLLM (upstream always uses localhost).',
  }),
  kvConnector: opt.oneOf(CONNECTORS, {
    default: 'nixlv2',
    description:
      'P/D protocol: nixlv2 (kv_transfer_params), sglang (bootstrap room), shared-storage, mooncake (bootstrap server, concurrent legs), offloading (OffloadingConnector P2P, concurrent legs).',
  }),
  ecConnector: opt.oneOf(EC_CONNECTORS, {
    default: '',
    description:
      'E/PD: with x-encoder-hosts-ports, each multimodal item of a chat request is first encoded on an encoder: ec-example (answer discarded), ec-nixl (its ec_transfer_params go to the prefill and decode legs); empty: no encode stage.',
  }),
  encodeTimeout: opt.duration({
    default: 120_000,
    min: 1,
    description: 'pd-router: deadline for one encoder answer; 504 beyond it.',
  }),
  encodeConcurrency: opt.int({
    default: 16,
    min: 1,
    max: 1024,
    description:
      "pd-router: most encoder requests in flight for one request's multimodal items (upstream: all at once).",
  }),
  maxEncodeResponseSize: opt.bytes({
    default: 8 * 1024 * 1024,
    min: 1024,
    description: 'pd-router: largest encoder answer buffered (one token and its ec_transfer_params); 502 beyond it.',
  }),
  dataParallelSize: opt.int({
    default: 1,
    min: 1,
    max: 64,
    description: 'Data-parallel ranks: one listener and one decoder port per rank.',
  }),
  secureProxy: opt.bool({
    default: true,
    description: 'Serve HTTPS (self-signed certificate unless --cert-path is given), as upstream.',
  }),
  certPath: opt.string({
    default: '',
    description: 'Directory with tls.crt and tls.key for --secure-proxy; reloaded when the files change.',
  }),
  enableTls: opt.list({
    default: [],
    choices: TLS_STAGES,
    description: 'Stages that use HTTPS upstream: prefiller, decoder, encoder.',
  }),
  tlsInsecureSkipVerify: opt.list({
    default: [],
    choices: TLS_STAGES,
    description: 'Stages whose upstream certificates are not verified (pod IPs lack SANs).',
  }),
  enableSsrfProtection: opt.bool({
    default: false,
    description:
      "Only send prefills (and encoder requests) to allowed host:port targets: the InferencePool's pods and target ports, or --ssrf-allowlist / --ssrf-allowlist-file.",
  }),
  inferencePool: opt.string({
    default: '',
    env: ['INFERENCE_POOL'],
    description: 'InferencePool for SSRF protection: "namespace/name" or "name" (namespace default).',
  }),
  poolGroup: opt.oneOf(['inference.networking.k8s.io', 'inference.networking.x-k8s.io'] as const, {
    default: 'inference.networking.k8s.io',
    description: 'API group of the InferencePool (x-k8s.io is the deprecated v1alpha2).',
  }),
  ssrfAllowlist: opt.list({
    default: [],
    description: 'pd-router: static host:port targets allowed (instead of watching an InferencePool).',
  }),
  ssrfAllowlistFile: opt.string({
    default: '',
    description: 'pd-router: YAML/JSON list (or one per line) of allowed host:port targets, reloaded when it changes.',
  }),
  ssrfSyncTimeout: opt.duration({
    default: 30_000,
    description:
      'pd-router: how long the InferencePool watch may take to sync before an error names the cause; the sidecar listens at once, and until the watch syncs /ready answers 503 and prefills are denied (403).',
  }),
  kubeconfig: opt.string({
    default: '',
    env: ['KUBECONFIG'],
    description: 'kubeconfig for SSRF protection; default in-cluster.',
  }),
  kubeApiServer: opt.string({
    default: '',
    hidden: true,
    description: 'Kubernetes API URL without credentials (kubectl proxy, tests).',
  }),
  kubeApiTimeout: opt.duration({
    default: 30_000,
    min: 1,
    description:
      'pd-router: deadline of each Kubernetes API list (SSRF protection) and of a watch until the API server answers.',
  }),
  kubeMaxResponseSize: opt.bytes({
    default: 64 * 1024 * 1024,
    min: 1024,
    description:
      'pd-router: largest Kubernetes API answer (a list) and watch event read; a larger one fails the call, which is retried with backoff.',
  }),
  enablePrefillerSampling: opt.bool({
    default: false,
    env: ['ENABLE_PREFILLER_SAMPLING'],
    description: 'Pick a random prefiller among the x-prefiller-host-port values instead of the first.',
  }),
  prefillFailurePolicy: opt.oneOf(FAILURE_POLICIES, {
    default: 'fail',
    description:
      'pd-router: on prefill failure: fail (relay the error; connection failure = 502; llm-d-router ebab687), retry (also retries connection errors and timeouts), local (prefill on the local vLLM instead; llm-d-inference-scheduler v0.7.1 always did this, except on 4xx).',
  }),
  prefillMaxRetries: opt.int({
    default: 0,
    min: 0,
    max: 10,
    description:
      "Retries of a prefill answered 502/503/504 (and, with --prefill-failure-policy=retry, connection errors and timeouts); llm-d-router ebab687's flag (v0.7.1 never retries).",
  }),
  prefillRetryBackoff: opt.duration({
    default: 200,
    description:
      'Wait before the first prefill retry; doubles each retry (llm-d-router ebab687 waits this long before every retry).',
  }),
  prefillTimeout: opt.duration({
    default: 120_000,
    min: 1,
    description: 'pd-router: deadline for a prefill answer (per attempt); 504 beyond it.',
  }),
  decodeFirstByteTimeout: opt.duration({
    default: 300_000,
    min: 1,
    description: 'pd-router: deadline for the first byte of the decode answer; 504 beyond it.',
  }),
  decodeIdleTimeout: opt.duration({
    default: 120_000,
    min: 1,
    description:
      'pd-router: longest pause between two chunks of a decode answer; an SSE error event (or a closed connection) beyond it.',
  }),
  requestBodyTimeout: opt.duration({
    default: 60_000,
    min: 1,
    description:
      'pd-router: deadline for receiving a request body (every path, read whole before it is sent on); 408 beyond it.',
  }),
  maxRequestBodySize: opt.bytes({
    default: 32 * 1024 * 1024,
    min: 1024,
    description:
      'pd-router: largest request body (every path); 413 beyond it, before the body is read when Content-Length says so.',
  }),
  maxJsonDepth: opt.int({
    default: 256,
    min: 2,
    max: 1000,
    description:
      'pd-router: deepest JSON nesting the sidecar parses (request bodies, prefill answers); 400 for a request, 502 for a prefill answer beyond it.',
  }),
  maxPrefillResponseSize: opt.bytes({
    default: 8 * 1024 * 1024,
    min: 1024,
    description: 'pd-router: largest prefill answer buffered (it is one token).',
  }),
  maxRewriteBodySize: opt.bytes({
    default: 64 * 1024 * 1024,
    min: 1024,
    description:
      'pd-router: largest non-streamed decode answer buffered to rewrite cached_tokens (larger ones pass through unchanged, counted); in chunked decode, the bound of each chunk answer and of the text gathered (502 beyond it).',
  }),
  maxIdleConnsPerHost: opt.int({
    default: 1024,
    min: 1,
    description: 'Connections kept per upstream host (undici pool size per origin).',
  }),
  sglangBootstrapPort: opt.int({
    default: 8998,
    min: 1,
    max: 65535,
    env: ['SGLANG_BOOTSTRAP_PORT'],
    description: 'SGLang bootstrap port sent as bootstrap_port.',
  }),
  mooncakeBootstrapPort: opt.int({
    default: 8998,
    min: 1,
    max: 65535,
    env: ['MOONCAKE_BOOTSTRAP_PORT'],
    description:
      "Port of the Mooncake bootstrap server on prefill pods, queried (GET /query) for the prefiller's engine ids (--kv-connector=mooncake).",
  }),
  mooncakeBootstrapTimeout: opt.duration({
    default: 5_000,
    min: 1,
    description:
      'pd-router: deadline of the Mooncake bootstrap query (upstream: a fixed 5s); 502 beyond it. Answers are cached per prefiller.',
  }),
  p2pConnectorPort: opt.int({
    default: 7777,
    min: 1,
    max: 65535,
    env: ['P2P_CONNECTOR_PORT'],
    description:
      "The OffloadingConnector P2P tier's port on a KV peer, sent as remote_port (--kv-connector=offloading or --enable-p2p-pull); with --data-parallel-size > 1 rank r uses port+r.",
  }),
  enableP2pPull: opt.bool({
    default: false,
    description:
      'With --kv-connector=nixlv2: the engines run MultiConnector(NixlConnector + OffloadingConnector), so x-kv-cache-source-host-port adds a remote_kv_source pull (offloading has it without this flag).',
  }),
  decodeChunkSize: opt.int({
    default: 0,
    min: 0,
    description:
      'Chunked decode (chat completions through nixlv2 and local decode): the decode runs as requests of at most this many tokens, stitched into one answer (0: off).',
  }),
  maxDecodeChunks: opt.int({
    default: 256,
    min: 1,
    description:
      'pd-router: most decode requests one chunked decode sends; beyond it the answer ends with finish_reason "length".',
  }),
  podIp: opt.string({
    default: '',
    env: ['POD_IP'],
    description: "This pod's IP: key of the deprecated x-data-parallel-host-port header.",
  }),
  metricsPort: opt.int({
    default: 0,
    min: 0,
    max: 65535,
    description:
      "Serve Prometheus /metrics on this port (0: only at /sidecar/metrics on the proxy port; /metrics there is vLLM's).",
  }),
  readinessTimeout: opt.duration({
    default: 1000,
    min: 1,
    description: 'pd-router: deadline of the local vLLM check behind GET /ready.',
  }),
  ...tracingOptions,
  ...shutdownOptions,
  ...loggingOptions,
};

/** The sidecar's options, parsed. */
export type SidecarConfig = OptionValues<typeof sidecarOptions>;

/** `pd-router sidecar`: the command, its options and its start function. */
export const sidecarCommand: CommandDefinition<typeof sidecarOptions> = {
  name: 'sidecar',
  summary: 'Decode-pod routing sidecar: remote prefill (x-prefiller-host-port) then local decode, llm-d compatible.',
  description: `POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages and /inference/v1/generate go through
the P/D handler: with an x-prefiller-host-port header the prefill leg goes to that worker (max tokens 1,
kv_transfer_params.do_remote_decode=true) and the original request, with the prefiller's kv_transfer_params, to the
local vLLM, streamed back. With --ec-connector and an x-encoder-hosts-ports header, each multimodal item of a chat
request is first sent to an encoder (E/PD). Without the headers the request goes to the local vLLM untouched. Every other method and path
(including /metrics and /v1/models) is passed through. A client's own kv_transfer_params is removed on every path.
GET /health answers locally; GET /ready checks the local vLLM; GET /sidecar/metrics serves the sidecar's own metrics.`,
  options: sidecarOptions,
  envPrefix: 'PD_SIDECAR',
  configFileFlags: ['configuration-file'],
  configTextFlags: ['configuration'],
  compat: sidecarUpstream,
  validate: (optionValues) => {
    const problems: string[] = [];
    if (optionValues.port + optionValues.dataParallelSize - 1 > 65535)
      problems.push(
        `--port ${optionValues.port} + --data-parallel-size ${optionValues.dataParallelSize} exceeds 65535`,
      );
    if (optionValues.modelServerPort + optionValues.dataParallelSize - 1 > 65535) {
      problems.push(
        `--model-server-port ${optionValues.modelServerPort} + --data-parallel-size ${optionValues.dataParallelSize} exceeds 65535`,
      );
    }
    if (optionValues.enableP2pPull && optionValues.kvConnector !== 'nixlv2')
      problems.push(`--enable-p2p-pull requires --kv-connector=nixlv2 (got "${optionValues.kvConnector}")`);
    if (optionValues.p2pConnectorPort + optionValues.dataParallelSize - 1 > 65535)
      problems.push(
        `--p2p-connector-port ${optionValues.p2pConnectorPort} plus data-parallel rank ${optionValues.dataParallelSize - 1} exceeds 65535`,
      );
    if (optionValues.prefillMaxRetries > 0 && optionValues.prefillRetryBackoff <= 0)
      problems.push('--prefill-retry-backoff must be > 0 when --prefill-max-retries > 0');
    if (optionValues.prefillFailurePolicy === 'retry' && optionValues.prefillMaxRetries === 0)
      problems.push('--prefill-failure-policy=retry needs --prefill-max-retries >= 1');
    const static_ = optionValues.ssrfAllowlist.length > 0 || optionValues.ssrfAllowlistFile !== '';
    if (optionValues.enableSsrfProtection && !static_ && optionValues.inferencePool === '') {
      problems.push(
        '--enable-ssrf-protection needs --inference-pool (or env INFERENCE_POOL), --ssrf-allowlist or --ssrf-allowlist-file',
      );
    }
    // The same parser the allowlist is built with, so what passes here cannot fail at startup.
    for (const t of optionValues.ssrfAllowlist)
      if (!parseTarget(t))
        problems.push(`invalid value "${t}" for --ssrf-allowlist: expected host:port with a port from 1 to 65535`);
    return problems;
  },
};

/** Parses the sidecar's options from a command line (tests and `pd-router dev`). */
export function sidecarConfig(overrides: Partial<SidecarConfig> = {}): SidecarConfig {
  return { ...defaultValues(sidecarOptions), ...overrides };
}
