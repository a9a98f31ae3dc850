/**
 * OpenTelemetry tracing for the EPP, the sidecar and the dev gateway, as llm-d's programs trace: OTLP over gRPC,
 * configured by the standard OTEL_* variables, the W3C trace context taken from the request and passed on.
 *
 * Upstream (pkg/telemetry/tracing.go in llm-d-inference-scheduler v0.7.1, pkg/common/observability/tracing in
 * llm-d-router ebab687) reads: OTEL_SERVICE_NAME; OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317, plaintext);
 * OTEL_TRACES_SAMPLER, parentbased_traceidratio by default, with OTEL_TRACES_SAMPLER_ARG (default 0.1, an invalid value
 * falls back to 0.1); ebab687 also OTEL_TRACES_EXPORTER (otlp, or console, its default), OTEL_RESOURCE_ATTRIBUTES and
 * the exporter's own OTEL_EXPORTER_OTLP_* variables. We read the same, with `otlp` as the default exporter.
 *
 * Off (the default) costs one boolean test per request: `enabled` is false and no span, context or attribute object is
 * built; the SDK is not even loaded. Each component has its own provider (never the global one), so several components
 * in one process (`pd-router dev`, the tests) keep their service names apart.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  createTraceState,
  trace,
  type Attributes,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { Counter, type Registry } from 'prom-client';
import { opt } from '../config/index.js';
import type { Logger } from '../logging.js';
import { packageVersion } from '../version.js';
import { BoundedSpanProcessor, type SpanCounters } from './span-processor.js';

export type { Span } from '@opentelemetry/api';

/** The tracing flags of the EPP, the sidecar and the gateway. */
export const tracingOptions = {
  tracing: opt.bool({
    default: false,
    description:
      "Export OpenTelemetry traces (OTLP gRPC to OTEL_EXPORTER_OTLP_ENDPOINT, default localhost:4317; sampling by OTEL_TRACES_SAMPLER/_ARG, default parentbased_traceidratio 0.1, as upstream). llm-d's flag: its EPP defaults to true, llm-d-router's sidecar to false (v0.7.1's traced always).",
  }),
  tracingMaxQueueSize: opt.int({
    default: 2048,
    min: 1,
    description:
      'pd-router: finished spans waiting for export; beyond it new spans are dropped and counted (*_tracing_spans_dropped_total{reason="queue_full"}).',
  }),
  tracingExportTimeout: opt.duration({
    default: 10_000,
    min: 1,
    description:
      'pd-router: deadline of one span export; a batch not accepted by then is dropped and counted (reason="export_failed"). Requests never wait for it.',
  }),
  tracingBatchDelay: opt.duration({
    default: 5_000,
    min: 1,
    description: 'pd-router: longest a finished span waits for a batch of 512 before it is exported anyway.',
  }),
};

export interface TracingSettings {
  tracing: boolean;
  tracingMaxQueueSize: number;
  tracingExportTimeout: number;
  tracingBatchDelay: number;
}

export interface TracingStart {
  /** service.name unless OTEL_SERVICE_NAME says otherwise. */
  serviceName: string;
  /** Instrumentation scope of the spans (upstream: `llm-d-router/pkg/sidecar/proxy`, ...). */
  scope: string;
  /** Prefix of the span counters: `<prefix>_tracing_spans_dropped_total`, `<prefix>_tracing_spans_exported_total`. */
  metricPrefix: string;
  registry: Registry;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

/** Kinds of span we start. */
export type Kind = 'server' | 'internal' | 'client';
const KINDS: Record<Kind, SpanKind> = {
  server: SpanKind.SERVER,
  internal: SpanKind.INTERNAL,
  client: SpanKind.CLIENT,
};

const MAX_BATCH = 512;
const DEFAULT_RATIO = 0.1;

/** A component's tracer; `enabled` false: every method but shutdown must not be called (the callers test first). */
export class Tracing {
  /** Use startTracing (or Tracing.OFF). */
  constructor(
    private readonly tracer: Tracer | undefined,
    private readonly processor: BoundedSpanProcessor | undefined,
    /**
     * The sampler is parent-based (parentbased_*, the default): a span whose parent in this process is not recording
     * is not recorded either, so callers may skip building it (no attribute object, no span, no sampler call).
     */
    readonly followsParent = false,
  ) {}

