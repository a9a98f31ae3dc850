/**
 * Length distributions, drawn from the shared seeded RNG (`src/common/random.ts`). Each concern (lengths, arrivals,
 * prompt words) gets its own stream, so changing the arrival process does not change the prompts of a seed.
 */
import { Rng } from '../common/index.js';
import type { LengthDistribution } from './types.js';

export { Rng };

/**
 * One length from a distribution, rounded to an integer and clamped to [min, max] (as inference-perf clips its normal
 * and lognormal draws) and to at least 1.
 */
export function drawLength(distribution: LengthDistribution, rng: Rng): number {
  let v: number;
  let lo = 1;
  let hi = Number.POSITIVE_INFINITY;
  switch (distribution.kind) {
    case 'fixed':
      v = distribution.value;
      break;
    case 'uniform':
      v = rng.int(Math.round(distribution.min), Math.round(distribution.max));
      break;
    case 'normal':
      v = distribution.mean + distribution.std * rng.normal();
      lo = distribution.min;
      hi = distribution.max;
      break;
    case 'lognormal': {
      // Parameters of the underlying normal that give lengths of the requested mean and standard deviation.
      const sigma2 = Math.log(1 + (distribution.std * distribution.std) / (distribution.mean * distribution.mean));
      const mu = Math.log(distribution.mean) - sigma2 / 2;
      v = Math.exp(mu + Math.sqrt(sigma2) * rng.normal());
      lo = distribution.min;
      hi = distribution.max;
      break;
    }
  }
  return Math.max(1, Math.round(Math.min(hi, Math.max(lo, v))));
}

/** The mean length a distribution produces before clamping (for descriptions and estimates). */
export function nominalMean(distribution: LengthDistribution): number {
  switch (distribution.kind) {
    case 'fixed':
      return distribution.value;
    case 'uniform':
      return (distribution.min + distribution.max) / 2;
    case 'normal':
    case 'lognormal':
      return distribution.mean;
  }
}

/** Largest length a distribution can produce. */
export function maxLength(distribution: LengthDistribution): number {
  return distribution.kind === 'fixed' ? distribution.value : distribution.max;
}

/** Compact text form, also accepted by `parseLengthDistribution`: 5000, 100-200, normal:1000,200,500,1500, lognormal:... */
export function formatLengthDistribution(distribution: LengthDistribution): string {
  switch (distribution.kind) {
    case 'fixed':
      return String(distribution.value);
    case 'uniform':
      return `${distribution.min}-${distribution.max}`;
    case 'normal':
    case 'lognormal':
      return `${distribution.kind}:${distribution.mean},${distribution.std},${distribution.min},${distribution.max}`;
  }
}

export function parseLengthDistribution(text: string): LengthDistribution {
  const s = text.trim();
  let m = /^(\d+)$/.exec(s);
  if (m) return { kind: 'fixed', value: Number(m[1]) };
  m = /^(\d+)\s*-\s*(\d+)$/.exec(s);
  if (m) {
    const min = Number(m[1]);
    const max = Number(m[2]);
    if (min > max) throw new Error(`uniform range ${s}: min exceeds max`);
    return { kind: 'uniform', min, max };
  }
  m = /^(normal|lognormal):\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*(\d+)\s*,\s*(\d+)$/.exec(s);
  if (m) {
    const [mean, std, min, max] = [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])];
    if (min > max) throw new Error(`${s}: min exceeds max`);
    if (m[1] === 'lognormal' && mean <= 0) throw new Error(`${s}: a lognormal mean must be positive`);
    return { kind: m[1] as 'normal' | 'lognormal', mean, std, min, max };
  }
  throw new Error(`"${text}" is not a length distribution (expected N, MIN-MAX, normal:MEAN,STD,MIN,MAX or lognormal:MEAN,STD,MIN,MAX)`);
}
