/**
 * Seeded randomness, so that a simulator started with --seed produces the same latencies and text on every run: the
 * shared sfc32 generator (`src/common/random.ts`).
 */
import { Rng } from '../common/index.js';

export { Rng as SeededRandom };

/**
 * A normally distributed duration in milliseconds, as llm-d-inference-sim samples it: mean and std-dev truncated to
 * whole milliseconds, and the sample clamped to [0.3, 1.7] x mean. With std-dev 0 the mean is returned unchanged.
 * Unlike upstream, sub-millisecond means are kept (not truncated to 0) when `keepSubMillisecond` is set, so that
 * fast-forwarded sweeps (--time-scale) and per-token costs of a few microseconds still add up.
 */
export function normalDurationMs(rng: Rng, meanMs: number, stdMs: number, keepSubMillisecond: boolean): number {
  const mean = keepSubMillisecond ? meanMs : Math.trunc(meanMs);
  const std = keepSubMillisecond ? stdMs : Math.trunc(stdMs);
  if (std <= 0 || mean <= 0) return Math.max(0, mean);
  const sample = mean + std * rng.normal();
  return Math.min(1.7 * mean, Math.max(0.3 * mean, sample));
}
