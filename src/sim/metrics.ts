/**
 * vLLM's Prometheus metrics, with the names, label sets and bucket boundaries llm-d-inference-sim uses, so that the
 * EPP's scrapers, dashboards and alerts read this simulator exactly as they read vLLM. Every series carries
 * `model_name` = the first served model name.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const REQUEST_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
/** Fine buckets for KV transfer, which takes milliseconds. */
const TRANSFER_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** vLLM's 1-2-5 token-count buckets up to max-model-len. */
export function tokenBuckets(maxModelLen: number): number[] {
  const out: number[] = [];
  for (let scale = 1; scale <= maxModelLen; scale *= 10) {
    for (const m of [1, 2, 5]) if (m * scale <= maxModelLen) out.push(m * scale);
  }
  return out;
}

export interface SimMetricsSettings {
  model: string;
  maxModelLen: number;
  blockSize: number;
  kvCacheSize: number;
  kvCacheEnabled: boolean;
}

export class SimMetrics {
  readonly running: Gauge<'model_name'>;
  readonly waiting: Gauge<'model_name'>;
  readonly kvUsage: Gauge<'model_name'>;
  readonly success: Counter<'model_name' | 'finish_reason'>;
  readonly promptTokens: Counter<'model_name'>;
  readonly generationTokens: Counter<'model_name'>;
  readonly prefixQueries: Counter<'model_name'>;
  readonly prefixHits: Counter<'model_name'>;
  readonly externalPrefixQueries: Counter<'model_name'>;
  readonly externalPrefixHits: Counter<'model_name'>;
  readonly ttft: Histogram<'model_name'>;
  readonly itl: Histogram<'model_name'>;
  readonly tpot: Histogram<'model_name'>;
  readonly requestTpot: Histogram<'model_name'>;
  readonly e2e: Histogram<'model_name'>;
  readonly queueTime: Histogram<'model_name'>;
  readonly inferenceTime: Histogram<'model_name'>;
  readonly prefillTime: Histogram<'model_name'>;
  readonly decodeTime: Histogram<'model_name'>;
  readonly kvTransferTime: Histogram<'model_name'>;
  readonly requestPromptTokens: Histogram<'model_name'>;
  readonly requestGenerationTokens: Histogram<'model_name'>;
  readonly maxNumGenerationTokens: Histogram<'model_name'>;
  readonly requestParamsMaxTokens: Histogram<'model_name'>;
  readonly labels: { model_name: string };

  constructor(registry: Registry, settings: SimMetricsSettings) {
    const registers = [registry];
    const labelNames = ['model_name'] as const;
    this.labels = { model_name: settings.model };
    const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames, registers });
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers });
    const hist = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, labelNames, buckets, registers });

    this.running = gauge('vllm:num_requests_running', 'Number of requests in model execution batches.');
    this.waiting = gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.');
    this.kvUsage = gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.');
    this.success = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: ['model_name', 'finish_reason'],
      registers,
    });
    this.promptTokens = counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.');
    this.generationTokens = counter('vllm:generation_tokens_total', 'Number of generation tokens processed.');
    this.prefixQueries = counter('vllm:prefix_cache_queries_total', 'Prefix cache queries, in terms of number of queried tokens.');
    this.prefixHits = counter('vllm:prefix_cache_hits_total', 'Prefix cache hits, in terms of number of cached tokens.');
    this.externalPrefixQueries = counter(
      'vllm:external_prefix_cache_queries_total',
      'External (KV connector) prefix cache queries, in tokens: prompt tokens of do_remote_prefill requests.',
    );
    this.externalPrefixHits = counter(
      'vllm:external_prefix_cache_hits_total',
      'External (KV connector) prefix cache hits, in tokens: prompt tokens pulled from a remote prefiller.',
    );
    this.ttft = hist('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
    this.itl = hist('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', TPOT_BUCKETS);
    this.tpot = hist('vllm:time_per_output_token_seconds', 'Histogram of time per output token in seconds (deprecated name of ITL).', TPOT_BUCKETS);
    this.requestTpot = hist('vllm:request_time_per_output_token_seconds', 'Histogram of time_per_output_token_seconds per request.', TPOT_BUCKETS);
    this.e2e = hist('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', REQUEST_BUCKETS);
    this.queueTime = hist('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', REQUEST_BUCKETS);
    this.inferenceTime = hist('vllm:request_inference_time_seconds', 'Histogram of time spent in RUNNING phase for request.', REQUEST_BUCKETS);
    this.prefillTime = hist('vllm:request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', REQUEST_BUCKETS);
    this.decodeTime = hist('vllm:request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', REQUEST_BUCKETS);
    this.kvTransferTime = hist(
      'vllm:nixl_xfer_time_seconds',
      'Histogram of KV-transfer time of do_remote_prefill requests in seconds (simulated NIXL pull).',
      TRANSFER_BUCKETS,
    );
    const tb = tokenBuckets(settings.maxModelLen);
    this.requestPromptTokens = hist('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', tb);
    this.requestGenerationTokens = hist('vllm:request_generation_tokens', 'Number of generation tokens processed.', tb);
    this.maxNumGenerationTokens = hist('vllm:max_num_generation_tokens', 'Histogram of maximum number of requested generation tokens.', tb);
    this.requestParamsMaxTokens = hist('vllm:request_params_max_tokens', 'Histogram of the max_tokens request parameter.', tb);

    const cacheInfo = new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Information of the LLMEngine CacheConfig.',
      labelNames: ['block_size', 'cache_dtype', 'num_cpu_blocks', 'num_gpu_blocks'],
      registers,
    });
    cacheInfo.set(
      {
        block_size: String(settings.kvCacheEnabled ? settings.blockSize : 0),
        cache_dtype: 'auto',
        num_cpu_blocks: '0',
        num_gpu_blocks: String(settings.kvCacheEnabled ? settings.kvCacheSize : 0),
      },
      1,
    );
    this.running.set(this.labels, 0);
    this.waiting.set(this.labels, 0);
    this.kvUsage.set(this.labels, 0);
  }
}
