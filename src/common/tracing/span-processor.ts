/**
 * A bounded batching span processor: finished spans wait in a queue of at most `maxQueueSize` and leave in batches of
 * at most `maxBatchSize`, one export at a time, each given `exportTimeoutMs`. A full queue drops the new span and a
 * failed or late export drops its batch; both are counted (the `..._tracing_spans_dropped_total{reason}` metric), never
 * waited for: a request only ever appends to an array. The SDK's BatchSpanProcessor has the same shape but drops
 * silently (its count is private), and an unreachable collector must show on /metrics.
 */
import { TraceFlags } from '@opentelemetry/api';
import type { Context } from '@opentelemetry/api';
import type { ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';

/**
 * @opentelemetry/core's ExportResultCode values, here so that importing this module (every process that can trace,
 * with tracing on or off) does not load @opentelemetry/core and its dependencies (~3 MB of memory); the exporters and
 * the SDK, which need it, load only when tracing starts.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- the enum's value, without its module
const SUCCESS: ExportResultCode.SUCCESS = 0;
// eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- the enum's value, without its module
const FAILED: ExportResultCode.FAILED = 1;

/** Why spans were dropped: the queue was full, or their export failed (collector unreachable, refused, too slow). */
export type DropReason = 'queue_full' | 'export_failed';

export interface SpanCounters {
  exported(count: number): void;
  dropped(reason: DropReason, count: number): void;
}

export interface BoundedProcessorSettings {
  maxQueueSize: number;
  maxBatchSize: number;
  /** How long a finished span may wait for a batch to fill before the batch leaves anyway. */
  scheduledDelayMs: number;
  /** One export's deadline; past it the batch counts as failed and the next one may start. */
  exportTimeoutMs: number;
}

export class BoundedSpanProcessor implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private exporting: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly exporter: SpanExporter,
    private readonly settings: BoundedProcessorSettings,
    private readonly counters: SpanCounters,
  ) {}

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.stopped || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queue.length >= this.settings.maxQueueSize) {
      this.counters.dropped('queue_full', 1);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.settings.maxBatchSize) this.exportNext();
    else this.timer ??= setTimeout(() => this.exportNext(), this.settings.scheduledDelayMs).unref();
  }

  /** Starts the next export unless one is running (that one starts the next when it ends). */
  private exportNext(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.exporting || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.settings.maxBatchSize);
    this.exporting = this.exportBatch(batch).then(() => {
      this.exporting = undefined;
      if (this.queue.length >= this.settings.maxBatchSize || (this.stopped && this.queue.length > 0)) this.exportNext();
      else if (this.queue.length > 0)
        this.timer ??= setTimeout(() => this.exportNext(), this.settings.scheduledDelayMs).unref();
    });
  }

  private exportBatch(batch: ReadableSpan[]): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (result: ExportResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        if (result.code === SUCCESS) this.counters.exported(batch.length);
        else this.counters.dropped('export_failed', batch.length);
        resolve();
      };
      const deadline = setTimeout(
        () => finish({ code: FAILED, error: new Error('export timed out') }),
        this.settings.exportTimeoutMs,
      ).unref();
      try {
        this.exporter.export(batch, finish);
      } catch (err) {
        finish({ code: FAILED, error: err as Error });
      }
    });
  }

  /** Exports everything queued now; resolves when the queue is empty and no export runs. */
  async forceFlush(): Promise<void> {
    while (this.queue.length > 0 || this.exporting) {
      this.exportNext();
      await this.exporting;
    }
  }

  /** Flushes within `deadlineMs` (what is left is dropped and counted), then shuts the exporter down (same deadline). */
  async shutdown(deadlineMs = this.settings.exportTimeoutMs): Promise<void> {
    if (this.stopped) return;
    const until = performance.now() + deadlineMs;
    await within(this.forceFlush(), deadlineMs);
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.queue.length > 0) this.counters.dropped('export_failed', this.queue.splice(0).length);
    await within(
      this.exporter.shutdown().catch(() => undefined),
      Math.max(0, until - performance.now()),
    );
  }
}

/** Waits for `work`, or `ms`, whichever comes first. */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms).unref()))]);
  clearTimeout(timer);
}
