/** Each plugin's formula, driven through the registry factories with the same validation the loader applies. */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/index.js';
import {
  EppMetrics,
  PLUGIN_REGISTRY,
  SchedulingContext,
  endpointFromSpec,
  type Endpoint,
  type SchedulingResult,
} from '../../src/epp/index.js';
import type { PluginFactoryContext } from '../../src/epp/plugins/definition.js';
import { prefixStateKey, type PrefixMatchState } from '../../src/epp/prefix/match-state.js';
import { seeded, spec } from './fixtures.js';
import { REQUEST } from './plugin-build.js';

// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the plugin interface it tests
function create<T>(
  type: string,
  params: Record<string, unknown> = {},
  opts: { random?: () => number; producer?: string; warnings?: string[] } = {},
): T {
  const def = PLUGIN_REGISTRY[type];
  const ctx: PluginFactoryContext = {
    type,
    name: type,
    logger: silentLogger(),
    metrics: new EppMetrics(),
    random: opts.random ?? seeded(),
    plugin: (count) => ({ type: 'approx-prefix-cache-producer', name: count }),
    namesProducing: (data) => (data === 'prefix-match' ? [opts.producer ?? 'approx-prefix-cache-producer'] : []),
    typeOf: () => 'approx-prefix-cache-producer',
    kindsOf: () => ['data-producer'],
    warn: (message) => opts.warnings?.push(message),
  };
  return def.create(ctx, def.params.parse(params)) as T;
}

function ep(name: string, metrics: Partial<Endpoint['metrics']> = {}, labels: Record<string, string> = {}): Endpoint {
  const e = endpointFromSpec({ ...spec(name, `10.0.0.${name.charCodeAt(name.length - 1) % 250}`), labels });
  Object.assign(e.metrics, metrics);
  return e;
}

const ctx = () => new SchedulingContext({ ...REQUEST, headers: {} }, silentLogger());

type ScorerT = { score(context: SchedulingContext, items: readonly Endpoint[]): ArrayLike<number> };
const scores = (scorerT: ScorerT, eps: Endpoint[], context = ctx()) =>
  Array.from(scorerT.score(context, eps)).map((value) => Math.round(value * 1e6) / 1e6);

