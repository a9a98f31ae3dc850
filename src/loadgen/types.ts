/**
 * The load generator's public types: workload profiles, arrival processes, run options, per-request samples and the run
 * summary (inference-perf units: seconds in summaries, milliseconds in samples). Fields marked "pd-router" extend the
 * agreed contract and are optional, so samples and summaries built elsewhere (a step simulator, tests) type-check
 * without them.
 */

export type LengthDistribution =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number }
  | { kind: 'normal'; mean: number; std: number; min: number; max: number }
  /** mean/std of the resulting lengths (not of the underlying normal). */
  | { kind: 'lognormal'; mean: number; std: number; min: number; max: number };

/** A workload: request shapes, prompt and output lengths, streaming, arrivals. */
export interface WorkloadProfile {
  name: string;
  description: string;
  api: 'chat' | 'completions';
  inputTokens: LengthDistribution;
  outputTokens: LengthDistribution;
  /** Requests draw one of `groups` shared prefixes of `prefixTokens` tokens (the input length includes it). */
  sharedPrefix?: { groups: number; prefixTokens: number };
  /** pd-router: how the upstream benchmark runs this profile (used by `pd-router loadgen` when no arrival is given). */
  suggested?: { arrival: ArrivalProcess; requests?: number; durationSeconds?: number };
}

/** How requests arrive: a fixed concurrency, or a constant or Poisson rate. */
export type ArrivalProcess =
  /** Requests per second (simulated time, see timeScale), evenly spaced. */
  | { kind: 'constant'; rate: number }
  /** Requests per second (simulated time), exponential gaps from the seeded RNG. */
  | { kind: 'poisson'; rate: number }
  /** Closed loop: N in flight; each finished request is replaced at once. */
  | { kind: 'concurrency'; concurrency: number };

/** One load run: target, workload, duration, bounds. */
export interface LoadRunOptions {
  /** e.g. http://127.0.0.1:8080 (the gateway): any OpenAI-compatible server. */
  baseUrl: string;
  model: string;
  profile: WorkloadProfile;
  arrival: ArrivalProcess;
  /** Stop after this many requests (upstream DoE: num_prompts = 10 x concurrency). */
  requests?: number;
  /** Or after this much simulated time (no new request starts after it); at least one of the two is required. */
  durationSeconds?: number;
  /**
   * The servers' --time-scale: rates and deadlines are applied in wall time × scale, and every reported time and
   * throughput is converted back to simulated time (wall / scale). 1 for real deployments.
   */
  timeScale?: number;
  /** Seeds lengths, arrivals, shared prefixes and prompt words (default 1). */
  seed?: number;
  /** Per request, simulated ms (default 10 min). */
  requestTimeoutMs?: number;
  headers?: Record<string, string>;
  /** A progress bar (default: stderr when it is a TTY). */
  progress?: boolean | NodeJS.WritableStream;
  signal?: AbortSignal;
  /** pd-router: open-loop runs only: at most this many requests in flight; later arrivals wait (default unlimited). */
  maxConcurrency?: number;
  /** pd-router: called with each finished request (success or failure) as it completes. */
  onSample?: (sample: RequestSample) => void;
}

/** One request's measurements. */
export interface RequestSample {
  /** pd-router: order in which the request was issued (0-based). */
  index?: number;
  ok: boolean;
  status: number;
  error?: string;
  /** As sent (the prompt is built to this length for the simulator's tokenizer). */
  inputTokens: number;
  /** pd-router: requested output length (max_tokens = min_tokens). */
  requestedOutputTokens?: number;
  /** From the final usage chunk if present, else counted content chunks. */
  outputTokens: number;
  /** pd-router: prompt_tokens the server reported in its usage chunk, when it sent one. */
  reportedInputTokens?: number;
  /** Simulated ms since run start when the request was sent. */
  startMs: number;
  /** pd-router: simulated ms since run start when the arrival process scheduled it (startMs lags it when sends wait). */
  scheduledMs?: number;
  ttftMs?: number;
  e2eMs: number;
  /** Gaps between content chunks, simulated ms. */
  itlMs: number[];
  /** (e2e - ttft) / (outputTokens - 1) */
  tpotMs?: number;
}

/** Summary statistics of one measurement (mean, percentiles). */
export interface StatSummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  /** pd-router: population standard deviation. */
  stddev?: number;
  p0p1: number;
  p1: number;
  p5: number;
  p10: number;
  p25: number;
  p50: number;
  p75: number;
  p90: number;
  p95: number;
  p99: number;
  p99p9: number;
}

/** A run's summary: counts, throughput, latency statistics. */
export interface RunSummary {
  /** Simulated seconds from the run start to the end of the last request. */
  durationSeconds: number;
  requests: { total: number; failures: number; inputLength: StatSummary; outputLength: StatSummary };
  /** Seconds (per-token metrics: seconds per token). */
  latency: {
    timeToFirstToken: StatSummary;
    timePerOutputToken: StatSummary;
    normalizedTimePerOutputToken: StatSummary;
    interTokenLatency: StatSummary;
    requestLatency: StatSummary;
  };
  throughput: {
    requestsPerSec: number;
    outputTokensPerSec: number;
    totalTokensPerSec: number;
    /** pd-router */ inputTokensPerSec?: number;
  };
}

/** A run's result: its summary and its samples. */
export interface RunResult {
  options: LoadRunOptions;
  samples: RequestSample[];
  summary: RunSummary;
  /** pd-router: wall-clock epoch ms of the run start and end. */
  startedAt?: number;
  endedAt?: number;
  /** pd-router: the run was stopped by its signal; requests still in flight then are left out of samples. */
  aborted?: boolean;
  /** pd-router: requests cancelled in flight by the abort (not in samples). */
  cancelled?: number;
}

/** Latency targets a run is judged against. */
export interface SloTargets {
  ttftMs?: number;
  tpotMs?: number;
  percentile: 50 | 90 | 95 | 99;
  /** pd-router: the run also fails when more than this fraction of requests failed (default: not checked). */
  maxFailureRate?: number;
}
