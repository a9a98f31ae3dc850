/**
 * The llm-d metric family: llm-d-router's canonical `llm_d_epp_*` names (ebab687: `pkg/epp/metrics/
 * llm_d_router_metrics.go`, `grpc_stream_metrics.go`, the approximate-prefix and disagg plugins' `metrics.go`), with
 * their help, types, label names and buckets.
 *
 * Not registered (pd-router has no such component or measurement): flow control, predicted latency, multimodal
 * encoder cache, program-aware fairness, plugin data-scope violations, embedded KV-cache metrics,
 * `request_streaming_itl_seconds` and `response_processing_duration_seconds`.
 */
import type { Registry } from 'prom-client';
import { BoundCounter, BoundGauge, BoundHistogram } from '../../common/index.js';
import {
  EXTPROC_STREAM,
  GENERAL_LATENCY,
  HIT_BYTES,
  HIT_RATIO,
  LLMD_TPOT,
  LLMD_TTFT,
  NTPOT,
  OUTPUT_TOKENS,
  PROMPT_TOKENS,
  REQUEST_BYTES,
  REQUEST_PROCESSING,
  RESPONSE_BYTES,
  SCHEDULER,
} from './buckets.js';

export type RequestLabel = 'model_name' | 'target_model_name' | 'fairness_id' | 'priority';
const REQUEST: RequestLabel[] = ['model_name', 'target_model_name', 'fairness_id', 'priority'];
type PluginLabel = 'plugin_name' | 'plugin_type';
const PLUGIN: PluginLabel[] = ['plugin_name', 'plugin_type'];

export class LlmdFamily {
  readonly requestTotal: BoundCounter<RequestLabel>;
  readonly requestErrorTotal: BoundCounter<RequestLabel | 'error_code'>;
  readonly requestDuration: BoundHistogram<RequestLabel>;
  readonly requestSize: BoundHistogram<RequestLabel>;
  readonly responseSize: BoundHistogram<RequestLabel>;
  readonly inputTokens: BoundHistogram<RequestLabel>;
  readonly outputTokens: BoundHistogram<RequestLabel>;
  readonly cachedTokens: BoundHistogram<RequestLabel>;
  readonly requestRunning: BoundGauge<RequestLabel>;
  readonly ntpot: BoundHistogram<RequestLabel>;
  readonly ttft: BoundHistogram<RequestLabel | 'streaming'>;
  readonly tpot: BoundHistogram<RequestLabel>;
  readonly schedulerE2e: BoundHistogram<never>;
  readonly schedulerAttempts: BoundCounter<'status' | 'target_model_name' | 'endpoint_name' | 'namespace' | 'port'>;
  readonly pluginDuration: BoundHistogram<'extension_point' | 'plugin_type' | 'plugin_name'>;
  readonly requestProcessing: BoundHistogram<never>;
  readonly info: BoundGauge<'commit' | 'build_ref'>;
  readonly pollErrors: BoundCounter<'source_type'>;
  readonly extractErrors: BoundCounter<'source_type' | 'extractor_type'>;
  readonly prefixIndexerSize: BoundGauge<PluginLabel>;
  readonly prefixIndexerHitRatio: BoundHistogram<PluginLabel>;
  readonly prefixIndexerHitBytes: BoundHistogram<PluginLabel>;
  readonly disaggDecision: BoundCounter<PluginLabel | 'model_name' | 'decision_type'>;
  readonly pdDecision: BoundCounter<PluginLabel | 'model_name' | 'decision_type'>;
  readonly streamsInflight: BoundGauge<never>;
  readonly streamDuration: BoundHistogram<never>;
  readonly streamsTotal: BoundCounter<'code'>;
  readonly modelRewriteDecisions: BoundCounter<'model_rewrite_name' | 'model_name' | 'target_model'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const P = 'llm_d_epp_';
    const help = (text: string) => `[ALPHA] ${text}`;
    const hist = <L extends string>(name: string, text: string, labelNames: L[], buckets: number[]) => new BoundHistogram<L>({ name: P + name, help: help(text), labelNames, buckets, registers });
    const counter = <L extends string>(name: string, text: string, labelNames: L[]) => new BoundCounter<L>({ name: P + name, help: help(text), labelNames, registers });

