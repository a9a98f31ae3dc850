/** BoundHistogram renders exactly as prom-client's Histogram for the same observations (text and JSON). */
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BoundHistogram, LATENCY_BUCKETS_SECONDS } from '../../src/common/index.js';

const MODES = ['disaggregated', 'local', 'with "quotes" and \\ and\nnewline', 'ünïcödé'];
const OUTCOMES = ['ok', 'timeout', 'http_error'];

function pair<L extends string>(labelNames: L[], buckets: number[]) {
  const theirs = new Registry();
  const ours = new Registry();
  const name = 'test_duration_seconds';
  const help = 'A test histogram.';
  return {
    theirs,
    ours,
    reference: new Histogram({ name, help, labelNames, buckets, registers: [theirs] }),
    bound: new BoundHistogram({ name, help, labelNames, buckets, registers: [ours] }),
  };
}

const observation = fc.record({
  mode: fc.constantFrom(...MODES),
  outcome: fc.constantFrom(...OUTCOMES),
  value: fc.oneof(
    fc.double({ min: -1, max: 1000, noNaN: true }),
    fc.constantFrom(...LATENCY_BUCKETS_SECONDS),
    fc.constant(0),
  ),
});

describe('BoundHistogram', () => {
  it('renders the same text and JSON as prom-client for any observations (two labels)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { maxLength: 60 }), async (obs) => {
        const h = pair(['mode', 'outcome'], LATENCY_BUCKETS_SECONDS);
        for (const o of obs) {
          h.reference.observe({ mode: o.mode, outcome: o.outcome }, o.value);
          h.bound.observe({ mode: o.mode, outcome: o.outcome }, o.value);
        }
        expect(await h.ours.metrics()).toBe(await h.theirs.metrics());
        expect(await h.ours.getMetricsAsJSON()).toEqual(await h.theirs.getMetricsAsJSON());
      }),
      { numRuns: 150 },
    );
  });

  it('renders the same as prom-client with one label, and after reset()', async () => {
    const h = pair(['mode'], [0.001, 0.01, 0.1, 1]);
    for (const [i, v] of [0.0005, 0.001, 0.05, 2, 0.1].entries()) {
      h.reference.observe({ mode: MODES[i % 2] }, v);
      h.bound.observe({ mode: MODES[i % 2] }, v);
    }
    expect(await h.ours.metrics()).toBe(await h.theirs.metrics());
    h.reference.reset();
    h.bound.reset();
    expect(await h.ours.metrics()).toBe(await h.theirs.metrics());
    h.reference.observe({ mode: 'local' }, 0.2);
    h.bound.observe({ mode: 'local' }, 0.2);
    expect(await h.ours.metrics()).toBe(await h.theirs.metrics());
  });

  it('rejects a value that is not a finite number, as prom-client does', () => {
    const h = pair(['mode'], [1]);
    expect(() => h.bound.observe({ mode: 'local' }, Number.NaN)).toThrow(TypeError);
    expect(() => h.reference.observe({ mode: 'local' }, Number.NaN)).toThrow(TypeError);
  });
});
