/**
 * The EPP's Prometheus metrics, in two families chosen by `--metrics-family`:
 * - `llm-d`: llm-d-router's canonical `llm_d_epp_*` names (src/epp/metrics/llmd-family.ts);
 * - `gaie`: GAIE v1.4.0's `inference_objective_*`, `inference_pool_*`, `inference_extension_*` and
 *   llm-d-inference-scheduler v0.7.1's `llm_d_inference_scheduler_*`, what v0.7.1's dashboards, alerts and
 *   autoscalers read (src/epp/metrics/gaie-family.ts);
 * - `both` (default), as llm-d-router itself still dual-emits its deprecated names.
 * pd-router's own `llm_d_epp_disagg_decision_reason_total` is registered in every mode.
 *
 * Recording goes through this class, never to a family directly: every measurement is taken once and one call
 * updates each enabled family (series resolved once per label set and cached, see RequestSeries).
 *
 * Label values that come from clients (model names, fairness ids) go through a cardinality guard: the first
 * `MAX_LABEL_VALUES` distinct values are kept, later ones are reported as `other`, so a client cannot grow the
 * series set without bound.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  BoundCounter,
  createRegistry,
  type CounterChild,
  type GaugeChild,
  type HistogramChild,
} from '../common/index.js';
import { NO_COUNTER, fanHistogram } from './metrics/fanout.js';
import { GaieFamily } from './metrics/gaie-family.js';
import { LlmdFamily } from './metrics/llmd-family.js';
import { registerGaiePoolGauges, registerLlmdPoolGauges, type PoolSnapshot } from './metrics/pool-gauges.js';
import { RequestSeries } from './metrics/request-series.js';

export { RequestSeries } from './metrics/request-series.js';
export type { PoolEndpoint, PoolSnapshot } from './metrics/pool-gauges.js';

export const METRICS_FAMILIES = ['both', 'llm-d', 'gaie'] as const;
export type MetricsFamily = (typeof METRICS_FAMILIES)[number];

const MAX_LABEL_VALUES = 100;
/** llm-d-router's fairness id when a request names none (metadata.DefaultFairnessID). */
export const DEFAULT_FAIRNESS_ID = 'default-flow';

/**
 * Keeps at most `max` distinct values of a label; the rest become `other`. Pinned values (the model names
 * InferenceModelRewrites configure, as llm-d-router pins them) always keep their own value and take no slot.
 */
export class LabelGuard {
  private readonly seen = new Set<string>();
  private readonly pinned = new Set<string>();
  constructor(private readonly max = MAX_LABEL_VALUES) {}
  /** Pins are never removed: series already exported keep their label, and paired gauge updates stay balanced. */
  pin(item: string): void {
    this.pinned.add(item);
  }
  value(item: string): string {
    if (this.seen.has(item) || this.pinned.has(item)) return item;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(item);
    return item;
  }
}

export interface PrefixIndexerMetrics {
  size(entries: number): void;
  /** One lookup: matched blocks / total blocks, and the match in bytes. */
  match(ratio: number, bytes: number): void;
}

type Nested<T> = Map<string, T>;

/** The EPP's metrics, in llm-d's and GAIE's families (--metrics-family). */
export class EppMetrics {
  readonly registry: Registry;
  readonly family: MetricsFamily;
  readonly llmd: LlmdFamily | undefined;
  readonly gaie: GaieFamily | undefined;
  /** pd-router's own: every decision by type and reason, in every mode. */
  readonly disaggDecisionReason: BoundCounter<'decision_type' | 'reason'>;
  private readonly models = new LabelGuard();
  private readonly fairness = new LabelGuard();
  private readonly series: Nested<Nested<Nested<Nested<RequestSeries>>>> = new Map();
  private readonly schedulerE2e: HistogramChild;
  private readonly requestProcessing: HistogramChild | undefined;
  private readonly attemptFailedGaie: CounterChild | undefined;
  private readonly attemptSucceededGaie: CounterChild | undefined;
  private readonly streamsInflight: GaugeChild | undefined;
  private readonly streamDuration: HistogramChild | undefined;
  /** pd-router's own: request body bytes held by all ext_proc streams (bounded by --request-buffer-budget). */
  readonly requestBufferBytes: Gauge;
  /** pd-router's own: ext_proc connections closed gracefully, by reason. */
  readonly connectionsDrained: Counter;
  /** pd-router's own: keepalive pings of ext_proc connections, by result. */
  readonly keepalivePings: Counter;

