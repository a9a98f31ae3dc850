/** OpenTelemetry tracing shared by the EPP, the sidecar and the dev gateway. */
export * from './tracing.js';
export { BoundedSpanProcessor, type DropReason, type SpanCounters } from './span-processor.js';
