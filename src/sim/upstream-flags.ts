/**
 * Every flag and environment variable of llm-d-inference-sim v0.10.2 (the image llm-d's e2e tests run), and what
 * pd-router's simulator does with it. Read from upstream's pkg/common/parser.go (its pflag set, the klog flags it
 * adds, the variables it reads) and pkg/common/config.go. The interop suite checks the list against the binary's --help.
 */
import { compat, klogFlags, opt, type CompatEntry, type CompatTable, type OptionSpec } from '../common/index.js';

const V = 'v0.10.2';
const R = [V] as const;

const harmlessDefault =
  <T>(dflt: T) =>
  (value: T) =>
    value === dflt;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the value of whichever option the entry holds
const ignored = (spec: CompatEntry['spec'], reason: string, harmless?: (value: any) => boolean): CompatEntry =>
  compat.ignored(R, spec!, reason, harmless ? { harmless } : {});

/** Flags upstream itself reads and ignores (accepted for vLLM command-line compatibility). */
const ignoredUpstreamToo = (spec: CompatEntry['spec']): CompatEntry =>
  ignored(spec, 'llm-d-inference-sim ignores it too (vLLM compatibility).', () => true);

const toolCalls = (description: string, dflt: number): CompatEntry =>
  ignored(
    opt.number({ default: dflt, description }),
    'tool calls are not generated: answers are text (random sentences or the echoed prompt).',
    harmlessDefault(dflt),
  );

/** Upstream's `--x` / `--no-x` toggle pair for a feature pd-router lacks: warned when turned on. */
const toggle = (name: string, description: string, reason: string): Record<string, CompatEntry> => ({
  [name]: ignored(opt.bool({ default: false, description }), reason, (flag: boolean) => !flag),
  [`no-${name}`]: ignored(opt.bool({ default: false, description: `The opposite of --${name}.` }), reason, () => true),
});

const MiB = 1024 * 1024;

/** A value taken as it is: upstream's --fake-metrics is JSON on the command line and a mapping in its config file. */
const anyValue = (description: string): OptionSpec<unknown> => ({
  kind: 'string',
  default: '',
  description,
  placeholder: '<json>',
  variadic: true,
  parse: (raw: unknown) => raw,
  formatDefault: () => '""',
});

