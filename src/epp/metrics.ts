/**
 * The EPP's Prometheus metrics, with llm-d's canonical `llm_d_epp_` names and label sets (docs/metrics.md,
 * `pkg/epp/metrics`, `disagg/metrics.go`). One instance per EPP, on its own registry.
 *
 * Label values that come from clients (model names, fairness ids) go through a cardinality guard: the first
 * `MAX_LABEL_VALUES` distinct values are kept, later ones are reported as `other`, so a client cannot grow the
 * series set without bound.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createRegistry } from '../common/index.js';

const P = 'llm_d_epp_';
const MAX_LABEL_VALUES = 100;

/** Upstream's scheduler/plugin latency buckets (100 µs to 100 ms). */
const SCHEDULER_BUCKETS = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];
const LATENCY_BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600];
const TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144, 524288, 1048576];
const SIZE_BUCKETS = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864];
const TPOT_BUCKETS = [0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2, 3, 4.5, 6, 12, 18, 24, 30, 36, 48, 60, 120, 180, 240, 300];

/** Keeps at most `max` distinct values of a label; the rest become `other`. */
export class LabelGuard {
  private readonly seen = new Set<string>();
  constructor(private readonly max = MAX_LABEL_VALUES) {}
  value(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(v);
    return v;
  }
}

export interface RequestLabels {
  model: string;
  targetModel: string;
  fairnessId: string;
  priority: number;
}

export interface PoolSnapshot {
  /** Fresh endpoints only (metrics younger than the staleness threshold). */
  fresh: Array<{ hostPort: string; waiting: number; running: number; kv: number }>;
}

export class EppMetrics {
  readonly registry: Registry;
  private readonly models = new LabelGuard();
  private readonly fairness = new LabelGuard();

  readonly requestTotal: Counter;
  readonly requestErrorTotal: Counter;
  readonly requestRunning: Gauge;
  readonly requestDuration: Histogram;
  readonly requestSize: Histogram;
  readonly responseSize: Histogram;
  readonly inputTokens: Histogram;
  readonly outputTokens: Histogram;
  readonly cachedTokens: Histogram;
  readonly ttft: Histogram;
  readonly tpot: Histogram;
  readonly ntpot: Histogram;
  readonly schedulerE2e: Histogram;
  readonly schedulerAttempts: Counter;
  readonly pluginDuration: Histogram;
  readonly requestProcessing: Histogram;
  readonly disaggDecision: Counter;
  readonly disaggDecisionLegacy: Counter;
  readonly disaggDecisionReason: Counter;
  readonly pdDecision: Counter;
  readonly pdDecisionLegacy: Counter;
  readonly prefixIndexerSize: Gauge;
  readonly prefixIndexerHitRatio: Histogram;
  readonly prefixIndexerHitBytes: Histogram;
  readonly pollErrors: Counter;
  readonly extractErrors: Counter;
  readonly streamsInflight: Gauge;
  readonly streamsTotal: Counter;
  readonly streamDuration: Histogram;
  readonly requestBufferBytes: Gauge;
  readonly connectionsDrained: Counter;

