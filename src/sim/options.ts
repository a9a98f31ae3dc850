/**
 * `pd-router sim` flags. Names and defaults follow llm-d-inference-sim (pkg/common/config.go), so a manifest written
 * for it runs this simulator unchanged; flags marked "pd-router" are ours. Upstream flags it has under another name, or
 * lacks, are in upstream-flags.ts.
 */
import {
  opt,
  loggingOptions,
  shutdownOptions,
  defaultValues,
  type CommandDefinition,
  type OptionValues,
} from '../common/index.js';
import { isObject } from '../common/json.js';
import { parseLoraModules } from './lora.js';
import { simUpstream } from './upstream-flags.js';

const latency = (description: string) => opt.duration({ default: 0, description });

/** The simulator's flag table. */
export const simOptions = {
  port: opt.int({
    default: 8000,
    min: 0,
    max: 65535,
    description: 'HTTP port (data-parallel rank r listens on port+r).',
  }),
  host: opt.string({ default: '0.0.0.0', description: 'Address to listen on.' }),
  model: opt.list({
    default: ['sim-model'],
    env: ['SIM_MODEL'],
    description: 'Model name(s) served; the first is the name reported in responses and metrics.',
  }),
  servedModelName: opt.list({
    default: [],
    variadic: true,
    description: 'Aliases accepted in requests (comma-separated, or space-separated as upstream); defaults to --model.',
  }),
  mode: opt.oneOf(['random', 'echo'] as const, {
    default: 'random',
    description: 'random: answers drawn from fixed sentences; echo: the prompt is returned.',
  }),
  mmEncoderOnly: opt.bool({
    default: false,
    description:
      'Encoder-only instance (E/PD): a chat request is answered with "!" per requested token and ec_transfer_params for each multimodal item.',
  }),
  seed: opt.int({ default: -1, description: 'Random seed for latencies and random text; -1 seeds from the clock.' }),
  timeScale: opt.number({
    default: 1,
    min: 0,
    description:
      'pd-router: multiplies every simulated duration when sleeping (0.1 runs ten times faster); metrics report simulated time.',
  }),
  latencyCalculator: opt.oneOf(['', 'constant', 'per-token'] as const, {
    default: '',
    description: 'TTFT model: constant, per-token, or "" (per-token when --time-to-first-token is 0, else constant).',
  }),
  timeToFirstToken: latency('Constant calculator: time to first token.'),
  timeToFirstTokenStdDev: latency('Std-dev of the time to first token (at most 30% of it).'),
  interTokenLatency: latency('Time between output tokens.'),
  interTokenLatencyStdDev: latency('Std-dev of the inter-token latency (at most 30% of it).'),
  prefillOverhead: latency('Per-token calculator: fixed prefill cost.'),
  prefillTimePerToken: latency('Per-token calculator: prefill cost per uncached prompt token.'),
  prefillTimeStdDev: latency('Per-token calculator: std-dev of the prefill time.'),
  kvCacheTransferLatency: latency(
    'Constant calculator: KV-transfer time replacing prefill for do_remote_prefill requests.',
  ),
  kvCacheTransferLatencyStdDev: latency('Std-dev of the KV-transfer latency (at most 30% of it).'),
  kvCacheTransferTimePerToken: latency('Per-token calculator: KV-transfer time per prompt token.'),
  kvCacheTransferTimeStdDev: latency('Per-token calculator: std-dev of the KV-transfer time.'),
  timeFactorUnderLoad: opt.number({
    default: 1,
    min: 1,
    description:
      'Latency multiplier when max-num-seqs requests run; scales linearly with the running batch. Never applied to KV transfer.',
  }),
  engineModel: opt.oneOf(['request', 'step'] as const, {
    default: 'request',
    description:
      'pd-router: request = each request sleeps its own latencies (upstream model); step = vLLM-like steps with chunked prefill, where prefills and decodes on one engine slow each other (used by xPyD tuning).',
  }),
  maxNumBatchedTokens: opt.int({
    default: 8192,
    min: 1,
    description:
      'Step engine: tokens per step (vLLM chunked prefill budget); decoding sequences take one each, waiting prefills the rest.',
  }),
  latencyMsTruncation: opt.bool({
    default: false,
    description:
      'pd-router: truncate sampled latencies to whole milliseconds exactly as upstream does (sub-ms totals become 0).',
  }),
  maxNumSeqs: opt.int({ default: 5, min: 1, description: 'Requests processed at once; the rest wait.' }),
  maxWaitingQueueLength: opt.int({
    default: 1000,
    min: 0,
    description: 'Waiting requests beyond which new ones get 429.',
  }),
  maxModelLen: opt.int({ default: 1024, min: 1, description: 'Context window: prompt tokens plus max output tokens.' }),
  enableKvcache: opt.bool({
    default: true,
    description: 'Simulate the KV cache with prefix reuse (upstream default is false).',
  }),
  kvCacheSize: opt.int({ default: 1024, min: 1, description: 'KV cache size in blocks.' }),
  blockSize: opt.int({ default: 16, min: 1, max: 1024, description: 'KV cache block size in tokens.' }),
  kvEventsConfig: opt.string({
    default: '',
    description:
      'vLLM\'s KV-event publisher as JSON, e.g. {"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","topic":"kv@<pod-ip>@<model>"}: BlockStored/BlockRemoved/AllBlocksCleared from the simulated cache over ZMQ PUB (bound when the endpoint has * or ::, else connected; rank r on port+r).',
  }),
  zmqEndpoint: opt.string({
    default: '',
    description:
      'ZMQ address KV events are published to (connected to; topic kv@<pod-ip>@<model>), with --enable-kvcache. Upstream defaults to tcp://127.0.0.1:5557 and always publishes; pd-router publishes only when it is set.',
  }),
  hashSeed: opt.string({
    default: '',
    env: ['PYTHONHASHSEED'],
    description: "Seed of the block hashes in KV events (llm-d-kv-cache's block keys).",
  }),
  eventBatchSize: opt.int({
    default: 16,
    min: 1,
    description:
      'KV events per message at most (--zmq-endpoint; --kv-events-config batches per event-loop turn the same way).',
  }),
  useVllmMapEventFormat: opt.bool({
    default: false,
    description: 'KV events as msgpack maps with a "type" tag (vLLM #42892) instead of arrays.',
  }),
  globalCacheHitThreshold: opt.number({
    default: 0,
    min: 0,
    max: 1,
    description:
      "Requests whose prefix-cache hit rate is below this answer at once with finish_reason cache_threshold (0 = off); a request's cache_hit_threshold overrides it.",
  }),
  loraModules: opt.list({
    default: [],
    variadic: true,
    description:
      'LoRA adapters served besides the base model, as vLLM: JSON {"name": ..., "path": ...} or name=path; requests naming one run as that adapter and are reported in vllm:lora_requests_info.',
  }),
  maxLoras: opt.int({
    default: 1,
    min: 1,
    description: 'Reported as max_lora in vllm:lora_requests_info (adapters are not limited to that many slots).',
  }),
  dataParallelSize: opt.int({
    default: 1,
    min: 1,
    max: 8,
    description: 'Data-parallel ranks; rank r is an independent engine on port+r.',
  }),
  startupDuration: opt.duration({ default: 0, description: '/health/ready answers 503 for this long after start.' }),
  enableRequestIdHeaders: opt.bool({
    default: false,
    description: 'Echo X-Request-Id and use it as the response id (upstream flag).',
  }),
  forceDummyTokenizer: opt.bool({
    default: false,
    description:
      'Accepted for llm-d-inference-sim manifests; pd-router always uses the simulated tokenizer (never asks Hugging Face).',
  }),
  engineId: opt.string({
    default: '',
    description: 'pd-router: engine id returned in kv_transfer_params.remote_engine_id; empty generates one per rank.',
  }),
  advertiseHost: opt.string({
    default: '',
    env: ['POD_IP'],
    description:
      'pd-router: host returned in kv_transfer_params.remote_host; empty uses the listen host (127.0.0.1 for 0.0.0.0).',
  }),
  mooncakeBootstrapPort: opt.int({
    default: -1,
    min: -1,
    max: 65535,
    description:
      "pd-router: serve a Mooncake bootstrap server (GET /query: each rank's engine_id, as vLLM's MooncakeConnector) on this port (0: any free port; -1: off).",
  }),
  recordRequests: opt.int({
    default: 100,
    min: 0,
    description: 'pd-router: recent requests kept for GET /admin/requests (bodies over 64 KiB are truncated).',
  }),
  maxRequestBodySize: opt.bytes({
    default: 16 * 1024 * 1024,
    min: 1024,
    description: 'Largest accepted request body; larger gets 413.',
  }),
  ...shutdownOptions,
  ...loggingOptions,
};