describe('scorers', () => {
  it('queue-scorer: (max − q) / (max − min); all equal → 1', () => {
    const s = create<ScorerT>('queue-scorer');
    expect(
      scores(s, [
        ep('a', { waitingQueueSize: 0 }),
        ep('b', { waitingQueueSize: 5 }),
        ep('c', { waitingQueueSize: 10 }),
      ]),
    ).toEqual([1, 0.5, 0]);
    expect(scores(s, [ep('a', { waitingQueueSize: 3 }), ep('b', { waitingQueueSize: 3 })])).toEqual([1, 1]);
  });

  it('kv-cache-utilization-scorer: 1 − kv', () => {
    expect(
      scores(create('kv-cache-utilization-scorer'), [ep('a', { kvCacheUsage: 0.25 }), ep('b', { kvCacheUsage: 1 })]),
    ).toEqual([0.75, 0]);
  });

  it('load-aware-scorer: q=0 → 0.5, else 0.5 × (1 − min(q, threshold)/threshold)', () => {
    const s = create<ScorerT>('load-aware-scorer', { threshold: 10 });
    expect(
      scores(s, [
        ep('a', { waitingQueueSize: 0 }),
        ep('b', { waitingQueueSize: 5 }),
        ep('c', { waitingQueueSize: 50 }),
      ]),
    ).toEqual([0.5, 0.25, 0]);
    expect(scores(create('load-aware-scorer'), [ep('a', { waitingQueueSize: 64 })])).toEqual([0.25]);
    // Upstream replaces a non-positive threshold by the default 128; pd-router does too, and says so.
    const warnings: string[] = [];
    expect(
      scores(create('load-aware-scorer', { threshold: 0 }, { warnings }), [ep('a', { waitingQueueSize: 64 })]),
    ).toEqual([0.25]);
    expect(warnings).toEqual(['parameter "threshold" 0 is not positive; using the default 128, as upstream']);
    expect(PLUGIN_REGISTRY['load-aware-scorer'].params.safeParse({ threshold: 'high' }).success).toBe(false);
  });

  it('active-request-scorer: idle → 1, busy → (max − n)/max × maxBusyScore; counts end with the request', () => {
    const s = create<
      ScorerT & { preRequest: (...args: any[]) => unknown; responseComplete: (...args: any[]) => unknown }
    >('active-request-scorer', { maxBusyScore: 0.5 });
    const [a, b, c] = [ep('a'), ep('b'), ep('c')];
    const result = (endpoint: Endpoint): SchedulingResult => ({
      primaryProfile: 'd',
      results: new Map([['d', { targets: [endpoint], scored: [] }]]),
    });
    s.preRequest(ctx(), result(a));
    s.preRequest(ctx(), result(a));
    s.preRequest(ctx(), result(b));
    expect(scores(s, [a, b, c])).toEqual([0, 0.25, 1]);
    s.responseComplete(ctx(), result(a));
    s.responseComplete(ctx(), result(a));
    s.responseComplete(ctx(), result(b));
    expect(scores(s, [a, b, c])).toEqual([1, 1, 1]);
    expect(PLUGIN_REGISTRY['active-request-scorer'].params.safeParse({ maxBusyScore: 2 }).success).toBe(false);
  });

  const withPrefix = (matched: Record<string, number>, totalBlocks: number, blockSizeTokens = 64) => {
    const c = ctx();
    const state: PrefixMatchState = {
      blockSizeTokens,
      totalBlocks,
      matched: new Map(Object.entries(matched).map(([k, value]) => [`default/${k}`, value])),
      keys: [],
    };
    c.state.set(prefixStateKey('approx-prefix-cache-producer'), state);
    return c;
  };

  it('prefix-cache-scorer: w × min(1, m×bs/scale)² + (1 − w) × m/total; 0 without info', () => {
    const eps = [ep('a'), ep('b'), ep('c')];
    const c = withPrefix({ a: 4, b: 1 }, 8);
    expect(scores(create('prefix-cache-scorer'), eps, c)).toEqual([0.5, 0.125, 0]);
    // w = 0.5, scale 512: a: 0.5 × min(1, 256/512)² + 0.5 × 0.5 = 0.125 + 0.25
    expect(
      scores(create('prefix-cache-scorer', { matchLengthWeight: 0.5, matchLengthScaleTokens: 512 }), eps, c),
    ).toEqual([0.375, 0.070313, 0]);
    expect(scores(create('prefix-cache-scorer'), eps, ctx())).toEqual([0, 0, 0]);
    expect(scores(create('prefix-cache-scorer'), eps, withPrefix({}, 0))).toEqual([0, 0, 0]);
    expect(PLUGIN_REGISTRY['prefix-cache-scorer'].params.safeParse({ matchLengthWeight: 1.5 }).success).toBe(false);
  });

  it('no-hit-lru-scorer: hot request → all 0.5; cold → never-used first, then least recently used', () => {
    const s = create<ScorerT & { preRequest(context: SchedulingContext, result: SchedulingResult): void }>(
      'no-hit-lru-scorer',
    );
    const [a, b, c, d] = [ep('a'), ep('b'), ep('c'), ep('d')];
    expect(scores(s, [a, b, c, d], withPrefix({ b: 1 }, 4))).toEqual([0.5, 0.5, 0.5, 0.5]);
    const pick = (endpoint: Endpoint, prefill?: Endpoint): SchedulingResult => {
      const results: SchedulingResult['results'] = new Map([['decode', { targets: [endpoint], scored: [] }]]);
      if (prefill) results.set('prefill', { targets: [prefill], scored: [] });
      return { primaryProfile: 'decode', results };
    };
    const cold = () => withPrefix({}, 4);
    expect(scores(s, [a, b, c, d], cold())).toEqual([1, 0.666667, 0.333333, 0]);
    // Cold picks of c, then a (with prefill d): order of use c (oldest), d, a.
    let cc = cold();
    s.score(cc, [a, b, c, d]);
    s.preRequest(cc, pick(c));
    cc = cold();
    s.score(cc, [a, b, c, d]);
    s.preRequest(cc, pick(a, d));
    // never used: b; used oldest first: c, a, d (decode touched before prefill).
    expect(scores(s, [a, b, c, d], cold())).toEqual([0.333333, 1, 0.666667, 0]);
    // A hot request does not move the LRU.
    const hot = withPrefix({ b: 1 }, 4);
    s.score(hot, [a, b, c, d]);
    s.preRequest(hot, pick(b));
    expect(scores(s, [a, b, c, d], cold())).toEqual([0.333333, 1, 0.666667, 0]);
    expect(scores(s, [a], cold())).toEqual([1]);
  });
});