  /** Tracing off: nothing is built, nothing exported. */
  static readonly OFF = new Tracing(undefined, undefined);

  get enabled(): boolean {
    return this.tracer !== undefined;
  }

  /**
   * Starts a span. `parent`: a span of this process, or a W3C traceparent header (continued when valid, a new trace
   * otherwise) with its tracestate. `startTime`: epoch milliseconds, when the work began before the span could.
   */
  start(
    name: string,
    parent: Span | string | undefined,
    kind: Kind,
    attributes?: Attributes,
    options: { tracestate?: string; startTime?: number } = {},
  ): Span {
    let context = ROOT_CONTEXT;
    if (typeof parent === 'string') {
      const remote = parseTraceparent(parent, options.tracestate);
      if (remote) context = trace.setSpanContext(ROOT_CONTEXT, remote);
    } else if (parent) context = trace.setSpan(ROOT_CONTEXT, parent);
    return this.tracer!.startSpan(name, { kind: KINDS[kind], attributes, startTime: options.startTime }, context);
  }

  /** Flushes what is queued within `deadlineMs`, then stops the exporter. */
  async shutdown(deadlineMs: number): Promise<void> {
    await this.processor?.shutdown(deadlineMs);
  }
}

/** The W3C traceparent header naming `span` as the parent (sampled flag as decided). */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-0${(c.traceFlags & TraceFlags.SAMPLED).toString(16)}`;
}

/** Marks a span failed with a reason (upstream: span.SetStatus(codes.Error, msg)). */
export function failSpan(span: Span, message: string): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** A W3C traceparent (https://www.w3.org/TR/trace-context/) as a remote span context; undefined when invalid. */
export function parseTraceparent(header: string, tracestate?: string): SpanContext | undefined {
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  // Version ff is invalid; version 00 has exactly four fields; later versions may add some.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return {
    traceId,
    spanId,
    traceFlags: parseInt(flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    traceState: tracestate ? createTraceState(tracestate) : undefined,
  };
}

/** The span counters, registered whether tracing is on or not (so dashboards see zeros). */
function spanCounters(prefix: string, registry: Registry): SpanCounters {
  const dropped = new Counter({
    name: `${prefix}_tracing_spans_dropped_total`,
    help: 'Finished spans not exported, by reason: queue_full (the export queue, --tracing-max-queue-size, was full), export_failed (the collector refused or did not answer within --tracing-export-timeout).',
    labelNames: ['reason'],
    registers: [registry],
  });
  const exported = new Counter({
    name: `${prefix}_tracing_spans_exported_total`,
    help: 'Finished spans the collector accepted.',
    registers: [registry],
  });
  return { dropped: (reason, count) => dropped.inc({ reason }, count), exported: (count) => exported.inc(count) };
}

/**
 * Starts a component's tracing when `settings.tracing` is on, else registers the counters and returns Tracing.OFF.
 * A bad OTEL_* value is warned about and replaced by upstream's default (as upstream does); never fatal.
 */
export async function startTracing(settings: TracingSettings, start: TracingStart): Promise<Tracing> {
  const counters = spanCounters(start.metricPrefix, start.registry);
  if (!settings.tracing) return Tracing.OFF;
  const env = start.env ?? process.env;
  const log = start.logger;
  const [{ BasicTracerProvider, ConsoleSpanExporter }, { resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
  ]);
  const exporterKind = (env.OTEL_TRACES_EXPORTER ?? '').trim() || 'otlp';
  let exporter: import('@opentelemetry/sdk-trace-base').SpanExporter;
  let where: string;
  if (exporterKind === 'console') {
    exporter = new ConsoleSpanExporter();
    where = 'console';
  } else {
    if (exporterKind !== 'otlp')
      log.warn({ exporter: exporterKind }, 'unsupported OTEL_TRACES_EXPORTER; exporting with otlp (gRPC)');
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-grpc');
    const url = otlpUrl(env);
    exporter = new OTLPTraceExporter({ url, timeoutMillis: settings.tracingExportTimeout });
    where = url ?? env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '';
  }
  const processor = new BoundedSpanProcessor(
    exporter,
    {
      maxQueueSize: settings.tracingMaxQueueSize,
      maxBatchSize: Math.min(MAX_BATCH, settings.tracingMaxQueueSize),
      scheduledDelayMs: settings.tracingBatchDelay,
      exportTimeoutMs: settings.tracingExportTimeout,
    },
    counters,
  );
  const sampling = await samplerFrom(env, log);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      'service.name': start.serviceName,
      'service.version': packageVersion(),
      ...resourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES, log),
      ...(env.OTEL_SERVICE_NAME ? { 'service.name': env.OTEL_SERVICE_NAME } : {}),
    }),
    sampler: sampling.sampler,
    spanProcessors: [processor],
  });
  log.info(
    { exporter: exporterKind === 'console' ? 'console' : 'otlp', endpoint: where, sampler: sampling.description },
    'OpenTelemetry tracing on',
  );
  return new Tracing(
    provider.getTracer(start.scope, packageVersion()),
    processor,
    sampling.description.startsWith('parentbased_'),
  );
}

/**
 * The collector URL to give the exporter, or undefined to let it read the OTEL_EXPORTER_OTLP_* variables itself. A
 * host:port without a scheme is plaintext, as v0.7.1 always was and as llm-d-router is with no transport variable,
 * unless OTEL_EXPORTER_OTLP_(TRACES_)INSECURE or a certificate variable says how to connect.
 */
export function otlpUrl(env: NodeJS.ProcessEnv): string | undefined {
  const endpoint = (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT || '').trim();
  if (endpoint === '') return 'http://localhost:4317';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint)) return undefined;
  const transport = [
    'OTEL_EXPORTER_OTLP_INSECURE',
    'OTEL_EXPORTER_OTLP_TRACES_INSECURE',
    'OTEL_EXPORTER_OTLP_CERTIFICATE',
    'OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE',
  ];
  return transport.some((name) => (env[name] ?? '') !== '') ? undefined : `http://${endpoint}`;
}