  constructor(registry: Registry = createRegistry()) {
    this.registry = registry;
    const registers = [registry];
    const req = ['model_name', 'target_model_name'];
    this.requestTotal = new Counter({ name: `${P}request_total`, help: 'Requests, by model, target model, fairness id and priority.', labelNames: [...req, 'fairness_id', 'priority'], registers });
    this.requestErrorTotal = new Counter({ name: `${P}request_error_total`, help: 'Requests that failed, by error code.', labelNames: [...req, 'error_code'], registers });
    this.requestRunning = new Gauge({ name: `${P}request_running`, help: 'Requests between scheduling and the end of their response.', labelNames: ['model_name'], registers });
    this.requestDuration = new Histogram({ name: `${P}request_duration_seconds`, help: 'Request latency from the body EoS to the response EoS.', labelNames: req, buckets: LATENCY_BUCKETS, registers });
    this.requestSize = new Histogram({ name: `${P}request_size_bytes`, help: 'Request body sizes.', labelNames: req, buckets: SIZE_BUCKETS, registers });
    this.responseSize = new Histogram({ name: `${P}response_size_bytes`, help: 'Response body sizes.', labelNames: req, buckets: SIZE_BUCKETS, registers });
    this.inputTokens = new Histogram({ name: `${P}request_input_tokens`, help: 'Prompt tokens reported in the response usage.', labelNames: req, buckets: TOKEN_BUCKETS, registers });
    this.outputTokens = new Histogram({ name: `${P}request_output_tokens`, help: 'Completion tokens reported in the response usage.', labelNames: req, buckets: TOKEN_BUCKETS, registers });
    this.cachedTokens = new Histogram({ name: `${P}request_cached_tokens`, help: 'Cached prompt tokens reported in the response usage.', labelNames: req, buckets: TOKEN_BUCKETS, registers });
    this.ttft = new Histogram({ name: `${P}request_ttft_seconds`, help: 'Time from the request body EoS to the first response body chunk.', labelNames: [...req, 'streaming'], buckets: LATENCY_BUCKETS, registers });
    this.tpot = new Histogram({ name: `${P}request_streaming_tpot_seconds`, help: 'Streaming responses: (last chunk - first chunk) / (output tokens - 1).', labelNames: req, buckets: TPOT_BUCKETS, registers });
    this.ntpot = new Histogram({ name: `${P}request_ntpot_seconds`, help: 'Request latency divided by output tokens.', labelNames: req, buckets: TPOT_BUCKETS, registers });
    this.schedulerE2e = new Histogram({ name: `${P}scheduler_e2e_duration_seconds`, help: 'Scheduling latency, producers to PreRequest.', buckets: SCHEDULER_BUCKETS, registers });
    this.schedulerAttempts = new Counter({ name: `${P}scheduler_attempts_total`, help: 'Scheduling attempts.', labelNames: ['status', 'target_model_name', 'endpoint_name', 'namespace', 'port'], registers });
    this.pluginDuration = new Histogram({ name: `${P}plugin_duration_seconds`, help: 'Plugin latency per extension point.', labelNames: ['extension_point', 'plugin_type', 'plugin_name'], buckets: SCHEDULER_BUCKETS, registers });
    this.requestProcessing = new Histogram({ name: `${P}request_processing_duration_seconds`, help: 'EPP time from the request body EoS to the reply.', buckets: SCHEDULER_BUCKETS, registers });
    this.disaggDecision = new Counter({ name: `${P}disagg_decision_total`, help: 'Disaggregation decisions.', labelNames: ['plugin_name', 'plugin_type', 'model_name', 'decision_type'], registers });
    this.disaggDecisionLegacy = new Counter({ name: 'llm_d_inference_scheduler_disagg_decision_total', help: 'Disaggregation decisions (legacy name).', labelNames: ['model_name', 'decision_type'], registers });
    this.disaggDecisionReason = new Counter({ name: `${P}disagg_decision_reason_total`, help: 'Disaggregation decisions by reason (pd-router).', labelNames: ['decision_type', 'reason'], registers });
    this.pdDecision = new Counter({ name: `${P}pd_decision_total`, help: 'P/D decisions of the deprecated pd-profile-handler.', labelNames: ['model_name', 'decision_type'], registers });
    this.pdDecisionLegacy = new Counter({ name: 'llm_d_inference_scheduler_pd_decision_total', help: 'P/D decisions of the deprecated pd-profile-handler (legacy name).', labelNames: ['model_name', 'decision_type'], registers });
    this.prefixIndexerSize = new Gauge({ name: `${P}prefix_indexer_size`, help: 'Entries (block hash, endpoint) in the approximate prefix index.', labelNames: ['plugin_name', 'plugin_type'], registers });
    this.prefixIndexerHitRatio = new Histogram({ name: `${P}prefix_indexer_hit_ratio`, help: 'Best matched blocks / total blocks per request.', labelNames: ['plugin_name', 'plugin_type'], buckets: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1], registers });
    this.prefixIndexerHitBytes = new Histogram({ name: `${P}prefix_indexer_hit_bytes`, help: 'Best match in bytes (blocks x block size x 4) per request.', labelNames: ['plugin_name', 'plugin_type'], buckets: SIZE_BUCKETS, registers });
    this.pollErrors = new Counter({ name: `${P}datalayer_poll_errors_total`, help: 'Data-source poll (scrape) errors.', labelNames: ['source_type'], registers });
    this.extractErrors = new Counter({ name: `${P}datalayer_extract_errors_total`, help: 'Metrics missing from a scrape.', labelNames: ['source_type', 'extractor_type'], registers });
    this.streamsInflight = new Gauge({ name: `${P}extproc_streams_inflight`, help: 'Open ext_proc streams.', registers });
    this.streamsTotal = new Counter({ name: `${P}extproc_streams_total`, help: 'ext_proc streams by final gRPC code.', labelNames: ['code'], registers });
    this.streamDuration = new Histogram({ name: `${P}extproc_stream_duration_seconds`, help: 'ext_proc stream lifetimes.', buckets: LATENCY_BUCKETS, registers });
    this.requestBufferBytes = new Gauge({ name: `${P}extproc_request_buffer_bytes`, help: 'Request body bytes held by all streams (bounded by --request-buffer-budget).', registers });
    this.connectionsDrained = new Counter({ name: `${P}extproc_connections_drained_total`, help: 'ext_proc connections closed gracefully (GOAWAY NO_ERROR), by reason.', labelNames: ['reason'], registers });
    new Gauge({ name: `${P}info`, help: 'Build information.', labelNames: ['commit', 'build_ref'], registers }).set({ commit: process.env.PD_ROUTER_COMMIT ?? 'unknown', build_ref: 'pd-router' }, 1);
  }

  /** Guarded label values for a request. */
  requestLabels(l: Pick<RequestLabels, 'model' | 'targetModel'>): { model_name: string; target_model_name: string } {
    return { model_name: this.models.value(l.model), target_model_name: this.models.value(l.targetModel) };
  }

  countRequest(l: RequestLabels): void {
    this.requestTotal.inc({ ...this.requestLabels(l), fairness_id: this.fairness.value(l.fairnessId), priority: String(l.priority) });
  }

  countError(l: Pick<RequestLabels, 'model' | 'targetModel'>, errorCode: string): void {
    this.requestErrorTotal.inc({ ...this.requestLabels(l), error_code: errorCode });
  }

  recordDecision(plugin: { name: string; type: string }, model: string, decisionType: string, reason: string): void {
    const model_name = this.models.value(model || 'unknown');
    this.disaggDecision.inc({ plugin_name: plugin.name, plugin_type: plugin.type, model_name, decision_type: decisionType });
    this.disaggDecisionLegacy.inc({ model_name, decision_type: decisionType });
    this.disaggDecisionReason.inc({ decision_type: decisionType, reason });
  }

  recordPdDecision(model: string, decisionType: string): void {
    const model_name = this.models.value(model || 'unknown');
    this.pdDecision.inc({ model_name, decision_type: decisionType });
    this.pdDecisionLegacy.inc({ model_name, decision_type: decisionType });
  }

  /** Registers the pool gauges, computed from `snapshot()` at scrape time. */
  registerPoolGauges(poolName: string, snapshot: () => PoolSnapshot): void {
    const registers = [this.registry];
    const stats = (pick: (e: PoolSnapshot['fresh'][number]) => number) => {
      const { fresh } = snapshot();
      if (fresh.length === 0) return { mean: 0, std: 0 };
      const mean = fresh.reduce((s, e) => s + pick(e), 0) / fresh.length;
      const variance = fresh.reduce((s, e) => s + (pick(e) - mean) ** 2, 0) / fresh.length;
      return { mean, std: Math.sqrt(variance) };
    };
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name: `${P}${name}`,
        help,
        labelNames: ['name'],
        registers,
        collect() {
          this.set({ name: poolName }, value());
        },
      });
    gauge('average_kv_cache_utilization', 'Mean KV-cache utilization of the pool (fresh endpoints).', () => stats((e) => e.kv).mean);
    gauge('average_queue_size', 'Mean waiting-queue size of the pool (fresh endpoints).', () => stats((e) => e.waiting).mean);
    gauge('average_running_requests', 'Mean running requests of the pool (fresh endpoints).', () => stats((e) => e.running).mean);
    gauge('std_dev_kv_cache_utilization', 'Standard deviation of KV-cache utilization (fresh endpoints).', () => stats((e) => e.kv).std);
    gauge('std_dev_queue_size', 'Standard deviation of the waiting-queue size (fresh endpoints).', () => stats((e) => e.waiting).std);
    gauge('std_dev_running_requests', 'Standard deviation of running requests (fresh endpoints).', () => stats((e) => e.running).std);
    gauge('ready_endpoints', 'Endpoints with fresh metrics.', () => snapshot().fresh.length);
    new Gauge({
      name: `${P}per_endpoint_queue_size`,
      help: 'Waiting-queue size of each fresh endpoint.',
      labelNames: ['name', 'model_server_endpoint'],
      registers,
      collect() {
        this.reset();
        for (const e of snapshot().fresh) this.set({ name: poolName, model_server_endpoint: e.hostPort }, e.waiting);
      },
    });
  }
}