describe('pickers', () => {
  const scored = (xs: Array<[string, number]>) => xs.map(([name, score]) => ({ endpoint: ep(name), score }));
  type PickerT = { pick(context: SchedulingContext, items: ReturnType<typeof scored>): { targets: Endpoint[] } };

  it('max-score-picker: the highest score; ties broken at random; maxNumOfEndpoints', () => {
    const p = create<PickerT>('max-score-picker', {}, { random: seeded(7) });
    expect(
      p
        .pick(
          ctx(),
          scored([
            ['a', 1],
            ['b', 3],
            ['c', 2],
          ]),
        )
        .targets.map((endpoint) => endpoint.name),
    ).toEqual(['b']);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++)
      seen.add(
        p.pick(
          ctx(),
          scored([
            ['a', 2],
            ['b', 2],
            ['c', 1],
          ]),
        ).targets[0].name,
      );
    expect([...seen].sort()).toEqual(['a', 'b']);
    const two = create<PickerT>('max-score-picker', { maxNumOfEndpoints: 2 });
    expect(
      two
        .pick(
          ctx(),
          scored([
            ['a', 1],
            ['b', 3],
            ['c', 2],
          ]),
        )
        .targets.map((endpoint) => endpoint.name),
    ).toEqual(['b', 'c']);
    // Upstream falls back to the default (1) for values <= 0.
    expect(
      create<PickerT>('max-score-picker', { maxNumOfEndpoints: -1 })
        .pick(
          ctx(),
          scored([
            ['a', 1],
            ['b', 3],
          ]),
        )
        .targets.map((endpoint) => endpoint.name),
    ).toEqual(['b']);
    expect(PLUGIN_REGISTRY['max-score-picker'].params.safeParse({ maxNumOfEndpoints: 1.5 }).success).toBe(false);
  });

  it('random-picker: uniform, ignores scores', () => {
    const p = create<PickerT>('random-picker', {}, { random: seeded(3) });
    const counts: Record<string, number> = { a: 0, b: 0 };
    for (let i = 0; i < 2000; i++)
      counts[
        p.pick(
          ctx(),
          scored([
            ['a', 0],
            ['b', 100],
          ]),
        ).targets[0].name
      ]++;
    expect(counts.a).toBeGreaterThan(850);
    expect(counts.b).toBeGreaterThan(850);
  });

  it('weighted-random-picker: proportional to score; zero scores only when all are zero', () => {
    const p = create<PickerT>('weighted-random-picker', {}, { random: seeded(5) });
    const counts: Record<string, number> = { a: 0, b: 0, z: 0 };
    for (let i = 0; i < 4000; i++)
      counts[
        p.pick(
          ctx(),
          scored([
            ['a', 1],
            ['b', 3],
            ['z', 0],
          ]),
        ).targets[0].name
      ]++;
    expect(counts.z).toBe(0);
    expect(counts.b / counts.a).toBeGreaterThan(2.5);
    expect(counts.b / counts.a).toBeLessThan(3.6);
    const all0 = new Set<string>();
    for (let i = 0; i < 100; i++)
      all0.add(
        p.pick(
          ctx(),
          scored([
            ['a', 0],
            ['b', 0],
          ]),
        ).targets[0].name,
      );
    expect(all0.size).toBe(2);
  });
});

describe('filters', () => {
  type FilterT = { filter(context: SchedulingContext, items: readonly Endpoint[]): Endpoint[] };
  const roles = [
    'decode',
    'prefill',
    'prefill-decode',
    'both',
    'encode',
    'encode-prefill',
    'encode-prefill-decode',
    'other',
  ];
  const eps = [...roles.map((text, i) => ep(`r${i}`, {}, { 'llm-d.ai/role': text })), ep('none')];
  const kept = (filterT: FilterT) =>
    filterT.filter(ctx(), eps).map((endpoint) => endpoint.labels['llm-d.ai/role'] ?? '(none)');

  it("role filters keep upstream's role sets; only decode-filter keeps unlabeled pods", () => {
    expect(kept(create('decode-filter'))).toEqual([
      'decode',
      'prefill-decode',
      'both',
      'encode-prefill-decode',
      '(none)',
    ]);
    expect(kept(create('prefill-filter'))).toEqual([
      'prefill',
      'prefill-decode',
      'both',
      'encode-prefill',
      'encode-prefill-decode',
    ]);
    expect(kept(create('encode-filter'))).toEqual(['encode', 'encode-prefill', 'encode-prefill-decode']);
  });

  it('label-selector-filter: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)', () => {
    const f = create<FilterT>('label-selector-filter', {
      matchExpressions: [{ key: 'llm-d.ai/role', operator: 'In', values: ['decode', 'both'] }],
    });
    expect(kept(f)).toEqual(['decode', 'both']);
    expect(kept(create('label-selector-filter', { matchLabels: { 'llm-d.ai/role': 'prefill' } }))).toEqual(['prefill']);
    expect(
      kept(create('label-selector-filter', { matchExpressions: [{ key: 'llm-d.ai/role', operator: 'DoesNotExist' }] })),
    ).toEqual(['(none)']);
    expect(
      kept(
        create('label-selector-filter', {
          matchExpressions: [{ key: 'llm-d.ai/role', operator: 'NotIn', values: roles.slice(1) }],
        }),
      ),
    ).toEqual(['decode', '(none)']);
    expect(
      kept(create('label-selector-filter', { matchExpressions: [{ key: 'llm-d.ai/role', operator: 'Exists' }] })),
    ).toHaveLength(8);
    expect(
      PLUGIN_REGISTRY['label-selector-filter'].params.safeParse({ matchExpressions: [{ key: 'a', operator: 'In' }] })
        .success,
    ).toBe(false);
    expect(
      PLUGIN_REGISTRY['label-selector-filter'].params.safeParse({
        matchExpressions: [{ key: 'a', operator: 'Near', values: ['x'] }],
      }).success,
    ).toBe(false);
  });

  it('by-label (deprecated): validValues plus allowsNoLabel', () => {
    expect(kept(create('by-label', { label: 'llm-d.ai/role', validValues: ['other'], allowsNoLabel: true }))).toEqual([
      'other',
      '(none)',
    ]);
    expect(PLUGIN_REGISTRY['by-label'].params.safeParse({}).success).toBe(false);
  });
});
