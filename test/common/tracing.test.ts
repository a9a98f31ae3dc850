/**
 * The tracing module's pure logic: W3C traceparent parsing and formatting, the OTEL_* readings (collector URL, resource
 * attributes, sampler), and the bounded span processor's queue, export deadline and counters (spans made by the real
 * SDK, exported to an exporter the test drives). The export over the wire is tested in test/interop/tracing.test.ts.
 */
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  BoundedSpanProcessor,
  Tracing,
  otlpUrl,
  parseTraceparent,
  resourceAttributes,
  samplerFrom,
  silentLogger,
  startTracing,
  traceparentOf,
  type DropReason,
} from '../../src/common/index.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('W3C traceparent', () => {
  it('parses a valid header, keeping only the sampled flag', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toMatchObject({
      traceId: TRACE,
      spanId: SPAN,
      traceFlags: 1,
      isRemote: true,
    });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-fe`)?.traceFlags).toBe(0);
    // A later version may carry more fields.
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-extra`)?.traceId).toBe(TRACE);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`, 'vendor=x')?.traceState?.get('vendor')).toBe('x');
  });

  it.each([
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['version 00 with an extra field', `00-${TRACE}-${SPAN}-01-extra`],
    ['upper case', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['garbage', 'hello'],
  ])('rejects %s', (_what, header) => {
    expect(parseTraceparent(header)).toBeUndefined();
  });
});

describe('OTEL_* readings', () => {
  it('collector URL: localhost:4317 plaintext by default; host:port without a scheme is plaintext unless a transport variable says otherwise', () => {
    expect(otlpUrl({})).toBe('http://localhost:4317');
    expect(otlpUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' })).toBe('http://collector:4317');
    expect(
      otlpUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'traces:4317' }),
    ).toBe('http://traces:4317');
    // With a scheme, or with a transport variable, the exporter reads the variables itself.
    expect(otlpUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector:4317' })).toBeUndefined();
    expect(
      otlpUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317', OTEL_EXPORTER_OTLP_INSECURE: 'false' }),
    ).toBeUndefined();
    expect(
      otlpUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317', OTEL_EXPORTER_OTLP_CERTIFICATE: '/ca.pem' }),
    ).toBeUndefined();
  });

  it('resource attributes: key=value pairs, percent-decoded; a malformed entry is skipped', () => {
    expect(resourceAttributes('k8s.pod.name=p-1,team=a%20b,broken,=x,bad=%E0%A4%A')).toEqual({
      'k8s.pod.name': 'p-1',
      team: 'a b',
    });
    expect(resourceAttributes(undefined)).toEqual({});
  });

  it('sampler: parentbased_traceidratio 0.1 by default; an invalid ratio or an unknown sampler falls back', async () => {
    expect((await samplerFrom({})).description).toBe('parentbased_traceidratio 0.1');
    expect((await samplerFrom({ OTEL_TRACES_SAMPLER_ARG: '0.5' })).description).toBe('parentbased_traceidratio 0.5');
    expect((await samplerFrom({ OTEL_TRACES_SAMPLER_ARG: '1.5' })).description).toBe('parentbased_traceidratio 0.1');
    expect((await samplerFrom({ OTEL_TRACES_SAMPLER: 'always_on' })).description).toBe('always_on');
    expect((await samplerFrom({ OTEL_TRACES_SAMPLER: 'jaeger_remote' })).description).toBe(
      'parentbased_traceidratio 0.1',
    );
  });
});

/** An exporter the test answers by hand. */
class HeldExporter implements SpanExporter {
  readonly calls: Array<{ spans: ReadableSpan[]; done: (result: ExportResult) => void }> = [];
  onExport: (() => void) | undefined;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.calls.push({ spans, done });
    this.onExport?.();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

function counters() {
  const dropped: Record<DropReason, number> = { queue_full: 0, export_failed: 0 };
  let exported = 0;
  const waiters: Array<() => void> = [];
  const notify = () => {
    for (const w of waiters.splice(0)) w();
  };
  return {
    dropped,
    get exported() {
      return exported;
    },
    counters: {
      dropped: (reason: DropReason, count: number) => {
        dropped[reason] += count;
        notify();
      },
      exported: (count: number) => {
        exported += count;
        notify();
      },
    },
    next: () => new Promise<void>((resolve) => waiters.push(resolve)),
  };
}

function tracerWith(processor: BoundedSpanProcessor, sampled = true) {
  return new BasicTracerProvider({
    sampler: sampled ? new AlwaysOnSampler() : new AlwaysOffSampler(),
    spanProcessors: [processor],
  }).getTracer('test');
}

describe('BoundedSpanProcessor', () => {
  it('a full batch leaves at once; while its export hangs the queue fills and further spans are dropped and counted', async () => {
    const exporter = new HeldExporter();
    const c = counters();
    const processor = new BoundedSpanProcessor(
      exporter,
      { maxQueueSize: 2, maxBatchSize: 2, scheduledDelayMs: 600_000, exportTimeoutMs: 600_000 },
      c.counters,
    );
    const tracer = tracerWith(processor);
    for (let i = 0; i < 7; i++) tracer.startSpan(`span-${i}`).end();
    expect(exporter.calls.map((call) => call.spans.map((span) => span.name))).toEqual([['span-0', 'span-1']]);
    expect(c.dropped.queue_full).toBe(3);
    // The collector accepts: the queued two leave next.
    const exported = c.next();
    exporter.calls[0].done({ code: ExportResultCode.SUCCESS });
    await exported;
    expect(c.exported).toBe(2);
    expect(exporter.calls[1].spans.map((span) => span.name)).toEqual(['span-2', 'span-3']);
    const failed = c.next();
    exporter.calls[1].done({ code: ExportResultCode.FAILED });
    await failed;
    expect(c.dropped.export_failed).toBe(2);
  });

  it('an export that never answers is given up at its deadline (counted) and the next batch goes', async () => {
    const exporter = new HeldExporter();
    const c = counters();
    const processor = new BoundedSpanProcessor(
      exporter,
      { maxQueueSize: 10, maxBatchSize: 1, scheduledDelayMs: 600_000, exportTimeoutMs: 50 },
      c.counters,
    );
    const tracer = tracerWith(processor);
    const failed = c.next();
    tracer.startSpan('a').end();
    tracer.startSpan('b').end();
    await failed;
    expect(c.dropped.export_failed).toBe(1);
    await new Promise<void>((resolve) => (exporter.calls.length > 1 ? resolve() : (exporter.onExport = resolve)));
    expect(exporter.calls[1].spans[0].name).toBe('b');
    // An answer after the deadline changes nothing.
    exporter.calls[0].done({ code: ExportResultCode.SUCCESS });
    expect(c.exported).toBe(0);
  });

  it('a partial batch leaves after the batch delay; forceFlush sends what is queued; unsampled spans are not queued', async () => {
    const exporter = new HeldExporter();
    exporter.onExport = () => exporter.calls.at(-1)!.done({ code: ExportResultCode.SUCCESS });
    const c = counters();
    const processor = new BoundedSpanProcessor(
      exporter,
      { maxQueueSize: 10, maxBatchSize: 5, scheduledDelayMs: 10, exportTimeoutMs: 1_000 },
      c.counters,
    );
    const exported = c.next();
    tracerWith(processor).startSpan('alone').end();
    await exported;
    expect(c.exported).toBe(1);
    tracerWith(processor, false).startSpan('unsampled').end();
    const slow = new BoundedSpanProcessor(
      exporter,
      { maxQueueSize: 10, maxBatchSize: 5, scheduledDelayMs: 600_000, exportTimeoutMs: 1_000 },
      c.counters,
    );
    tracerWith(slow).startSpan('queued').end();
    await slow.forceFlush();
    expect(c.exported).toBe(2);
    expect(exporter.calls.flatMap((call) => call.spans.map((span) => span.name))).toEqual(['alone', 'queued']);
  });

  it('shutdown within its deadline drops and counts what the collector did not take', async () => {
    const exporter = new HeldExporter();
    const c = counters();
    const processor = new BoundedSpanProcessor(
      exporter,
      { maxQueueSize: 10, maxBatchSize: 1, scheduledDelayMs: 600_000, exportTimeoutMs: 600_000 },
      c.counters,
    );
    const tracer = tracerWith(processor);
    tracer.startSpan('a').end();
    tracer.startSpan('b').end();
    await processor.shutdown(20);
    expect(c.dropped.export_failed).toBe(1);
    tracer.startSpan('after').end();
    expect(exporter.calls).toHaveLength(1);
  });
});

describe('startTracing', () => {
  it('off: Tracing.OFF, nothing built, the counters registered at zero', async () => {
    const registry = new Registry();
    const tracing = await startTracing(
      { tracing: false, tracingMaxQueueSize: 1, tracingExportTimeout: 1, tracingBatchDelay: 1 },
      { serviceName: 's', scope: 's', metricPrefix: 'unit', registry, logger: silentLogger() },
    );
    expect(tracing).toBe(Tracing.OFF);
    expect(tracing.enabled).toBe(false);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE unit_tracing_spans_dropped_total counter');
    expect(text).toContain('unit_tracing_spans_exported_total 0');
  });

  it('on: spans continue a traceparent and name their own', async () => {
    const tracing = await startTracing(
      { tracing: true, tracingMaxQueueSize: 8, tracingExportTimeout: 100, tracingBatchDelay: 600_000 },
      {
        serviceName: 's',
        scope: 's',
        metricPrefix: 'unit',
        registry: new Registry(),
        logger: silentLogger(),
        env: { OTEL_TRACES_EXPORTER: 'console', OTEL_TRACES_SAMPLER: 'parentbased_always_off' },
      },
    );
    try {
      // A sampled parent is followed whatever the root sampler says (parent-based).
      const span = tracing.start('child', `00-${TRACE}-${SPAN}-01`, 'server');
      expect(span.spanContext().traceId).toBe(TRACE);
      expect(traceparentOf(span)).toMatch(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
      const root = tracing.start('root', 'not a traceparent', 'server');
      expect(root.spanContext().traceId).not.toBe(TRACE);
      expect(traceparentOf(root).endsWith('-00')).toBe(true);
    } finally {
      await tracing.shutdown(100);
    }
  });
});