  constructor(registry: Registry = createRegistry(), family: MetricsFamily = 'both') {
    this.registry = registry;
    this.family = family;
    this.llmd = family === 'gaie' ? undefined : new LlmdFamily(registry);
    this.gaie = family === 'llm-d' ? undefined : new GaieFamily(registry);
    this.disaggDecisionReason = new BoundCounter({
      name: 'llm_d_epp_disagg_decision_reason_total',
      help: 'Disaggregation decisions by type and reason (pd-router).',
      labelNames: ['decision_type', 'reason'],
      registers: [registry],
    });
    this.schedulerE2e = fanHistogram(this.llmd?.schedulerE2e.child({}), this.gaie?.schedulerE2e.child({}));
    this.requestProcessing = this.llmd?.requestProcessing.child({});
    this.attemptSucceededGaie = this.gaie?.schedulerAttempts.child({ status: 'success' });
    this.attemptFailedGaie = this.gaie?.schedulerAttempts.child({ status: 'failure' });
    this.streamsInflight = this.llmd?.streamsInflight.child({});
    this.streamDuration = this.llmd?.streamDuration.child({});
    // pd-router's own, in every mode.
    this.requestBufferBytes = new Gauge({
      name: 'llm_d_epp_extproc_request_buffer_bytes',
      help: 'Request body bytes held by all streams (bounded by --request-buffer-budget).',
      registers: [registry],
    });
    this.connectionsDrained = new Counter({
      name: 'llm_d_epp_extproc_connections_drained_total',
      help: 'ext_proc connections closed gracefully (GOAWAY NO_ERROR), by reason.',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.keepalivePings = new Counter({
      name: 'llm_d_epp_extproc_keepalive_pings_total',
      help: 'Keepalive pings of ext_proc connections, by result: ack, timeout (the connection is closed), closing (not sent: the connection is closing gracefully).',
      labelNames: ['result'],
      registers: [registry],
    });
    const info = { commit: process.env.PD_ROUTER_COMMIT ?? 'unknown', build_ref: 'pd-router' };
    this.llmd?.info.set(info, 1);
    this.gaie?.info.set(info, 1);
  }

  /** The per-request series of a label set (guarded values; created once, then cached). */
  request(model: string, targetModel: string, fairnessId: string = DEFAULT_FAIRNESS_ID, priority = 0): RequestSeries {
    const m = this.models.value(model);
    const t = this.models.value(targetModel);
    const f = this.fairness.value(fairnessId);
    const p = String(priority);
    const byTarget = getOrAdd(this.series, m, () => new Map<string, Nested<Nested<RequestSeries>>>());
    const byFairness = getOrAdd(byTarget, t, () => new Map<string, Nested<RequestSeries>>());
    const byPriority = getOrAdd(byFairness, f, () => new Map<string, RequestSeries>());
    return getOrAdd(
      byPriority,
      p,
      () =>
        new RequestSeries(this.llmd, this.gaie, { model_name: m, target_model_name: t, fairness_id: f, priority: p }),
    );
  }

  /** Model names configured by InferenceModelRewrites: they keep their label value however many others clients send. */
  pinModelNames(names: Iterable<string>): void {
    for (const n of names) this.models.pin(n);
  }

  /** A request's model rewritten by an InferenceModelRewrite rule (the rewrite's name and target come from config). */
  modelRewriteDecision(rewriteName: string, model: string, targetModel: string): void {
    const labels = { model_rewrite_name: rewriteName, model_name: this.models.value(model), target_model: targetModel };
    this.llmd?.modelRewriteDecisions.inc(labels);
    this.gaie?.modelRewriteDecisions.inc(labels);
  }

  /** A scheduling attempt that picked `first` (the primary profile's first target). */
  scheduled(targetModel: string, first: { name: string; namespace: string; port: number }, seconds: number): void {
    this.llmd?.schedulerAttempts.inc({
      status: 'success',
      target_model_name: this.models.value(targetModel),
      endpoint_name: first.name,
      namespace: first.namespace,
      port: String(first.port),
    });
    this.attemptSucceededGaie?.inc();
    this.schedulerE2e.observe(seconds);
  }

  schedulingFailed(targetModel: string, seconds: number): void {
    this.llmd?.schedulerAttempts.inc({
      status: 'failure',
      target_model_name: this.models.value(targetModel),
      endpoint_name: '',
      namespace: '',
      port: '',
    });
    this.attemptFailedGaie?.inc();
    this.schedulerE2e.observe(seconds);
  }

  /** EPP time from the request body's end to the reply (llm-d family only; GAIE v1.4.0 has no such metric). */
  requestProcessed(seconds: number): void {
    this.requestProcessing?.observe(seconds);
  }

  /** The latency series of one plugin at one extension point (resolve once, observe per call). */
  pluginDuration(extensionPoint: string, pluginType: string, pluginName: string): HistogramChild {
    const labels = { extension_point: extensionPoint, plugin_type: pluginType, plugin_name: pluginName };
    return fanHistogram(this.llmd?.pluginDuration.child(labels), this.gaie?.pluginDuration.child(labels));
  }

  /** A disaggregation decision of a profile handler; the model is the target model ("unknown" when empty). */
  recordDecision(plugin: { name: string; type: string }, model: string, decisionType: string, reason: string): void {
    const model_name = this.models.value(model || 'unknown');
    this.llmd?.disaggDecision.inc({
      plugin_name: plugin.name,
      plugin_type: plugin.type,
      model_name,
      decision_type: decisionType,
    });
    this.gaie?.disaggDecision.inc({ model_name, decision_type: decisionType });
    this.disaggDecisionReason.inc({ decision_type: decisionType, reason });
  }

  /** A decision of the deprecated pd-profile-handler (counted under pd_decision_total only, as upstream). */
  recordPdDecision(plugin: { name: string; type: string }, model: string, decisionType: string): void {
    const model_name = this.models.value(model || 'unknown');
    this.llmd?.pdDecision.inc({
      plugin_name: plugin.name,
      plugin_type: plugin.type,
      model_name,
      decision_type: decisionType,
    });
    this.gaie?.pdDecision.inc({ model_name, decision_type: decisionType });
  }

  /** A request rejected because prefill was required and none was eligible (`onPrefillUnavailable: fail`). */
  recordRejection(reason: string): void {
    this.disaggDecisionReason.inc({ decision_type: 'rejected', reason });
  }

  /** The approximate prefix index's metrics for one producer plugin (GAIE's are unlabelled, as upstream). */
  prefixIndexer(plugin: { name: string; type: string }): PrefixIndexerMetrics {
    const labels = { plugin_name: plugin.name, plugin_type: plugin.type };
    const ratio = fanHistogram(
      this.llmd?.prefixIndexerHitRatio.child(labels),
      this.gaie?.prefixIndexerHitRatio.child({}),
    );
    const bytes = fanHistogram(
      this.llmd?.prefixIndexerHitBytes.child(labels),
      this.gaie?.prefixIndexerHitBytes.child({}),
    );
    const llmdSize = this.llmd?.prefixIndexerSize.child(labels);
    const gaieSize = this.gaie?.prefixIndexerSize.child({});
    return {
      size(entries: number) {
        llmdSize?.set(entries);
        gaieSize?.set(entries);
      },
      match(rate: number, right: number) {
        ratio.observe(rate);
        bytes.observe(right);
      },
    };
  }

  /** Data-layer errors (llm-d family only: GAIE v1.4.0 has no such counters). */
  pollErrors(sourceType: string): CounterChild {
    return this.llmd?.pollErrors.child({ source_type: sourceType }) ?? NO_COUNTER;
  }

  extractErrors(sourceType: string, extractorType: string): CounterChild {
    return this.llmd?.extractErrors.child({ source_type: sourceType, extractor_type: extractorType }) ?? NO_COUNTER;
  }

  /** ext_proc streams (llm-d family only). */
  streamOpened(): void {
    this.streamsInflight?.inc();
  }

  streamClosed(code: string, seconds: number): void {
    if (!this.llmd) return;
    this.streamsInflight!.dec();
    this.llmd.streamsTotal.inc({ code });
    this.streamDuration!.observe(seconds);
  }

  /** Registers the pool gauges of each enabled family, computed from `snapshot()` at scrape time. */
  registerPoolGauges(poolName: string, snapshot: PoolSnapshot): void {
    if (this.llmd) registerLlmdPoolGauges(this.registry, poolName, snapshot);
    if (this.gaie) registerGaiePoolGauges(this.registry, poolName, snapshot);
  }
}

function getOrAdd<T>(map: Map<string, T>, key: string, make: () => T): T {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    map.set(key, v);
  }
  return v;
}
