/**
 * The P/D decider contract: given a request and the endpoint the decode profile picked, decide whether the prompt's
 * uncached part is worth a remote prefill. The EPP's `disagg-profile-handler` consults the prefill decider at most once
 * per request, always with the decode profile's first pick (llm-d's decode-first order); the encode decider has the
 * same shape.
 *
 * Deciders are pure functions of their input: everything they may look at (request facts, the decode pick with its
 * prefix-cache match, the eligible prefill endpoints and their scraped metrics, a clock) is in `DecisionInput`, so a
 * decider is testable without an EPP and a cost model can be added without touching the handler.
 */
import type { z } from 'zod';
import type { Prompt } from '../common/openai/index.js';

/** `_sum` and `_count` of a Prometheus histogram as last scraped (cumulative since the server started). */
export interface HistogramSummary {
  sum: number;
  count: number;
}

/**
 * An endpoint's model-server metrics as last scraped (vLLM names in brackets). Values keep their last successful
 * scrape when a scrape fails; `stale` says whether they can still be trusted.
 */
export interface EndpointMetrics {
  /** vllm:num_requests_waiting */
  waitingQueueSize: number;
  /** vllm:num_requests_running */
  runningRequests: number;
  /** vllm:kv_cache_usage_perc, 0..1 */
  kvCacheUsage: number;
  /** vllm:cache_config_info{block_size}; 0 when unknown */
  cacheBlockSize: number;
  /** vllm:cache_config_info{num_gpu_blocks}; 0 when unknown */
  cacheNumBlocks: number;
  /** When a scrape last updated any field (ms since epoch); 0 = never. */
  updatedAt: number;
  /** The last scrape failed, or the values are older than the staleness threshold. */
  stale: boolean;
  /** vllm:request_prefill_time_seconds */
  prefillTime?: HistogramSummary;
  /** vllm:time_to_first_token_seconds */
  timeToFirstToken?: HistogramSummary;
  /** vllm:request_prompt_tokens */
  promptTokens?: HistogramSummary;
  /** vllm:nixl_xfer_time_seconds */
  kvTransferTime?: HistogramSummary;
  /** vllm:request_queue_time_seconds */
  queueTime?: HistogramSummary;
  /** vllm:prefix_cache_hits_total (tokens) */
  prefixCacheHits?: number;
  /** vllm:prefix_cache_queries_total (tokens) */
  prefixCacheQueries?: number;
  /** vllm:lora_requests_info, its newest series: adapters running and waiting, and max_lora (the engine's loraSpec). */
  lora?: LoraInfo;
  /** The engine's customMetrics (core-metrics-extractor), by attributeKey; a metric missing from a scrape keeps its value. */
  custom?: Record<string, number>;
  /** The models the server lists at /v1/models (models-data-source with models-data-extractor): id and, for a LoRA adapter, its parent. */
  models?: ReadonlyArray<{ id: string; parent?: string }>;
}

export interface LoraInfo {
  running: readonly string[];
  waiting: readonly string[];
  maxLoras: number;
}

/** What a decider sees of an endpoint. */
export interface DeciderEndpoint {
  /** `<namespace>/<name>` */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** `ip:port`, IPv6 bracketed: the value the EPP writes into routing headers. */
  readonly hostPort: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly metrics: Readonly<EndpointMetrics>;
}

/** The approximate prefix-cache match of the request on one endpoint (`approx-prefix-cache-producer`). */
export interface PrefixMatch {
  /** Blocks of the request's hash chain the endpoint is believed to hold (unweighted count). */
  matchedBlocks: number;
  /** Blocks in the request's hash chain (the partial last block counts). */
  totalBlocks: number;
  /** Tokens per block (after auto-tune and the 64-token floor). */
  blockSizeTokens: number;
}

export interface DecisionRequest {
  readonly requestId: string;
  /** Model named in the request body. */
  readonly model: string;
  /** Model after any rewrite (the one the model server sees). */
  readonly targetModel: string;
  /** Prompt tokens as llm-d's estimate tokenizer counts them: ceil(utf8 bytes / 4), token-id prompts as given. */
  readonly tokenCount: number;
  readonly prompts: readonly Prompt[];
  /** Request headers, lower-cased keys. */
  readonly headers: Readonly<Record<string, string>>;
  /** The parsed JSON body (undefined for the passthrough parser). */
  readonly body?: Readonly<Record<string, unknown>>;
}

export interface DecisionInput {
  readonly request: DecisionRequest;
  /** The decode profile's first pick and its prefix match; undefined when decode picked nothing (or prefill-first). */
  readonly decode: { readonly endpoint: DeciderEndpoint; readonly prefix?: PrefixMatch } | undefined;
  /** Endpoints that pass the prefill profile's filters (computed lazily on first access). */
  readonly prefillCandidates: readonly DeciderEndpoint[];
  /** The request's approximate prefix-cache match on any endpoint (by id), when the EPP keeps a prefix index. */
  prefixMatch?(endpointId: string): PrefixMatch | undefined;
  /** Milliseconds since the epoch; injectable for tests. */
  now(): number;
}

/**
 * Why a decision was taken. The handler adds `no-prefill-endpoint` (prefill chosen, nothing eligible), `no-decider`,
 * `no-prefill-profile` and `prefill-first`; deciders may add their own reasons.
 */
export type DecisionReason =
  | 'disabled'
  | 'no-decode-endpoint'
  | 'below-prompt-tokens'
  | 'below-threshold'
  | 'cached'
  | 'no-prefix-info'
  | 'always'
  | 'above-threshold'
  | 'multimodal'
  | 'no-multimodal'
  | (string & {});

export interface Decision {
  /** True: run the prefill (or encode) stage on another endpoint. */
  disaggregate: boolean;
  reason: DecisionReason;
  /** Numbers behind the decision, for debug logs and the opt-in debug header. */
  detail?: Record<string, unknown>;
}

export interface PdDecider {
  readonly type: string;
  readonly name: string;
  decide(input: DecisionInput): Decision;
}

/** How a decider is built from its config parameters: a zod schema checked at load time, then a constructor. */
export interface DeciderDefinition<P = any, D extends PdDecider = PdDecider> {
  /** Schema of the `parameters` block; `{}` when the plugin has none. Unknown keys are reported by the loader. */
  readonly params: z.ZodType<P>;
  /** One-line description for docs and errors. */
  readonly description: string;
  create(type: string, name: string, params: P): D;
}
