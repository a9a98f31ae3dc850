/**
 * Hot-path counters and gauges, the companions of BoundHistogram: a label set is resolved once (nested Maps, no
 * hashing or validation per call), and `child(labels)` hands out the resolved series for callers that record into
 * it repeatedly. They register in a prom-client Registry like any metric and render exactly as prom-client's
 * Counter and Gauge do (tests compare the text and JSON): an unlabelled one starts at 0, a labelled series appears
 * once something was recorded in it.
 */
import type { Registry } from 'prom-client';
import { LabelTree, LazySeries } from './label-tree.js';

interface Series {
  labels: Record<string, string>;
  value: number;
}

export interface BoundMetricConfig<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: readonly Registry[];
  /**
   * An unlabelled metric renders 0 before anything is recorded, as prom-client's do (default); false: only once
   * recorded, as client_golang's vectors without label names.
   */
  zeroBeforeFirst?: boolean;
}

export interface CounterChild {
  inc(n?: number): void;
}

export interface GaugeChild {
  inc(n?: number): void;
  dec(n?: number): void;
  set(v: number): void;
}

abstract class BoundScalar<L extends string> {
  abstract readonly type: 'counter' | 'gauge';
  readonly name: string;
  readonly help: string;
  protected readonly tree: LabelTree<Series>;

  constructor(c: BoundMetricConfig<L>, readonly aggregator: 'sum') {
    this.name = c.name;
    this.help = c.help;
    this.tree = new LabelTree<Series>(c.labelNames, (labels) => ({ labels, value: 0 }));
    if (c.labelNames.length === 0 && c.zeroBeforeFirst !== false) this.tree.get({});
    for (const r of c.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  protected lazy(labels: Readonly<Record<L, string>>): LazySeries<Series> {
    return new LazySeries(this.tree, { ...labels });
  }

  /** The metric as prom-client's Counter/Gauge get() returns it (what Registry.metrics() renders). */
  async get(): Promise<{ name: string; help: string; type: 'counter' | 'gauge'; aggregator: 'sum'; values: Array<{ value: number; labels: Record<string, string> }> }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.tree.series.map((s) => ({ value: s.value, labels: s.labels })) };
  }
}

function amount(name: string, n: number): number {
  if (!Number.isFinite(n)) throw new TypeError(`${name}: value is not a finite number: ${n}`);
  return n;
}

export class BoundCounter<L extends string = string> extends BoundScalar<L> {
  readonly type = 'counter' as const;

  constructor(c: BoundMetricConfig<L>) {
    super(c, 'sum');
  }

  inc(labels: Readonly<Record<L, string>>, n = 1): void {
    this.add(this.tree.get(labels), n);
  }

  child(labels: Readonly<Record<L, string>>): CounterChild {
    const s = this.lazy(labels);
    return { inc: (n = 1) => this.add(s.get(), n) };
  }

  private add(s: Series, n: number): void {
    if (amount(this.name, n) < 0) throw new Error(`${this.name}: it is not possible to decrease a counter`);
    s.value += n;
  }
}

export class BoundGauge<L extends string = string> extends BoundScalar<L> {
  readonly type = 'gauge' as const;

  constructor(c: BoundMetricConfig<L>) {
    super(c, 'sum');
  }

  set(labels: Readonly<Record<L, string>>, v: number): void {
    this.tree.get(labels).value = amount(this.name, v);
  }

  child(labels: Readonly<Record<L, string>>): GaugeChild {
    const s = this.lazy(labels);
    const name = this.name;
    return {
      inc: (n = 1) => void (s.get().value += amount(name, n)),
      dec: (n = 1) => void (s.get().value -= amount(name, n)),
      set: (v: number) => void (s.get().value = amount(name, v)),
    };
  }
}
