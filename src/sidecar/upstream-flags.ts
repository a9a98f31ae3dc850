/**
 * Every flag and environment variable of llm-d's routing sidecar (cmd/pd-sidecar), in both releases pd-router is a
 * drop-in for, and what pd-router does with it. Read from upstream's source: pkg/sidecar/proxy/options.go (flags,
 * deprecated flags, env defaults), cmd/pd-sidecar/main.go, the connectors' and tracing's os.Getenv calls, and
 * controller-runtime's zap.Options.BindFlags. The interop suite checks the flag list against the binaries' --help.
 */
import { compat, opt, zapLoggingFlags, type CompatTable } from '../common/index.js';

const V071 = 'v0.7.1';
const EBAB = 'ebab687';
const BOTH = [V071, EBAB] as const;

/** Read by the tracing module and the OTLP exporter when --tracing is on (src/common/tracing). */
const otel = (releases: readonly string[] = BOTH) =>
  compat.implemented(undefined, releases, { via: 'the OpenTelemetry exporter (with --tracing)' });
/** Inert upstream too until --moriio-write-mode or Wide-EP is set, so only a value other than the default warns. */
const moriio = (spec: Parameters<typeof compat.ignored>[1]) =>
  compat.ignored(
    [EBAB],
    spec,
    'MoRI-IO WRITE mode and Wide-EP are not implemented; kv_transfer_params pass through as with NIXL v2.',
    {
      harmless: (value: unknown) => JSON.stringify(value) === JSON.stringify(spec.default),
    },
  );

