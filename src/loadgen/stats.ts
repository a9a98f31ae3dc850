/**
 * Statistics over samples, SLO checks and goodput.
 *
 * Percentiles use linear interpolation between closest ranks (numpy's default "linear" method, which inference-perf
 * and vLLM's benchmark use): for p in [0, 100] over n sorted values the rank is h = p/100 × (n − 1) and the value
 * x[⌊h⌋] + (h − ⌊h⌋) × (x[⌈h⌉] − x[⌊h⌋]).
 */
import type { RequestSample, RunSummary, SloTargets, StatSummary } from './types.js';

/** Percentile `p` (0..100) of ascending `sorted`; NaN when empty. See the module comment for the interpolation. */
export function percentileOf(sorted: number[], quantile: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (n === 1) return sorted[0]!;
  const h = (Math.min(100, Math.max(0, quantile)) / 100) * (n - 1);
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

const PERCENTILES = [
  ['p0p1', 0.1],
  ['p1', 1],
  ['p5', 5],
  ['p10', 10],
  ['p25', 25],
  ['p50', 50],
  ['p75', 75],
  ['p90', 90],
  ['p95', 95],
  ['p99', 99],
  ['p99p9', 99.9],
] as const;

export const STAT_KEYS = ['min', 'max', 'mean', 'stddev', ...PERCENTILES.map(([k]) => k)] as const;

/** Summary of values (any order; not modified). Empty input gives count 0 and every statistic 0. */
export function statSummary(values: readonly number[]): StatSummary & { stddev: number } {
  const n = values.length;
  const s = Float64Array.from(values).sort();
  const sorted = Array.from(s);
  let sum = 0;
  for (const v of sorted) sum += v;
  const mean = n > 0 ? sum / n : 0;
  let sq = 0;
  for (const v of sorted) sq += (v - mean) * (v - mean);
  const out = {
    count: n,
    min: n > 0 ? sorted[0]! : 0,
    max: n > 0 ? sorted[n - 1]! : 0,
    mean,
    stddev: n > 0 ? Math.sqrt(sq / n) : 0,
  } as StatSummary & { stddev: number };
  for (const [k, p] of PERCENTILES) out[k] = n > 0 ? percentileOf(sorted, p) : 0;
  return out;
}

/**
 * Run summary, inference-perf style: latencies in seconds over finished successful requests; ITL over every gap of
 * every successful request; TPOT over successful requests with at least 2 output tokens; normalized TPOT = request
 * latency / output tokens; lengths over successful requests; throughput = successful requests (and their tokens) per
 * simulated second of `durationSeconds`.
 */
export function summarize(samples: RequestSample[], durationSeconds: number): RunSummary {
  const ok = samples.filter((sample) => sample.ok);
  const ttft: number[] = [];
  const tpot: number[] = [];
  const ntpot: number[] = [];
  const itl: number[] = [];
  const e2e: number[] = [];
  let inTok = 0;
  let outTok = 0;
  for (const s of ok) {
    if (s.ttftMs !== undefined) ttft.push(s.ttftMs / 1000);
    const tp = s.tpotMs ?? (s.ttftMs !== undefined && s.outputTokens > 1 ? (s.e2eMs - s.ttftMs) / (s.outputTokens - 1) : undefined);
    if (tp !== undefined) tpot.push(tp / 1000);
    if (s.outputTokens > 0) ntpot.push(s.e2eMs / s.outputTokens / 1000);
    for (const g of s.itlMs) itl.push(g / 1000);
    e2e.push(s.e2eMs / 1000);
    inTok += s.inputTokens;
    outTok += s.outputTokens;
  }
  const d = durationSeconds > 0 ? durationSeconds : 0;
  const rate = (value: number) => (d > 0 ? value / d : 0);
  return {
    durationSeconds: d,
    requests: {
      total: samples.length,
      failures: samples.length - ok.length,
      inputLength: statSummary(ok.map((sample) => sample.inputTokens)),
      outputLength: statSummary(ok.map((sample) => sample.outputTokens)),
    },
    latency: {
      timeToFirstToken: statSummary(ttft),
      timePerOutputToken: statSummary(tpot),
      normalizedTimePerOutputToken: statSummary(ntpot),
      interTokenLatency: statSummary(itl),
      requestLatency: statSummary(e2e),
    },
    throughput: {
      requestsPerSec: rate(ok.length),
      outputTokensPerSec: rate(outTok),
      totalTokensPerSec: rate(inTok + outTok),
      inputTokensPerSec: rate(inTok),
    },
  };
}

const PKEY = { 50: 'p50', 90: 'p90', 95: 'p95', 99: 'p99' } as const;

/**
 * Whether a run meets every given SLO gate at the chosen percentile (TTFT and TPOT targets in ms against the summary's
 * seconds). A gated metric with no observations fails its gate; a run with no successful request never passes.
 */
export function meetsSlo(runSummary: RunSummary, slo: SloTargets): boolean {
  const k = PKEY[slo.percentile];
  if (k === undefined) throw new Error(`unsupported SLO percentile ${String(slo.percentile)}`);
  if (runSummary.requests.total - runSummary.requests.failures <= 0) return false;
  if (slo.ttftMs !== undefined) {
    const t = runSummary.latency.timeToFirstToken;
    if (t.count === 0 || t[k] * 1000 > slo.ttftMs) return false;
  }
  if (slo.tpotMs !== undefined) {
    const t = runSummary.latency.timePerOutputToken;
    if (t.count === 0 || t[k] * 1000 > slo.tpotMs) return false;
  }
  if (slo.maxFailureRate !== undefined && runSummary.requests.failures / runSummary.requests.total > slo.maxFailureRate) return false;
  return true;
}

/** llm-d-benchmark's SLO goodput: the highest output-token rate among runs that meet every SLO gate (0 if none). */
export function sloGoodput(runs: RunSummary[], slo: SloTargets): { outputTokensPerSec: number; bestRun?: number } {
  let best: number | undefined;
  for (let i = 0; i < runs.length; i++) {
    if (!meetsSlo(runs[i]!, slo)) continue;
    if (best === undefined || runs[i]!.throughput.outputTokensPerSec > runs[best]!.throughput.outputTokensPerSec) best = i;
  }
  return best === undefined ? { outputTokensPerSec: 0 } : { outputTokensPerSec: runs[best]!.throughput.outputTokensPerSec, bestRun: best };
}
