/**
 * Seeded randomness, so that a simulator started with --seed produces the same latencies and text on every run.
 * sfc32 is small, fast and passes PractRand for this use; normal samples use Box-Muller.
 */

export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | undefined;

  constructor(seed: number) {
    // Split the seed into four 32-bit words; the warm-up rounds mix them.
    this.a = 0x9e3779b9 ^ (seed >>> 0);
    this.b = 0x243f6a88 ^ Math.floor(seed / 2 ** 32);
    this.c = 0xb7e15162;
    this.d = 1;
    for (let i = 0; i < 15; i++) this.next();
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    this.d >>>= 0;
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** Standard normal sample. */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

/**
 * A normally distributed duration in milliseconds, as llm-d-inference-sim samples it: mean and std-dev truncated to
 * whole milliseconds, and the sample clamped to [0.3, 1.7] x mean. With std-dev 0 the mean is returned unchanged.
 * Unlike upstream, sub-millisecond means are kept (not truncated to 0) when `keepSubMillisecond` is set, so that
 * fast-forwarded sweeps (--time-scale) and per-token costs of a few microseconds still add up.
 */
export function normalDurationMs(rng: SeededRandom, meanMs: number, stdMs: number, keepSubMillisecond: boolean): number {
  const mean = keepSubMillisecond ? meanMs : Math.trunc(meanMs);
  const std = keepSubMillisecond ? stdMs : Math.trunc(stdMs);
  if (std <= 0 || mean <= 0) return Math.max(0, mean);
  const sample = mean + std * rng.normal();
  return Math.min(1.7 * mean, Math.max(0.3 * mean, sample));
}
