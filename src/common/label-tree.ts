/**
 * Label sets resolved to series without hashing: nested Maps keyed by label value, one level per label name, as the
 * hot-path metrics (BoundHistogram, BoundCounter, BoundGauge) need. A child handle resolves its series on first use
 * and keeps it, so a caller that holds the handle pays nothing per observation but the arithmetic; a series appears
 * in the exposition only once something was recorded in it, as with prom-client and client_golang.
 */

type Level<S> = Map<string, Level<S> | S>;

export class LabelTree<S> {
  private root: Level<S> = new Map();
  /** Series in creation order (the order prom-client renders them in). */
  series: S[] = [];
  /** Bumped by reset(), so child handles re-resolve instead of writing to a dropped series. */
  generation = 0;

  constructor(
    private readonly labelNames: readonly string[],
    private readonly make: (labels: Record<string, string>) => S,
  ) {}

  get(labels: Readonly<Record<string, string | number>>): S {
    const names = this.labelNames;
    if (names.length === 0) {
      let only = this.root.get('') as S | undefined;
      if (only === undefined) {
        only = this.make({});
        this.series.push(only);
        this.root.set('', only);
      }
      return only;
    }
    let level = this.root;
    for (let d = 0; d < names.length; d++) {
      const v = String(labels[names[d]]);
      let next = level.get(v);
      if (next === undefined) {
        if (d === names.length - 1) {
          const s = this.make(this.labelsOf(labels));
          this.series.push(s);
          next = s;
        } else next = new Map();
        level.set(v, next);
      }
      if (d === names.length - 1) return next as S;
      level = next as Level<S>;
    }
    throw new Error('unreachable');
  }

  private labelsOf(labels: Readonly<Record<string, string | number>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const n of this.labelNames) out[n] = String(labels[n]);
    return out;
  }

  reset(): void {
    this.root = new Map();
    this.series = [];
    this.generation++;
  }
}

/** A series resolved on first use and kept (re-resolved after a reset of its tree). */
export class LazySeries<S> {
  private s: S | undefined;
  private gen = -1;
  constructor(
    private readonly tree: LabelTree<S>,
    private readonly labels: Readonly<Record<string, string>>,
  ) {}

  get(): S {
    if (this.gen !== this.tree.generation) {
      this.s = this.tree.get(this.labels);
      this.gen = this.tree.generation;
    }
    return this.s!;
  }
}
