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
export function drawLength(d: LengthDistribution, rng: Rng): number {
  let v: number;
  let lo = 1;
  let hi = Number.POSITIVE_INFINITY;
  switch (d.kind) {
    case 'fixed':
      v = d.value;
      break;
    case 'uniform':
      v = rng.int(Math.round(d.min), Math.round(d.max));
      break;
    case 'normal':
      v = d.mean + d.std * rng.normal();
      lo = d.min;
      hi = d.max;
      break;
    case 'lognormal': {
      // Parameters of the underlying normal that give lengths of the requested mean and standard deviation.
      const sigma2 = Math.log(1 + (d.std * d.std) / (d.mean * d.mean));
      const mu = Math.log(d.mean) - sigma2 / 2;
      v = Math.exp(mu + Math.sqrt(sigma2) * rng.normal());
      lo = d.min;
      hi = d.max;
      break;
    }
  }
  return Math.max(1, Math.round(Math.min(hi, Math.max(lo, v))));
}

/** The mean length a distribution produces before clamping (for descriptions and estimates). */
export function nominalMean(d: LengthDistribution): number {
  switch (d.kind) {
    case 'fixed':
      return d.value;
    case 'uniform':
      return (d.min + d.max) / 2;
    case 'normal':
    case 'lognormal':
      return d.mean;
  }
}

/** Largest length a distribution can produce. */
export function maxLength(d: LengthDistribution): number {
  return d.kind === 'fixed' ? d.value : d.max;
}

/** Compact text form, also accepted by `parseLengthDistribution`: 5000, 100-200, normal:1000,200,500,1500, lognormal:... */
export function formatLengthDistribution(d: LengthDistribution): string {
  switch (d.kind) {
    case 'fixed':
      return String(d.value);
    case 'uniform':
      return `${d.min}-${d.max}`;
    case 'normal':
    case 'lognormal':
      return `${d.kind}:${d.mean},${d.std},${d.min},${d.max}`;
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
