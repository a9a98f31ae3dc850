/**
 * One observation, every enabled family: a fan-out over the children (resolved series) of the same measurement in
 * the llm-d and the GAIE family. With one family enabled the child itself is returned, so a single-family EPP pays
 * no indirection; with none, a no-op.
 */
import type { CounterChild, GaugeChild, HistogramChild } from '../../common/index.js';

export const NO_HISTOGRAM: HistogramChild = { observe() {} };
export const NO_COUNTER: CounterChild = { inc() {} };
export const NO_GAUGE: GaugeChild = { inc() {}, dec() {}, set() {} };

export function fanHistogram(first: HistogramChild | undefined, second: HistogramChild | undefined): HistogramChild {
  if (first && second) {
    return {
      observe: (value) => {
        first.observe(value);
        second.observe(value);
      },
    };
  }
  return first ?? second ?? NO_HISTOGRAM;
}

export function fanCounter(first: CounterChild | undefined, second: CounterChild | undefined): CounterChild {
  if (first && second) {
    return {
      inc: (count) => {
        first.inc(count);
        second.inc(count);
      },
    };
  }
  return first ?? second ?? NO_COUNTER;
}

export function fanGauge(first: GaugeChild | undefined, second: GaugeChild | undefined): GaugeChild {
  if (first && second) {
    return {
      inc: (count) => {
        first.inc(count);
        second.inc(count);
      },
      dec: (count) => {
        first.dec(count);
        second.dec(count);
      },
      set: (value) => {
        first.set(value);
        second.set(value);
      },
    };
  }
  return first ?? second ?? NO_GAUGE;
}
