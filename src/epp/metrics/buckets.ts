/**
 * Histogram buckets as upstream writes them (GAIE v1.4.0 `pkg/epp/metrics/metrics.go`, llm-d-router
 * `pkg/epp/metrics/llm_d_router_metrics.go` and its prefix and ext_proc metrics). A dashboard's histogram_quantile
 * and an alert's `le` selector depend on them, so they are copied, never tuned.
 */

/** 5 ms to 1 hour: request latency (both families), GAIE's TTFT. */
export const GENERAL_LATENCY = [
  0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240,
  300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
];
/** 100 µs to 100 ms: scheduling and plugin latency. */
export const SCHEDULER = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];
/** 64 B to 1 GiB: request bodies. */
export const REQUEST_BYTES = [
  64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304,
  8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824,
];
/** 1 B to 64 KiB: response bodies (upstream's comment: 8192 tokens x 4 characters); 32778 is upstream's. */
export const RESPONSE_BYTES = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536];
/** 1 to 1M tokens: prompt and cached tokens. */
export const PROMPT_TOKENS = [
  1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144, 524288, 1048576,
];
/** 1 to 8192 tokens: completion tokens. */
export const OUTPUT_TOKENS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];
/** 1 ms to 10 s per token: normalized time per output token. */
export const NTPOT = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];
/** llm-d's TTFT: 5 ms to 2 minutes. */
export const LLMD_TTFT = [
  0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120,
];
/** llm-d's streaming TPOT: 0.5 ms to 2 s. */
export const LLMD_TPOT = [
  0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 2,
];
/** llm-d's EPP request processing: 0.5 ms to 10 s. */
export const REQUEST_PROCESSING = [
  0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Prefix match ratio, 0 to 1 in tenths. */
export const HIT_RATIO = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];
/** Prefix match length, 0 to 64 KiB. */
export const HIT_BYTES = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
/** ext_proc stream lifetime, 1 ms to 10 minutes. */
export const EXTPROC_STREAM = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600];