/** The simulator's options, parsed. */
export type SimConfig = OptionValues<typeof simOptions>;

/** --kv-events-config must be a JSON object with vLLM's field types. */
function kvEventsConfigProblem(text: string): string | undefined {
  if (!text) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return `--kv-events-config is not JSON: ${(e as Error).message}`;
  }
  if (!isObject(value)) return '--kv-events-config must be a JSON object';
  const c = value;
  for (const [k, t] of [
    ['enable_kv_cache_events', 'boolean'],
    ['publisher', 'string'],
    ['endpoint', 'string'],
    ['topic', 'string'],
    ['hwm', 'number'],
    ['max_queue_size', 'number'],
    ['buffer_steps', 'number'],
  ] as const) {
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== t) return `--kv-events-config: ${k} must be a ${t}`;
  }
  if (c.publisher !== undefined && c.publisher !== 'zmq' && c.publisher !== 'null')
    return `--kv-events-config: publisher ${JSON.stringify(c.publisher)} is not supported (zmq or null)`;
  if (typeof c.endpoint === 'string' && !/^(tcp|ipc|inproc):\/\//.test(c.endpoint))
    return '--kv-events-config: endpoint must be tcp://, ipc:// or inproc://';
  return undefined;
}

function loraModulesProblem(entries: readonly string[]): string | undefined {
  try {
    parseLoraModules(entries);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

function stdDevRule(values: SimConfig, mean: keyof SimConfig, std: keyof SimConfig, label: string): string | undefined {
  const m = values[mean] as number;
  const s = values[std] as number;
  return s > 0.3 * m ? `${label} standard deviation (${s}ms) cannot be more than 30% of ${label} (${m}ms)` : undefined;
}

/** `pd-router sim`: the command, its options and its start function. */
export const simCommand: CommandDefinition<typeof simOptions> = {
  name: 'sim',
  summary:
    'GPU-free vLLM simulator, behaviour-compatible with llm-d-inference-sim, including the P/D kv_transfer_params handshake.',
  description: `Serves /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages, /inference/v1/generate, /v1/models,
/health, /health/ready, /metrics (vLLM metric names) and GET|POST /admin/config. A request with
kv_transfer_params.do_remote_decode=true is a prefill (finish_reason "remote_decode", kv_transfer_params returned);
one with do_remote_prefill=true replaces its prefill time with the simulated KV-transfer time.
Fault injection: header X-Return-Error: <status>; POST /admin/config {"hang":true} or {"drop-connections":true}.`,
  options: simOptions,
  envPrefix: 'PD_SIM',
  // `pd-router sim <model>` as `vllm serve <model>`, so manifests put the model at the same argument position.
  positional: 'model',
  compat: simUpstream,
  validate: (optionValues) =>
    [
      kvEventsConfigProblem(optionValues.kvEventsConfig),
      stdDevRule(optionValues, 'timeToFirstToken', 'timeToFirstTokenStdDev', 'time to first token'),
      stdDevRule(optionValues, 'interTokenLatency', 'interTokenLatencyStdDev', 'inter token latency'),
      stdDevRule(optionValues, 'kvCacheTransferLatency', 'kvCacheTransferLatencyStdDev', 'kv cache transfer latency'),
      optionValues.port !== 0 && optionValues.port + optionValues.dataParallelSize - 1 > 65535
        ? `--port ${optionValues.port} + --data-parallel-size ${optionValues.dataParallelSize} exceeds 65535`
        : undefined,
      loraModulesProblem(optionValues.loraModules),
    ].filter((message): message is string => message !== undefined),
};

/** Defaults with overrides: how tests and the dev stack configure simulators in-process. */
export function simConfig(overrides: Partial<SimConfig> = {}): SimConfig {
  return { ...defaultValues(simOptions), ...overrides };
}