/** llm-d-inference-sim's flags, each implemented, mapped to pd-router's, or ignored with a reason. */
export const simUpstream: CompatTable = {
  releases: { [V]: 'llm-d-inference-sim v0.10.2 cmd/llm-d-inference-sim' },
  flags: {
    config: compat.implemented(undefined, R, { via: 'the config file loader (YAML with the flag names as keys)' }),
    port: compat.implemented('port', R),
    model: compat.implemented('model', R),
    'served-model-name': compat.implemented('servedModelName', R),
    mode: compat.implemented('mode', R),
    seed: compat.implemented('seed', R),
    'max-num-seqs': compat.implemented('maxNumSeqs', R),
    'max-waiting-queue-length': compat.implemented('maxWaitingQueueLength', R),
    'max-model-len': compat.implemented('maxModelLen', R),
    'latency-calculator': compat.implemented('latencyCalculator', R),
    'time-to-first-token': compat.implemented('timeToFirstToken', R),
    'time-to-first-token-std-dev': compat.implemented('timeToFirstTokenStdDev', R),
    'inter-token-latency': compat.implemented('interTokenLatency', R),
    'inter-token-latency-std-dev': compat.implemented('interTokenLatencyStdDev', R),
    'prefill-overhead': compat.implemented('prefillOverhead', R),
    'prefill-time-per-token': compat.implemented('prefillTimePerToken', R),
    'prefill-time-std-dev': compat.implemented('prefillTimeStdDev', R),
    'kv-cache-transfer-latency': compat.implemented('kvCacheTransferLatency', R),
    'kv-cache-transfer-latency-std-dev': compat.implemented('kvCacheTransferLatencyStdDev', R),
    'kv-cache-transfer-time-per-token': compat.implemented('kvCacheTransferTimePerToken', R),
    'kv-cache-transfer-time-std-dev': compat.implemented('kvCacheTransferTimeStdDev', R),
    'time-factor-under-load': compat.implemented('timeFactorUnderLoad', R),
    'enable-kvcache': compat.implemented('enableKvcache', R),
    'kv-cache-size': compat.implemented('kvCacheSize', R),
    'block-size': compat.implemented('blockSize', R),
    'global-cache-hit-threshold': compat.implemented('globalCacheHitThreshold', R),
    'data-parallel-size': compat.implemented('dataParallelSize', R),
    'startup-duration': compat.implemented('startupDuration', R),
    'enable-request-id-headers': compat.implemented('enableRequestIdHeaders', R),
    'force-dummy-tokenizer': compat.implemented('forceDummyTokenizer', R),
    'max-request-body-size-mb': compat.mapsTo(
      R,
      opt.int({ default: 4, min: 1, max: 512, description: 'Largest request body in MiB.' }),
      '--max-request-body-size',
      (mb: number, set) => set.set('maxRequestBodySize', mb * MiB),
    ),
    ...klogFlags(R),
    'data-parallel-rank': ignored(
      opt.int({ default: -1, description: 'Run only this rank (one process per rank).' }),
      'every rank runs in the one process (--data-parallel-size, rank r on port+r).',
      harmlessDefault(-1),
    ),
    'max-loras': compat.implemented('maxLoras', R),
    'lora-modules': compat.implemented('loraModules', R),
    'max-cpu-loras': ignored(
      opt.int({ default: 0, description: 'LoRAs kept in CPU memory.' }),
      'LoRA adapters are not loaded or evicted, so there is no CPU tier.',
      harmlessDefault(0),
    ),
    'max-tool-call-integer-param': toolCalls('Largest integer tool-call parameter.', 100),
    'min-tool-call-integer-param': toolCalls('Smallest integer tool-call parameter.', 0),
    'max-tool-call-number-param': toolCalls('Largest number tool-call parameter.', 100),
    'min-tool-call-number-param': toolCalls('Smallest number tool-call parameter.', 0),
    'max-tool-call-array-param-length': toolCalls('Longest tool-call array parameter.', 5),
    'min-tool-call-array-param-length': toolCalls('Shortest tool-call array parameter.', 1),
    'tool-call-not-required-param-probability': toolCalls(
      'Probability (0-100) of an optional tool-call parameter.',
      50,
    ),
    'object-tool-call-not-required-field-probability': toolCalls(
      'Probability (0-100) of an optional object field in a tool call.',
      50,
    ),
    'hash-seed': compat.implemented('hashSeed', R),
    'zmq-endpoint': compat.implemented('zmqEndpoint', R, {
      via: 'published only when set (upstream publishes to its default tcp://127.0.0.1:5557)',
    }),
    'event-batch-size': compat.implemented('eventBatchSize', R),
    'use-vllm-map-event-format': compat.implemented('useVllmMapEventFormat', R),
    'dataset-path': ignored(
      opt.string({ default: '', description: 'sqlite dataset for responses.' }),
      'responses come from fixed sentences (random) or the prompt (echo), never a dataset.',
      harmlessDefault(''),
    ),
    'dataset-url': ignored(
      opt.string({ default: '', description: 'URL of the sqlite dataset.' }),
      'responses never come from a dataset.',
      harmlessDefault(''),
    ),
    'dataset-in-memory': ignored(
      opt.bool({ default: false, description: 'Load the dataset into memory.' }),
      'responses never come from a dataset.',
      () => true,
    ),
    'dataset-table-name': ignored(
      opt.string({ default: 'llmd', description: 'Dataset table.' }),
      'responses never come from a dataset.',
      () => true,
    ),
    'render-url': ignored(
      opt.string({ default: 'http://localhost:8082', description: 'Tokenizer render service.' }),
      'pd-router always uses its simulated tokenizer (upstream does so with --force-dummy-tokenizer); no render service is called.',
      harmlessDefault('http://localhost:8082'),
    ),
    'render-timeout': ignored(
      opt.duration({ default: 30_000, description: 'Render request timeout.' }),
      'no render service is called.',
      () => true,
    ),
    'mm-render-timeout': ignored(
      opt.duration({ default: 60_000, description: 'Multi-modal render request timeout.' }),
      'no render service is called.',
      () => true,
    ),
    ...toggle(
      'enable-sleep-mode',
      'Sleep mode (/sleep, /wake_up).',
      'sleep mode is not simulated (no /sleep or /wake_up).',
    ),
    'log-http': ignored(
      opt.bool({ default: false, description: 'Log full HTTP requests and responses.' }),
      'requests are not logged in full; GET /admin/requests shows the recent ones.',
      (flag: boolean) => !flag,
    ),
    'failure-injection-rate': ignored(
      opt.int({ default: 0, min: 0, max: 100, description: 'Probability (0-100) of an injected failure.' }),
      'random failure injection is not implemented; use the X-Return-Error header or POST /admin/config.',
      harmlessDefault(0),
    ),
    'failure-types': ignored(
      opt.list({ default: [], variadic: true, description: 'Failure types to inject.' }),
      'random failure injection is not implemented.',
      (items: string[]) => items.length === 0,
    ),
    'ssl-certfile': ignored(
      opt.string({ default: '', description: 'TLS certificate.' }),
      'the simulator serves plain HTTP only.',
      harmlessDefault(''),
    ),
    'ssl-keyfile': ignored(
      opt.string({ default: '', description: 'TLS key.' }),
      'the simulator serves plain HTTP only.',
      harmlessDefault(''),
    ),
    'self-signed-certs': ignored(
      opt.bool({ default: false, description: 'HTTPS with a self-signed certificate.' }),
      'the simulator serves plain HTTP only.',
      (flag: boolean) => !flag,
    ),
    'default-embedding-dimensions': ignored(
      opt.int({ default: 384, description: 'Embedding size for /v1/embeddings.' }),
      '/v1/embeddings is not simulated.',
      harmlessDefault(384),
    ),
    'fake-metrics': ignored(
      anyValue('Metrics reported instead of the real ones (JSON; a mapping in the config file).'),
      "metrics are always the simulated engine's own.",
    ),
    'fake-metrics-refresh-interval': ignored(
      opt.duration({ default: 100, description: 'Fake metrics refresh.' }),
      'fake metrics are not implemented.',
      () => true,
    ),
    'mm-encoder-only': compat.implemented('mmEncoderOnly', R),
    'no-mm-encoder-only': compat.mapsTo(
      R,
      opt.bool({ default: false, description: 'The opposite of --mm-encoder-only.' }),
      '--mm-encoder-only=false',
      (off: boolean, set) => {
        if (off) set.set('mmEncoderOnly', false);
      },
    ),
    ...toggle('omni', 'Omni mode: image chunks on X-Send-Image.', 'image output is not simulated.'),
    'image-emission-rate': ignored(
      opt.int({ default: 0, min: 0, max: 100, description: 'Probability of an image chunk in omni mode.' }),
      'image output is not simulated.',
      harmlessDefault(0),
    ),
    'time-to-generate-image': ignored(
      opt.duration({ default: 0, description: 'Image generation time (omni).' }),
      'image output is not simulated.',
      harmlessDefault(0),
    ),
    'time-to-generate-image-std-dev': ignored(
      opt.duration({ default: 0, description: 'Its standard deviation.' }),
      'image output is not simulated.',
      harmlessDefault(0),
    ),
    'mm-processor-kwargs': ignoredUpstreamToo(
      opt.string({ default: '', description: 'Multi-modal processor arguments.' }),
    ),
    'ec-transfer-config': ignoredUpstreamToo(
      opt.string({ default: '', description: 'EC cache transfer configuration.' }),
    ),
    'enforce-eager': ignoredUpstreamToo(opt.bool({ default: false, description: 'Eager-mode PyTorch.' })),
    'no-enforce-eager': ignoredUpstreamToo(
      opt.bool({ default: false, description: 'The opposite of --enforce-eager.' }),
    ),
    'enable-prefix-caching': ignoredUpstreamToo(
      opt.bool({
        default: false,
        description: "vLLM's prefix caching (--enable-kvcache governs the simulated cache).",
      }),
    ),
    'no-enable-prefix-caching': ignoredUpstreamToo(
      opt.bool({ default: false, description: 'The opposite of --enable-prefix-caching.' }),
    ),
  },
  env: {
    SIM_MODEL: compat.implemented('model', R),
    POD_IP: compat.implemented('advertiseHost', R),
    POD_NAME: compat.implemented(undefined, R, { via: 'the simulator (x-inference-pod response header)' }),
    POD_NAMESPACE: compat.implemented(undefined, R, { via: 'the simulator (x-inference-namespace response header)' }),
    PYTHONHASHSEED: compat.implemented('hashSeed', R),
    VLLM_SERVER_DEV_MODE: compat.ignored(
      R,
      opt.string({ default: '', description: '"1" enables vLLM\'s development endpoints.' }),
      'the development endpoints are not simulated.',
      {
        harmless: (value: string) => value !== '1',
      },
    ),
  },
};
