/** The LLM load generator: workload profiles, arrival processes, per-request SSE metrics, summaries, goodput, reports. */
export type {
  LengthDistribution,
  WorkloadProfile,
  ArrivalProcess,
  LoadRunOptions,
  RequestSample,
  StatSummary,
  RunSummary,
  RunResult,
  SloTargets,
} from './types.js';
export { runLoad, inferencePath, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SEED } from './runner.js';
export { summarize, statSummary, percentileOf, meetsSlo, sloGoodput, STAT_KEYS } from './stats.js';
export {
  metricsFromSseTimeline,
  SseParser,
  StreamMetrics,
  type SseEvent,
  type StreamMetricsResult,
  type Usage,
} from './sse.js';
export { inferencePerfReport, markdownSummary, REPORT_VERSION } from './report.js';
export { WORKLOAD_PRESETS, DOE_CONCURRENCY_LEVELS, DOE_PROMPTS_PER_CONCURRENCY } from './presets.js';
export {
  Rng,
  drawLength,
  nominalMean,
  maxLength,
  parseLengthDistribution,
  formatLengthDistribution,
} from './random.js';
export { PromptFactory, CHAT_TEMPLATE_TOKENS, WORDS } from './prompts.js';
export { workloadProfileSchema, arrivalSchema, lengthDistributionSchema, validateRunOptions } from './schema.js';
export { Progress, progressLine, type ProgressState } from './progress.js';
export { writeRunFiles } from './files.js';
export { loadgenCommand, loadgenOptions, resolveRunOptions, discoverModel, type LoadgenConfig } from './options.js';
