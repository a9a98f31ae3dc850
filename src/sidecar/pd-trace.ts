/**
 * The sidecar's spans for one inference request, named as llm-d-inference-scheduler v0.7.1 names them (llm-d-router
 * ebab687 keeps the attribute names and shortens the span names to forward_request, prefill, decode):
 *
 *   llm_d.pd_proxy.request (server; continues the request's traceparent: the EPP's span, or the client's)
 *   ├── llm_d.pd_proxy.prefill  (the prefill leg carries this span's traceparent)
 *   └── llm_d.pd_proxy.decode   (the decode leg carries this span's traceparent)
 *
 * The request span gets upstream's timing summary: llm_d.pd_proxy.total_duration_ms, true_ttft_ms (request start to
 * the decode leg's start: routing, prefill and the sidecar's own work, which vLLM's per-instance TTFT misses),
 * prefill_duration_ms, decode_duration_ms and coordinator_overhead_ms. Upstream starts the decode span inside the
 * prefill span's context and reads the summary onto the decode span; here both legs are children of the request and
 * the summary is the request's. Built only when --tracing is on (the caller tests rank.tracing.enabled).
 */
import type { IncomingMessage } from 'node:http';
import { failSpan, traceparentOf, type Span, type Tracing } from '../common/index.js';
import type { ApiType } from '../common/index.js';
import type { Outcome } from './metrics.js';
import type { PrefillOutcome } from './prefill-client.js';

const ms = (from: number, to: number) => Math.max(0, Math.floor(to - from));

export class PdTrace {
  readonly span: Span;
  /** performance.now() of the request's start, and of each leg's start and end (0: not yet). */
  private readonly startedAt: number;
  private prefillStart = 0;
  private prefillEnd = 0;
  private decodeStart = 0;
  private decodeEnd = 0;

  constructor(
    private readonly tracing: Tracing,
    req: IncomingMessage,
    path: string,
    api: ApiType,
    private readonly connector: string,
    startedAt: number,
  ) {
    this.startedAt = startedAt;
    const parent = req.headers.traceparent;
    const tracestate = req.headers.tracestate;
    this.span = tracing.start(
      'llm_d.pd_proxy.request',
      typeof parent === 'string' ? parent : undefined,
      'server',
      {
        'llm_d.pd_proxy.connector': connector,
        'llm_d.pd_proxy.kv_connector': connector,
        'llm_d.pd_proxy.ec_connector': '',
        'llm_d.pd_proxy.request_path': path,
        'llm_d.openai.api': api,
      },
      { tracestate: typeof tracestate === 'string' ? tracestate : undefined, startTime: epochMs(startedAt) },
    );
  }

  /** The W3C trace context of the request span, for a leg sent without its own span. */
  get traceparent(): string {
    return traceparentOf(this.span);
  }

  /** No prefill header: the request is served by the local vLLM (upstream's attributes for it). */
  local(): void {
    this.span.setAttributes({
      'llm_d.pd_proxy.disaggregation_used': false,
      'llm_d.pd_proxy.reason': 'no_prefill_header',
    });
  }

  disaggregated(target: string, candidates: number): void {
    this.span.setAttributes({
      'llm_d.pd_proxy.disaggregation_used': true,
      'llm_d.pd_proxy.prefill_target': target,
      'llm_d.pd_proxy.prefill_candidates': candidates,
    });
  }

  /** A refused request (SSRF, bad target): upstream's error attribute and status. */
  refused(reason: string): void {
    this.span.setAttribute('llm_d.pd_proxy.error', reason);
    failSpan(this.span, reason);
  }

  startPrefill(requestId: string, target: string): Span {
    this.prefillStart = performance.now();
    return this.tracing.start(
      'llm_d.pd_proxy.prefill',
      this.span,
      'internal',
      {
        'llm_d.pd_proxy.request_id': requestId,
        'llm_d.pd_proxy.prefill_target': target,
        'llm_d.pd_proxy.connector': this.connector,
      },
      { startTime: epochMs(this.prefillStart) },
    );
  }

  endPrefill(span: Span, outcome: PrefillOutcome): void {
    this.prefillEnd = performance.now();
    const status = outcome.kind === 'ok' ? 200 : outcome.kind === 'http_error' ? outcome.status : 0;
    span.setAttributes({
      'llm_d.pd_proxy.prefill.status_code': status,
      'llm_d.pd_proxy.prefill.duration_ms': ms(this.prefillStart, this.prefillEnd),
    });
    if ('attempts' in outcome) span.setAttribute('pd_router.prefill.attempts', outcome.attempts);
    if (outcome.kind !== 'ok') failSpan(span, 'prefill request failed');
    span.end(epochMs(this.prefillEnd));
  }

  startDecode(requestId: string, decoder: string, streaming: boolean): Span {
    this.decodeStart = performance.now();
    return this.tracing.start(
      'llm_d.pd_proxy.decode',
      this.span,
      'internal',
      {
        'llm_d.pd_proxy.request_id': requestId,
        'llm_d.pd_proxy.connector': this.connector,
        'llm_d.pd_proxy.decode.streaming': streaming,
        'llm_d.pd_proxy.decode.target': decoder,
      },
      // Every time of the request's spans from the one monotonic clock, so the legs' order holds to the microsecond.
      { startTime: epochMs(this.decodeStart) },
    );
  }

  endDecode(span: Span, outcome: Outcome): void {
    this.decodeEnd = performance.now();
    span.setAttribute('llm_d.pd_proxy.decode.duration_ms', ms(this.decodeStart, this.decodeEnd));
    if (outcome !== 'success') failSpan(span, `decode ${outcome}`);
    span.end(epochMs(this.decodeEnd));
  }

  /** Ends the request span with the timing summary and the outcome. */
  finish(outcome: Outcome): void {
    const now = performance.now();
    const attributes: Record<string, number | string> = {
      'llm_d.pd_proxy.total_duration_ms': ms(this.startedAt, now),
      'pd_router.outcome': outcome,
    };
    if (this.decodeStart > 0) {
      attributes['llm_d.pd_proxy.true_ttft_ms'] = ms(this.startedAt, this.decodeStart);
      attributes['llm_d.pd_proxy.decode_duration_ms'] = ms(this.decodeStart, this.decodeEnd || now);
    }
    if (this.prefillStart > 0) {
      attributes['llm_d.pd_proxy.prefill_duration_ms'] = ms(this.prefillStart, this.prefillEnd || now);
      if (this.decodeStart > 0)
        attributes['llm_d.pd_proxy.coordinator_overhead_ms'] = ms(this.prefillEnd, this.decodeStart);
    }
    this.span.setAttributes(attributes);
    if (outcome !== 'success' && outcome !== 'client_error') failSpan(this.span, outcome);
    this.span.end(epochMs(now));
  }
}

/** A performance.now() reading as epoch milliseconds. */
function epochMs(at: number): number {
  return performance.timeOrigin + at;
}
