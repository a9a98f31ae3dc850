/**
 * The per-request metrics of one label set (model, target model, fairness id, priority), resolved once in every
 * enabled family and cached by EppMetrics: a request holds its RequestSeries and each measurement is one call that
 * updates both families.
 *
 * Where the families' upstreams record differently, each family keeps its own rule:
 * - input and output tokens: only counts > 0 (both upstreams);
 * - cached tokens: llm-d-router records them when the usage reports them; GAIE v1.4.0 records 0 when the usage has
 *   no prompt token details;
 * - TTFT and streaming TPOT exist only in the llm-d family (GAIE's come from its latency predictor).
 */
import type { CounterChild, GaugeChild, HistogramChild } from '../../common/index.js';
import { fanCounter, fanGauge, fanHistogram } from './fanout.js';
import type { GaieFamily } from './gaie-family.js';
import type { LlmdFamily, RequestLabel } from './llmd-family.js';

export class RequestSeries {
  readonly total: CounterChild;
  readonly size: HistogramChild;
  readonly running: GaugeChild;
  readonly duration: HistogramChild;
  readonly responseSize: HistogramChild;
  readonly ntpot: HistogramChild;
  private readonly input: HistogramChild;
  private readonly output: HistogramChild;
  private readonly llmdCached: HistogramChild | undefined;
  private readonly gaieCached: HistogramChild | undefined;
  private ttftChildren: [HistogramChild, HistogramChild] | undefined;
  private tpotChild: HistogramChild | undefined;
  private readonly errors = new Map<string, CounterChild>();

  constructor(
    private readonly llmd: LlmdFamily | undefined,
    private readonly gaie: GaieFamily | undefined,
    private readonly labels: Readonly<Record<RequestLabel, string>>,
  ) {
    const l = labels;
    const m = { model_name: l.model_name, target_model_name: l.target_model_name };
    this.total = fanCounter(llmd?.requestTotal.child(l), gaie?.requestTotal.child(m));
    this.size = fanHistogram(llmd?.requestSize.child(l), gaie?.requestSizes.child(m));
    this.running = fanGauge(llmd?.requestRunning.child(l), gaie?.runningRequests.child({ model_name: l.model_name }));
    this.duration = fanHistogram(llmd?.requestDuration.child(l), gaie?.requestDuration.child(m));
    this.responseSize = fanHistogram(llmd?.responseSize.child(l), gaie?.responseSizes.child(m));
    this.ntpot = fanHistogram(llmd?.ntpot.child(l), gaie?.ntpot.child(m));
    this.input = fanHistogram(llmd?.inputTokens.child(l), gaie?.inputTokens.child(m));
    this.output = fanHistogram(llmd?.outputTokens.child(l), gaie?.outputTokens.child(m));
    this.llmdCached = llmd?.cachedTokens.child(l);
    this.gaieCached = gaie?.promptCachedTokens.child(m);
  }

  /** The request was scheduled: counted, with its body size. */
  accepted(bodyBytes: number): void {
    this.total.inc();
    this.size.observe(bodyBytes);
  }

  error(code: string): void {
    let c = this.errors.get(code);
    if (!c) {
      const l = this.labels;
      c = fanCounter(
        this.llmd?.requestErrorTotal.child({ ...l, error_code: code }),
        this.gaie?.requestErrorTotal.child({
          model_name: l.model_name,
          target_model_name: l.target_model_name,
          error_code: code,
        }),
      );
      this.errors.set(code, c);
    }
    c.inc();
  }

  /** Token usage from the response (cached: undefined when the usage did not report it). */
  usage(promptTokens: number, completionTokens: number, cachedTokens: number | undefined): void {
    if (promptTokens > 0) this.input.observe(promptTokens);
    if (completionTokens > 0) this.output.observe(completionTokens);
    if (cachedTokens !== undefined) this.llmdCached?.observe(cachedTokens);
    this.gaieCached?.observe(cachedTokens ?? 0);
  }

  ttft(streaming: boolean, seconds: number): void {
    if (!this.llmd) return;
    this.ttftChildren ??= [
      this.llmd.ttft.child({ ...this.labels, streaming: 'false' }),
      this.llmd.ttft.child({ ...this.labels, streaming: 'true' }),
    ];
    this.ttftChildren[streaming ? 1 : 0].observe(seconds);
  }

  tpot(seconds: number): void {
    if (!this.llmd) return;
    (this.tpotChild ??= this.llmd.tpot.child(this.labels)).observe(seconds);
  }
}
