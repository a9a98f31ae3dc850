/**
 * One observation, every enabled family: a fan-out over the children (resolved series) of the same measurement in
 * the llm-d and the GAIE family. With one family enabled the child itself is returned, so a single-family EPP pays
 * no indirection; with none, a no-op.
 */
import type { CounterChild, GaugeChild, HistogramChild } from '../../common/index.js';

export const NO_HISTOGRAM: HistogramChild = { observe() {} };
export const NO_COUNTER: CounterChild = { inc() {} };
export const NO_GAUGE: GaugeChild = { inc() {}, dec() {}, set() {} };

export function fanHistogram(child: HistogramChild | undefined, histogramChild: HistogramChild | undefined): HistogramChild {
  if (child && histogramChild) return { observe: (value) => (child.observe(value), histogramChild.observe(value)) };
  return child ?? histogramChild ?? NO_HISTOGRAM;
}

export function fanCounter(counterChild: CounterChild | undefined, child: CounterChild | undefined): CounterChild {
  if (counterChild && child) return { inc: (count) => (counterChild.inc(count), child.inc(count)) };
  return counterChild ?? child ?? NO_COUNTER;
}

export function fanGauge(gaugeChild: GaugeChild | undefined, child: GaugeChild | undefined): GaugeChild {
  if (gaugeChild && child) return { inc: (count) => (gaugeChild.inc(count), child.inc(count)), dec: (count) => (gaugeChild.dec(count), child.dec(count)), set: (value) => (gaugeChild.set(value), child.set(value)) };
  return gaugeChild ?? child ?? NO_GAUGE;
}
