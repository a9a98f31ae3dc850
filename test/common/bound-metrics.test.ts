/** BoundCounter and BoundGauge render exactly as prom-client's Counter and Gauge for the same records. */
import fc from 'fast-check';
import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BoundCounter, BoundGauge } from '../../src/common/index.js';

const CODES = ['OK', 'CANCELLED', 'with "quotes" and \\ and\nnewline', 'ünïcödé'];

const op = fc.record({
  code: fc.constantFrom(...CODES),
  kind: fc.constantFrom('inc', 'dec', 'set', 'child-inc'),
  value: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.double({ min: 0, max: 10, noNaN: true })),
});

async function same(ours: Registry, theirs: Registry): Promise<void> {
  expect(await ours.metrics()).toBe(await theirs.metrics());
  // Through JSON: prom-client starts a series that is first decremented by 0 at -0 (it renders as 0 all the same).
  const json = async (registry: Registry) => JSON.parse(JSON.stringify(await registry.getMetricsAsJSON())) as unknown;
  expect(await json(ours)).toEqual(await json(theirs));
}

describe('BoundCounter / BoundGauge', () => {
  it('a counter renders as prom-client\'s for any increments, through inc() and a child', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const [ours, theirs] = [new Registry(), new Registry()];
        const reference = new Counter({ name: 'x_total', help: 'A counter.', labelNames: ['code'], registers: [theirs] });
        const bound = new BoundCounter({ name: 'x_total', help: 'A counter.', labelNames: ['code'], registers: [ours] });
        for (const o of ops) {
          reference.inc({ code: o.code }, o.value);
          if (o.kind === 'child-inc') bound.child({ code: o.code }).inc(o.value);
          else bound.inc({ code: o.code }, o.value);
        }
        await same(ours, theirs);
      }),
      { numRuns: 100 },
    );
  });

  it('a gauge renders as prom-client\'s for any inc/dec/set', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const [ours, theirs] = [new Registry(), new Registry()];
        const reference = new Gauge({ name: 'x', help: 'A gauge.', labelNames: ['code'], registers: [theirs] });
        const bound = new BoundGauge({ name: 'x', help: 'A gauge.', labelNames: ['code'], registers: [ours] });
        for (const o of ops) {
          const child = bound.child({ code: o.code });
          if (o.kind === 'dec') (reference.dec({ code: o.code }, o.value), child.dec(o.value));
          else if (o.kind === 'set') (reference.set({ code: o.code }, o.value), child.set(o.value));
          else (reference.inc({ code: o.code }, o.value), child.inc(o.value));
        }
        await same(ours, theirs);
      }),
      { numRuns: 100 },
    );
  });

  it('unlabelled: 0 before the first record, as prom-client (or nothing, with zeroBeforeFirst: false)', async () => {
    const [ours, theirs] = [new Registry(), new Registry()];
    new Counter({ name: 'c_total', help: 'c', registers: [theirs] });
    new Gauge({ name: 'g', help: 'g', registers: [theirs] });
    new BoundCounter({ name: 'c_total', help: 'c', labelNames: [], registers: [ours] });
    new BoundGauge({ name: 'g', help: 'g', labelNames: [], registers: [ours] });
    await same(ours, theirs);
    const lazy = new Registry();
    const g = new BoundGauge({ name: 'g', help: 'g', labelNames: [], registers: [lazy], zeroBeforeFirst: false });
    expect(await lazy.metrics()).toBe('# HELP g g\n# TYPE g gauge\n');
    g.child({}).set(3);
    expect(await lazy.metrics()).toBe('# HELP g g\n# TYPE g gauge\ng 3\n');
  });

  it('rejects a counter decrease and values that are not finite numbers, as prom-client does', () => {
    const c = new BoundCounter({ name: 'c_total', help: 'c', labelNames: ['code'], registers: [] });
    expect(() => c.inc({ code: 'OK' }, -1)).toThrow();
    expect(() => c.child({ code: 'OK' }).inc(Number.NaN)).toThrow(TypeError);
    const g = new BoundGauge({ name: 'g', help: 'g', labelNames: ['code'], registers: [] });
    expect(() => g.set({ code: 'OK' }, Number.POSITIVE_INFINITY)).toThrow(TypeError);
  });
});