/** OTEL_RESOURCE_ATTRIBUTES: `key=value,key=value`, values percent-encoded; a malformed entry is skipped and warned. */
export function resourceAttributes(raw: string | undefined, log?: Logger): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (raw ?? '').split(',')) {
    if (item.trim() === '') continue;
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq).trim() : '';
    let value: string | undefined;
    try {
      value = eq > 0 ? decodeURIComponent(item.slice(eq + 1).trim()) : undefined;
    } catch {
      value = undefined;
    }
    if (key === '' || value === undefined)
      log?.warn({ entry: item }, 'malformed OTEL_RESOURCE_ATTRIBUTES entry skipped');
    else out[key] = value;
  }
  return out;
}

/** The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name (upstream's default: parentbased_traceidratio 0.1). */
export async function samplerFrom(
  env: NodeJS.ProcessEnv,
  log?: Logger,
): Promise<{ sampler: import('@opentelemetry/sdk-trace-base').Sampler; description: string }> {
  const { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } =
    await import('@opentelemetry/sdk-trace-base');
  let kind = (env.OTEL_TRACES_SAMPLER ?? '').trim() || 'parentbased_traceidratio';
  const arg = (env.OTEL_TRACES_SAMPLER_ARG ?? '').trim();
  let ratio = DEFAULT_RATIO;
  if (arg !== '') {
    const n = Number(arg);
    if (Number.isFinite(n) && n >= 0 && n <= 1) ratio = n;
    else log?.warn({ arg, default: DEFAULT_RATIO }, 'invalid OTEL_TRACES_SAMPLER_ARG, using the default');
  }
  const samplers: Record<string, () => import('@opentelemetry/sdk-trace-base').Sampler> = {
    always_on: () => new AlwaysOnSampler(),
    always_off: () => new AlwaysOffSampler(),
    traceidratio: () => new TraceIdRatioBasedSampler(ratio),
    parentbased_always_on: () => new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    parentbased_always_off: () => new ParentBasedSampler({ root: new AlwaysOffSampler() }),
    parentbased_traceidratio: () => new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
  };
  if (!(kind in samplers)) {
    log?.warn({ sampler: kind }, 'unsupported OTEL_TRACES_SAMPLER, using parentbased_traceidratio');
    kind = 'parentbased_traceidratio';
  }
  return { sampler: samplers[kind](), description: kind.endsWith('traceidratio') ? `${kind} ${ratio}` : kind };
}
