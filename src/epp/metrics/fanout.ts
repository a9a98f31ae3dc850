/**
 * One observation, every enabled family: a fan-out over the children (resolved series) of the same measurement in
 * the llm-d and the GAIE family. With one family enabled the child itself is returned, so a single-family EPP pays
 * no indirection; with none, a no-op.
 */
import type { CounterChild, GaugeChild, HistogramChild } from '../../common/index.js';

export const NO_HISTOGRAM: HistogramChild = { observe() {} };
export const NO_COUNTER: CounterChild = { inc() {} };
export const NO_GAUGE: GaugeChild = { inc() {}, dec() {}, set() {} };

export function fanHistogram(a: HistogramChild | undefined, b: HistogramChild | undefined): HistogramChild {
  if (a && b) return { observe: (v) => (a.observe(v), b.observe(v)) };
  return a ?? b ?? NO_HISTOGRAM;
}

export function fanCounter(a: CounterChild | undefined, b: CounterChild | undefined): CounterChild {
  if (a && b) return { inc: (n) => (a.inc(n), b.inc(n)) };
  return a ?? b ?? NO_COUNTER;
}

export function fanGauge(a: GaugeChild | undefined, b: GaugeChild | undefined): GaugeChild {
  if (a && b) return { inc: (n) => (a.inc(n), b.inc(n)), dec: (n) => (a.dec(n), b.dec(n)), set: (v) => (a.set(v), b.set(v)) };
  return a ?? b ?? NO_GAUGE;
}
