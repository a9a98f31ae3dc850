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
  inc(count?: number): void;
}

export interface GaugeChild {
  inc(count?: number): void;
  dec(count?: number): void;
  set(value: number): void;
}

abstract class BoundScalar<L extends string> {
  abstract readonly type: 'counter' | 'gauge';
  readonly name: string;
  readonly help: string;
  protected readonly tree: LabelTree<Series>;

  constructor(config: BoundMetricConfig<L>, readonly aggregator: 'sum') {
    this.name = config.name;
    this.help = config.help;
    this.tree = new LabelTree<Series>(config.labelNames, (labels) => ({ labels, value: 0 }));
    if (config.labelNames.length === 0 && config.zeroBeforeFirst !== false) this.tree.get({});
    for (const r of config.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  protected lazy(labels: Readonly<Record<L, string>>): LazySeries<Series> {
    return new LazySeries(this.tree, { ...labels });
  }

  /** The metric as prom-client's Counter/Gauge get() returns it (what Registry.metrics() renders). */
  async get(): Promise<{ name: string; help: string; type: 'counter' | 'gauge'; aggregator: 'sum'; values: Array<{ value: number; labels: Record<string, string> }> }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.tree.series.map((series) => ({ value: series.value, labels: series.labels })) };
  }
}

function amount(name: string, count: number): number {
  if (!Number.isFinite(count)) throw new TypeError(`${name}: value is not a finite number: ${count}`);
  return count;
}

export class BoundCounter<L extends string = string> extends BoundScalar<L> {
  readonly type = 'counter' as const;

  constructor(config: BoundMetricConfig<L>) {
    super(config, 'sum');
  }

  inc(labels: Readonly<Record<L, string>>, count = 1): void {
    this.add(this.tree.get(labels), count);
  }

  child(labels: Readonly<Record<L, string>>): CounterChild {
    const s = this.lazy(labels);
    return { inc: (count = 1) => this.add(s.get(), count) };
  }

  private add(series: Series, count: number): void {
    if (amount(this.name, count) < 0) throw new Error(`${this.name}: it is not possible to decrease a counter`);
    series.value += count;
  }
}

export class BoundGauge<L extends string = string> extends BoundScalar<L> {
  readonly type = 'gauge' as const;

  constructor(config: BoundMetricConfig<L>) {
    super(config, 'sum');
  }

  set(labels: Readonly<Record<L, string>>, item: number): void {
    this.tree.get(labels).value = amount(this.name, item);
  }

  child(labels: Readonly<Record<L, string>>): GaugeChild {
    const s = this.lazy(labels);
    const name = this.name;
    return {
      inc: (count = 1) => void (s.get().value += amount(name, count)),
      dec: (count = 1) => void (s.get().value -= amount(name, count)),
      set: (item: number) => void (s.get().value = amount(name, item)),
    };
  }
}