    this.requestTotal = counter('request_total', 'Total number of processed requests.', REQUEST);
    this.requestErrorTotal = counter('request_error_total', 'Total number of request errors.', [...REQUEST, 'error_code']);
    this.requestDuration = hist('request_duration_seconds', 'End-to-end request latency distribution in seconds.', REQUEST, GENERAL_LATENCY);
    this.requestSize = hist('request_size_bytes', 'Incoming request body size distribution in bytes.', REQUEST, REQUEST_BYTES);
    this.responseSize = hist('response_size_bytes', 'Outgoing response body size distribution in bytes.', REQUEST, RESPONSE_BYTES);
    this.inputTokens = hist('request_input_tokens', 'Input token count distribution per request.', REQUEST, PROMPT_TOKENS);
    this.outputTokens = hist('request_output_tokens', 'Output token count distribution per request.', REQUEST, OUTPUT_TOKENS);
    this.cachedTokens = hist('request_cached_tokens', 'Distribution of prompt tokens read from cache per request, as reported by the model server in the response.', REQUEST, PROMPT_TOKENS);
    this.requestRunning = new BoundGauge({ name: `${P}request_running`, help: help('Current number of active running requests.'), labelNames: REQUEST, registers });
    this.ntpot = hist('request_ntpot_seconds', 'Normalized time per output token in seconds (end-to-end latency divided by output token count).', REQUEST, NTPOT);
    this.ttft = hist(
      'request_ttft_seconds',
      'Time to first token in seconds, measured from request received to first response byte. For non-streaming requests, this equals total request duration.',
      [...REQUEST, 'streaming'],
      LLMD_TTFT,
    );
    this.tpot = hist('request_streaming_tpot_seconds', 'Average time per output token in seconds for streaming requests, computed as (e2e - TTFT) / (output_tokens - 1).', REQUEST, LLMD_TPOT);

    this.schedulerE2e = hist('scheduler_e2e_duration_seconds', 'End-to-end scheduling latency distribution in seconds.', [], SCHEDULER);
    this.schedulerAttempts = counter('scheduler_attempts_total', 'Total number of scheduling attempts.', ['status', 'target_model_name', 'endpoint_name', 'namespace', 'port']);
    this.pluginDuration = hist('plugin_duration_seconds', 'Plugin processing latency distribution in seconds for each extension point, plugin type and plugin name.', ['extension_point', 'plugin_type', 'plugin_name'], SCHEDULER);
    this.requestProcessing = hist(
      'request_processing_duration_seconds',
      'EPP request processing latency distribution in seconds, from request receipt until the request body has been handled, including admission control.',
      [],
      REQUEST_PROCESSING,
    );
    this.info = new BoundGauge({ name: `${P}info`, help: help('General information of the current build of Inference Extension.'), labelNames: ['commit', 'build_ref'], registers });
    this.pollErrors = counter('datalayer_poll_errors_total', 'Data-source poll errors per source type.', ['source_type']);
    this.extractErrors = counter('datalayer_extract_errors_total', 'Extract errors per source/extractor type.', ['source_type', 'extractor_type']);

    this.prefixIndexerSize = new BoundGauge({ name: `${P}prefix_indexer_size`, help: help('Size of the prefix indexer.'), labelNames: PLUGIN, registers });
    this.prefixIndexerHitRatio = hist('prefix_indexer_hit_ratio', 'Ratio of prefix length matched to total prefix length in the cache lookup.', PLUGIN, HIT_RATIO);
    this.prefixIndexerHitBytes = hist('prefix_indexer_hit_bytes', 'Length of the prefix match in number of bytes in the cache lookup.', PLUGIN, HIT_BYTES);
    this.disaggDecision = counter('disagg_decision_total', 'Total number of disaggregation routing decisions made', [...PLUGIN, 'model_name', 'decision_type']);
    this.pdDecision = counter('pd_decision_total', 'Total number of P/D disaggregation decisions made', [...PLUGIN, 'model_name', 'decision_type']);

    // Upstream registers these behind --enable-grpc-stream-metrics; pd-router always has them in this family.
    this.streamsInflight = new BoundGauge({ name: `${P}extproc_streams_inflight`, help: help('Number of ext_proc gRPC streams currently open.'), labelNames: [], registers });
    this.streamDuration = new BoundHistogram({ name: `${P}extproc_stream_duration_seconds`, help: help('Duration an ext_proc gRPC stream stays open, in seconds.'), labelNames: [], buckets: EXTPROC_STREAM, registers });
    this.streamsTotal = counter('extproc_streams_total', 'Total ext_proc gRPC streams completed, by gRPC status code.', ['code']);
    this.modelRewriteDecisions = counter('model_rewrite_decisions_total', 'Total number of inference model rewrite decisions.', ['model_rewrite_name', 'model_name', 'target_model']);
  }
}