/** llm-d's sidecar flags, each implemented, mapped to pd-router's, or ignored with a reason. */
export const sidecarUpstream: CompatTable = {
  releases: {
    [V071]: 'llm-d-inference-scheduler v0.7.1 cmd/pd-sidecar',
    [EBAB]: 'llm-d-router ebab687 cmd/pd-sidecar',
  },
  flags: {
    port: compat.implemented('port', BOTH),
    'vllm-port': compat.implemented('modelServerPort', BOTH, {
      deprecated: 'use --model-server-port (ebab687); upstream v0.7.1 defaults it to 8001',
    }),
    'model-server-port': compat.implemented('modelServerPort', [EBAB]),
    'data-parallel-size': compat.implemented('dataParallelSize', BOTH),
    'kv-connector': compat.implemented('kvConnector', BOTH),
    'secure-proxy': compat.implemented('secureProxy', BOTH),
    'cert-path': compat.implemented('certPath', BOTH),
    'enable-ssrf-protection': compat.implemented('enableSsrfProtection', BOTH),
    'enable-prefiller-sampling': compat.implemented('enablePrefillerSampling', BOTH),
    'pool-group': compat.implemented('poolGroup', BOTH),
    'enable-tls': compat.implemented('enableTls', BOTH),
    'tls-insecure-skip-verify': compat.implemented('tlsInsecureSkipVerify', BOTH),
    'inference-pool': compat.implemented('inferencePool', BOTH),
    'max-idle-conns-per-host': compat.implemented('maxIdleConnsPerHost', [EBAB]),
    'prefill-max-retries': compat.implemented('prefillMaxRetries', [EBAB]),
    'prefill-retry-backoff': compat.implemented('prefillRetryBackoff', [EBAB]),
    'metrics-port': compat.implemented('metricsPort', [EBAB]),
    configuration: compat.implemented(undefined, [EBAB], {
      via: 'the inline configuration loader (YAML with the flag names as keys)',
    }),
    'configuration-file': compat.implemented(undefined, [EBAB], {
      via: 'the config file loader (YAML with the flag names as keys)',
    }),
    // controller-runtime registers --kubeconfig on Go's flag.CommandLine, which v0.7.1 adds to its flag set.
    kubeconfig: compat.implemented('kubeconfig', [V071]),
    connector: compat.mapsTo(
      [V071],
      opt.oneOf(['nixlv2', 'sglang', 'shared-storage'] as const, {
        default: 'nixlv2',
        description: 'The P/D connector.',
      }),
      '--kv-connector',
      (value: string, set) => set.set('kvConnector', value),
      { deprecated: 'use --kv-connector' },
    ),
    'prefiller-use-tls': compat.mapsTo(
      [V071],
      opt.bool({ default: false, description: 'HTTPS to prefillers.' }),
      '--enable-tls=prefiller',
      (flag: boolean, set) => flag && set.union('enableTls', ['prefiller']),
      {
        deprecated: 'use --enable-tls=prefiller',
      },
    ),
    'decoder-use-tls': compat.mapsTo(
      [V071],
      opt.bool({ default: false, description: 'HTTPS to the local decoder.' }),
      '--enable-tls=decoder',
      (flag: boolean, set) => flag && set.union('enableTls', ['decoder']),
      {
        deprecated: 'use --enable-tls=decoder',
      },
    ),
    'prefiller-tls-insecure-skip-verify': compat.mapsTo(
      [V071],
      opt.bool({ default: false, description: 'Do not verify prefiller certificates.' }),
      '--tls-insecure-skip-verify=prefiller',
      (flag: boolean, set) => flag && set.union('tlsInsecureSkipVerify', ['prefiller']),
      { deprecated: 'use --tls-insecure-skip-verify=prefiller' },
    ),
    'decoder-tls-insecure-skip-verify': compat.mapsTo(
      [V071],
      opt.bool({ default: false, description: 'Do not verify the decoder certificate.' }),
      '--tls-insecure-skip-verify=decoder',
      (flag: boolean, set) => flag && set.union('tlsInsecureSkipVerify', ['decoder']),
      { deprecated: 'use --tls-insecure-skip-verify=decoder' },
    ),
    'inference-pool-namespace': compat.mapsTo(
      [V071],
      opt.string({ default: '', description: 'Namespace of the InferencePool (with --inference-pool-name).' }),
      '--inference-pool',
      (ns: string, set) => {
        const name = (set.given('inference-pool-name') ?? set.given('INFERENCE_POOL_NAME')) as string | undefined;
        if (name) set.set('inferencePool', `${ns}/${name}`);
      },
      { deprecated: 'use --inference-pool' },
    ),
    'inference-pool-name': compat.mapsTo(
      [V071],
      opt.string({
        default: '',
        description:
          'Name of the InferencePool; the namespace comes from --inference-pool-namespace or INFERENCE_POOL_NAMESPACE, else "default".',
      }),
      '--inference-pool',
      (name: string, set) => {
        const ns = (set.given('inference-pool-namespace') ?? set.given('INFERENCE_POOL_NAMESPACE')) as
          string | undefined;
        set.set('inferencePool', ns ? `${ns}/${name}` : name);
      },
      { deprecated: 'use --inference-pool' },
    ),
    'ec-connector': compat.implemented('ecConnector', BOTH),
    'mooncake-bootstrap-port': compat.implemented('mooncakeBootstrapPort', [EBAB]),
    'p2p-connector-port': compat.implemented('p2pConnectorPort', [EBAB]),
    'enable-p2p-pull': compat.implemented('enableP2pPull', [EBAB]),
    'decode-chunk-size': compat.implemented('decodeChunkSize', [EBAB]),
    tracing: compat.implemented('tracing', [EBAB]),
    'moriio-write-mode': moriio(opt.bool({ default: false, description: 'MoRI-IO WRITE-mode passthrough.' })),
    'moriio-decode-notify-port': moriio(
      opt.int({ default: 61005, description: 'MoRI-IO notify port on the decode pod.' }),
    ),
    'moriio-local-pod-ip': moriio(
      opt.string({ default: '', description: "Decode pod's routable address for MoRI-IO." }),
    ),
    'moriio-decode-handshake-port': moriio(
      opt.int({ default: 6301, description: 'MoRI-IO handshake port on the decode pod.' }),
    ),
    'moriio-parallel-dispatch': moriio(
      opt.bool({ default: false, description: 'Prefill and decode at once (MoRI-IO).' }),
    ),
    'moriio-parallel-decode-wait-timeout': moriio(
      opt.duration({ default: 30_000, description: 'Parallel dispatch backstop.' }),
    ),
    'moriio-prefill-handshake-port': moriio(
      opt.int({ default: 6301, description: "Prefill pod's MoRI-IO handshake port." }),
    ),
    'moriio-prefill-notify-port': moriio(
      opt.int({ default: 61005, description: "Prefill pod's MoRI-IO notify port." }),
    ),
    'moriio-tp-size': moriio(
      opt.int({ default: 1, description: 'Tensor-parallel size echoed in kv_transfer_params.' }),
    ),
    'moriio-dp-size': moriio(opt.int({ default: 1, description: 'Data-parallel world size (Wide-EP).' })),
    'moriio-remote-hosts': moriio(opt.list({ default: [], description: 'Wide-EP remote pod hosts.' })),
    'moriio-dp-size-local': moriio(opt.int({ default: 0, description: 'Wide-EP per-pod DP size.' })),
    'moriio-decode-hosts': moriio(opt.list({ default: [], description: 'Wide-EP decode pod hosts.' })),
    // controller-runtime's zap flags (v0.7.1 binds them on Go's flag.CommandLine, ebab687 on its own set).
    ...zapLoggingFlags(BOTH, { verbosity: false }),
  },
  env: {
    INFERENCE_POOL: compat.implemented('inferencePool', BOTH),
    ENABLE_PREFILLER_SAMPLING: compat.implemented('enablePrefillerSampling', BOTH),
    SGLANG_BOOTSTRAP_PORT: compat.implemented('sglangBootstrapPort', BOTH),
    POD_IP: compat.implemented('podIp', BOTH),
    KUBECONFIG: compat.implemented('kubeconfig', BOTH),
    INFERENCE_POOL_NAMESPACE: compat.mapsTo(
      [V071],
      opt.string({ default: '', description: 'Namespace of the InferencePool (deprecated).' }),
      '--inference-pool',
      () => {
        // Read by inference-pool-name's entry; alone it names no pool.
      },
    ),
    INFERENCE_POOL_NAME: compat.mapsTo(
      [V071],
      opt.string({ default: '', description: 'Name of the InferencePool (deprecated).' }),
      '--inference-pool',
      (name: string, set) => {
        const ns = (set.given('INFERENCE_POOL_NAMESPACE') as string | undefined) ?? '';
        set.set('inferencePool', ns ? `${ns}/${name}` : name);
      },
    ),
    MOONCAKE_BOOTSTRAP_PORT: compat.implemented('mooncakeBootstrapPort', [EBAB]),
    P2P_CONNECTOR_PORT: compat.implemented('p2pConnectorPort', [EBAB]),
    MORIIO_DNS_RESOLVE_TTL_SECONDS: compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'MoRI-IO host re-resolution interval.' }),
      'MoRI-IO is not implemented.',
    ),
    MORIIO_DNS_RESOLVE_TIMEOUT_SECONDS: compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'MoRI-IO host resolution timeout.' }),
      'MoRI-IO is not implemented.',
    ),
    MORIIO_METRICS_ADDR: compat.ignored(
      [EBAB],
      opt.string({ default: '', description: 'Address of the MoRI-IO DNS metrics endpoint.' }),
      "MoRI-IO is not implemented (its moriio_dns_* metrics do not exist); --metrics-port serves the sidecar's own metrics.",
    ),
    // v0.7.1 starts tracing always (to localhost:4317 unless configured); ebab687 only with --tracing.
    OTEL_SERVICE_NAME: otel(),
    OTEL_EXPORTER_OTLP_ENDPOINT: otel(),
    OTEL_TRACES_SAMPLER_ARG: otel(),
    OTEL_TRACES_SAMPLER: otel([EBAB]),
    OTEL_TRACES_EXPORTER: otel([EBAB]),
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otel([EBAB]),
    OTEL_EXPORTER_OTLP_INSECURE: otel([EBAB]),
    OTEL_EXPORTER_OTLP_TRACES_INSECURE: otel([EBAB]),
    OTEL_EXPORTER_OTLP_CERTIFICATE: otel([EBAB]),
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: otel([EBAB]),
  },
};
