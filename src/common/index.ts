/** Shared plumbing: configuration, logging, metrics, HTTP server helpers, shutdown, OpenAI request helpers. */
export * from './config/index.js';
export * from './logging.js';
export * from './metrics.js';
export { BoundHistogram, type BoundHistogramConfig, type HistogramChild } from './bound-histogram.js';
export {
  BoundCounter,
  BoundGauge,
  type BoundMetricConfig,
  type CounterChild,
  type GaugeChild,
} from './bound-metrics.js';
export * from './shutdown.js';
export * from './parent-watch.js';
export { packageVersion } from './version.js';
export * from './http.js';
export * from './openai/index.js';
export * from './command-runner.js';
export * from './tls.js';
export * from './upstream-leg.js';
export { Rng } from './random.js';
export * from './pd-contract.js';
export * from './json.js';
export * from './upstream-logging.js';
export * from './tracing/index.js';
