/**
 * burst-prefix-cache-producer (llm-d-router): the placement of a sealed batch (upstream's documented rules: identical
 * groups whole, maxPerReplica, fair share, minColocateBlocks, token balancing), the window (requests wait for it and are
 * decided together), bad input (a full batch, a client that leaves), parameters, and a real EPP over ext_proc sending a
 * burst of same-prompt requests to one replica that load balancing alone would spread.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, silentLogger } from '../../src/common/index.js';
import { PLUGIN_REGISTRY, endpointFromSpec, loadEndpointPickerConfig, type Endpoint } from '../../src/epp/index.js';
import { UNLIMITED, assignBurst, type BurstEntry } from '../../src/epp/plugins/producer/burst-assign.js';
import { prefixState } from '../../src/epp/prefix/match-state.js';
import { fixtureText } from '../fixtures/upstream-configs/index.js';
import { spec, startTestEpp, storeWith, type TestEpp } from './fixtures.js';
import { body, headers } from './ext-proc-client.js';
import { routeOverExtProc } from './ext-proc-route.js';
import { endpoint } from './plugin-build.js';
import { RequestDirector } from '../../src/epp/director.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';

const pods = (count: number) =>
  Array.from({ length: count }, (_, i) => endpointFromSpec(spec(`pod${i + 1}`, `10.9.0.${i + 1}`)));
const group = (count: number, chain: number[], replicas: Endpoint[]): BurstEntry[] =>
  Array.from({ length: count }, () => ({ keys: [chain], candidates: replicas }));
const name = (entry: BurstEntry) => entry.assigned?.id.slice('default/'.length);
const counts = (es: BurstEntry[]) =>
  es.reduce<Record<string, number>>(
    (tally, entry) => ((tally[name(entry) ?? 'none'] = (tally[name(entry) ?? 'none'] ?? 0) + 1), tally),
    {},
  );

describe('placement of a sealed batch', () => {
  it('an identical group goes whole to one replica (maxPerReplica -1)', () => {
    const g = group(8, [1, 2, 3], pods(4));
    assignBurst(g, UNLIMITED, 0, false);
    expect(counts(g)).toEqual({ pod1: 8 });
  });

  it('maxPerReplica fills one replica before spilling to the next', () => {
    const spread = group(8, [1, 2, 3], pods(4));
    assignBurst(spread, 2, 0, false);
    expect(counts(spread)).toEqual({ pod1: 2, pod2: 2, pod3: 2, pod4: 2 });
    const fill = group(8, [1, 2, 3], pods(4));
    assignBurst(fill, 4, 0, false);
    expect(counts(fill)).toEqual({ pod1: 4, pod2: 4 });
  });

  it('a lone request, or one without blocks, gets no affinity', () => {
    const r = pods(2);
    const single = group(1, [1, 2, 3], r);
    assignBurst(single, UNLIMITED, 0, false);
    expect(single[0].assigned).toBeUndefined();
    const empty: BurstEntry[] = [
      { keys: [], candidates: r },
      { keys: [[]], candidates: r },
    ];
    assignBurst(empty, UNLIMITED, 0, false);
    expect(empty.map(name)).toEqual([undefined, undefined]);
  });

  it('distinct groups go to different, less loaded replicas', () => {
    const r = pods(4);
    const [a, b] = [group(8, [1, 2, 3], r), group(8, [9, 9, 9], r)];
    assignBurst([...a, ...b], UNLIMITED, 0, false);
    expect([counts(a), counts(b)]).toEqual([{ pod1: 8 }, { pod2: 8 }]);
  });

  it('minColocateBlocks: families sharing leading blocks co-locate within the fair share; lone requests attach to them', () => {
    const r = pods(2);
    const [x1, x2, y1, y2] = [
      group(2, [1, 2, 3], r),
      group(2, [1, 2, 4], r),
      group(2, [7, 8, 5], r),
      group(2, [7, 8, 6], r),
    ];
    assignBurst([...x1, ...x2, ...y1, ...y2], UNLIMITED, 2, false);
    expect(name(x1[0])).toBe(name(x2[0]));
    expect(name(y1[0])).toBe(name(y2[0]));
    expect(name(x1[0])).not.toBe(name(y1[0]));
    const [gx, sx, gy, sy, lone] = [
      group(2, [1, 2, 3], r),
      group(1, [1, 2, 8], r),
      group(2, [7, 8, 5], r),
      group(1, [7, 8, 9], r),
      group(1, [5, 5, 5], r),
    ];
    assignBurst([...gx, ...sx, ...gy, ...sy, ...lone], UNLIMITED, 2, false);
    expect([name(sx[0]), name(sy[0])]).toEqual([name(gx[0]), name(gy[0])]);
    expect(counts([...gx, ...sx, ...gy, ...sy])).toEqual({ pod1: 3, pod2: 3 });
    expect(lone[0].assigned).toBeUndefined();
  });

  it('the fair share spreads prefix-sharing units instead of stampeding one replica; below the threshold nothing co-locates', () => {
    const r = pods(4);
    const gs = [1, 2, 3, 4].map((i) => group(2, [1, 2, 2 + i], r));
    assignBurst(gs.flat(), UNLIMITED, 2, false);
    expect(counts(gs.flat())).toEqual({ pod1: 2, pod2: 2, pod3: 2, pod4: 2 });
    const r2 = pods(2);
    const [x1, x2, y1, y2] = [
      group(2, [1, 2, 3], r2),
      group(2, [1, 2, 4], r2),
      group(2, [7, 8, 5], r2),
      group(2, [7, 8, 6], r2),
    ];
    assignBurst([...x1, ...x2, ...y1, ...y2], UNLIMITED, 3, false);
    expect(name(x1[0])).not.toBe(name(x2[0]));
    const singles = [3, 4, 5, 6].map((i) => group(1, [1, 2, i], r2)).flat();
    assignBurst(singles, UNLIMITED, 2, false);
    expect(counts(singles)).toEqual({ pod1: 2, pod2: 2 });
  });

  it('balanceBy tokens keeps a long prefix alone and discounts blocks already placed', () => {
    const r = pods(2);
    let [long, s1, s2] = [group(2, [1, 2, 3, 4], r), group(2, [5], r), group(2, [6], r)];
    assignBurst([...long, ...s1, ...s2], UNLIMITED, 0, false);
    expect(name(long[0])).toBe(name(s2[0]));
    [long, s1, s2] = [group(2, [1, 2, 3, 4], r), group(2, [5], r), group(2, [6], r)];
    assignBurst([...long, ...s1, ...s2], UNLIMITED, 0, true);
    expect(name(long[0])).not.toBe(name(s1[0]));
    expect(name(s1[0])).toBe(name(s2[0]));
    const shared = [10, 11, 12].map((last) => group(2, [1, 2, 3, 4, 5, 6, 7, 8, 9, last], r));
    assignBurst(shared.flat(), UNLIMITED, 9, true);
    expect(new Set(shared.map((unit) => name(unit[0]))).size).toBe(1);
  });

  it('ties on load go to the replica running fewer requests, then by name', () => {
    const r = [endpoint({}, { runningRequests: 5 }), endpoint({}, { runningRequests: 1 })];
    const g = group(3, [4, 2], r);
    assignBurst(g, UNLIMITED, 0, false);
    expect(g.map((entry) => entry.assigned)).toEqual([r[1], r[1], r[1]]);
  });
});

describe('the window', () => {
  const CONFIG = (params = '{windowDurationMs: 50}') => `${LLMD}plugins:
- type: burst-prefix-cache-producer
  parameters: ${params}
- type: prefix-cache-scorer
  parameters: {prefixMatchInfoProducerName: burst-prefix-cache-producer}
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]
`;
  const PROMPT = 'Solve: a train leaves at noon. '.repeat(20);
  const director = (
    config: string,
    store = storeWith([spec('a', '10.0.0.1'), spec('b', '10.0.0.2'), spec('c', '10.0.0.3')]),
  ) => {
    const loaded = loadEndpointPickerConfig(config);
    return { d: new RequestDirector(loaded, store, loaded.metrics, silentLogger()), loaded, store };
  };
  let n = 0;
  const request = (director: RequestDirector, prompt: string) =>
    director.parse(
      `r${++n}`,
      { ':path': '/v1/completions', 'x-request-id': `r${n}` },
      Buffer.from(JSON.stringify({ model: 'm', prompt })),
    ).request;

  it('requests in one window are decided together: a same-prompt burst lands on one replica, its match info full there', async () => {
    const { d, loaded } = director(CONFIG());
    expect(d.waits).toBe(true);
    // No default approx producer is added: the scorer names the burst producer.
    expect([...loaded.plugins.values()].map((plugin) => plugin.type)).not.toContain('approx-prefix-cache-producer');
    const burst = await Promise.all(
      Array.from({ length: 6 }, () => d.scheduleAsync(request(d, PROMPT), undefined, new AbortController().signal)),
    );
    const destinations = new Set(burst.map((scheduled) => scheduled.destination));
    expect(destinations.size).toBe(1);
    const s = prefixState(burst[0].ctx, 'burst-prefix-cache-producer')!;
    expect(s.totalBlocks).toBeGreaterThan(0);
    expect([...s.matched.entries()]).toEqual([[burst[0].result.results.get('default')!.targets[0].id, s.totalBlocks]]);
    // The synchronous entry point refuses a config that must wait.
    expect(() => d.schedule(request(d, PROMPT), undefined)).toThrow(/schedules asynchronously/);
  });

  it('a request alone in its window gets no affinity (all zero): the other scorers decide', async () => {
    const store = storeWith([spec('a', '10.0.0.1'), spec('b', '10.0.0.2')], { a: { waitingQueueSize: 4 } });
    const { d } = director(CONFIG(), store);
    const s = await d.scheduleAsync(request(d, PROMPT), undefined, new AbortController().signal);
    expect(prefixState(s.ctx, 'burst-prefix-cache-producer')!.matched.size).toBe(0);
    expect(s.destination).toBe('10.0.0.2:8000');
  });

  it('a full batch is logged and the request scheduled without burst affinity; a client that leaves stops waiting', async () => {
    const { d } = director(CONFIG('{windowDurationMs: 10000, maxBatchSize: 1}'));
    const first = new AbortController();
    const waiting = d.scheduleAsync(request(d, PROMPT), undefined, first.signal);
    // The batch holds one: the second request does not wait and carries no match info.
    const second = await d.scheduleAsync(request(d, PROMPT), undefined, new AbortController().signal);
    expect(prefixState(second.ctx, 'burst-prefix-cache-producer')).toBeUndefined();
    first.abort();
    await expect(waiting).rejects.toThrow('the request ended while waiting for a data producer');
  });

  it('parameters follow upstream, each error naming the plugin and key', () => {
    const params = PLUGIN_REGISTRY['burst-prefix-cache-producer'].params;
    expect(params.parse({})).toEqual({
      windowDurationMs: 100,
      maxPerReplica: -1,
      blockSizeTokens: 64,
      maxPrefixTokensToMatch: 0,
      minColocateBlocks: 0,
      maxBatchSize: 1000,
      balanceBy: 'requests',
    });
    for (const [p, message] of [
      ['{windowDurationMs: 0}', 'parameter "windowDurationMs": must be > 0'],
      ['{windowDurationMs: 10001}', 'parameter "windowDurationMs": must be <= 10000'],
      ['{windowDurationMs: 2.5}', 'parameter "windowDurationMs": must be an integer'],
      ['{maxPerReplica: 0}', 'parameter "maxPerReplica": must be -1 (unlimited) or >= 1'],
      ['{maxBatchSize: -2}', 'parameter "maxBatchSize": must be -1 (unlimited) or >= 1'],
      ['{blockSizeTokens: 0}', 'parameter "blockSizeTokens": must be > 0'],
      ['{maxPrefixTokensToMatch: 10}', 'parameter "maxPrefixTokensToMatch": must be 0 or >= blockSizeTokens'],
      ['{minColocateBlocks: -1}', 'parameter "minColocateBlocks": must be >= 0'],
      ['{balanceBy: bytes}', 'parameter "balanceBy": must be requests or tokens'],
      ['{window: 5}', 'unknown parameter "window"'],
    ] as const) {
      expect(() => loadEndpointPickerConfig(CONFIG(p)), p).toThrow(ConfigError);
      expect(() => loadEndpointPickerConfig(CONFIG(p)), p).toThrow(
        `plugin "burst-prefix-cache-producer" (type burst-prefix-cache-producer): ${message}`,
      );
    }
  });

  it("the upstream sample's burst pipeline loads: its token-producer prepares requests (vLLM render), the burst producer waits after the producers", () => {
    const c = loadEndpointPickerConfig(
      fixtureText('llm-d-router-ebab687/deploy/config/epp-burst-prefix-cache-config.yaml'),
    );
    expect(c.preparers.map((preparer) => preparer.name)).toEqual(['token-producer']);
    expect(c.asyncProducers.map((producer) => producer.name)).toEqual(['burst-prefix-cache-producer']);
  });
});

describe('over ext_proc', () => {
  let t: TestEpp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('a burst of one prompt goes to one replica; a burst of distinct prompts is spread as before', async () => {
    // The window is long so that, on a loaded machine, the burst still shares one: the test waits it twice.
    const config = `${LLMD}plugins:
- type: burst-prefix-cache-producer
  parameters: {windowDurationMs: 1000}
- type: prefix-cache-scorer
  parameters: {prefixMatchInfoProducerName: burst-prefix-cache-producer}
- type: max-score-picker
dataLayer: {injectDefaults: false}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: prefix-cache-scorer}, {pluginRef: max-score-picker}]
`;
    t = await startTestEpp(config, [
      spec('a', '127.0.0.31', undefined, {}, 8000),
      spec('b', '127.0.0.32', undefined, {}, 8000),
      spec('c', '127.0.0.33', undefined, {}, 8000),
    ]);
    const prompt = 'Group sample prompt for a rollout step. '.repeat(12);
    const same = await Promise.all(
      Array.from({ length: 8 }, () => routeOverExtProc(t!.client, { model: 'm', prompt })),
    );
    expect(new Set(same.map((outcome) => outcome.set.get('x-gateway-destination-endpoint'))).size).toBe(1);
    // Distinct prompts share nothing: no affinity, and max-score-picker breaks the all-zero tie at random.
    const distinct = await Promise.all(
      Array.from({ length: 8 }, (_, i) => routeOverExtProc(t!.client, { model: 'm', prompt: `${i} ${prompt}` })),
    );
    expect(new Set(distinct.map((outcome) => outcome.set.get('x-gateway-destination-endpoint'))).size).toBeGreaterThan(
      1,
    );
  }, 60_000);

  it('asynchronous scheduling keeps Envoy’s order with request trailers, and a stream cancelled while waiting ends cleanly', async () => {
    const config = `${LLMD}plugins:
- {type: burst-prefix-cache-producer, parameters: {windowDurationMs: 200}}
- {type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: burst-prefix-cache-producer}}
dataLayer: {injectDefaults: false}
schedulingProfiles: [{name: default, plugins: [{pluginRef: prefix-cache-scorer}]}]
`;
    t = await startTestEpp(config, [spec('a', '127.0.0.31', undefined, {}, 8000)]);
    // Trailers end the body: the headers response and the body come first, then the trailers answer.
    const call = t.client.open();
    call.send(
      headers({ ':method': 'POST', ':path': '/v1/completions', 'content-type': 'application/json' }),
      body(JSON.stringify({ model: 'm', prompt: 'hi' }), false),
      {
        request_trailers: { trailers: { headers: [] } },
      },
    );
    const got = await call.waitFor(3);
    expect(
      got.map((response) =>
        Object.keys(response).find((k) => k.startsWith('request_') && (response as Record<string, unknown>)[k]),
      ),
    ).toEqual(['request_headers', 'request_body', 'request_trailers']);
    call.end();
    await call.ended;
    // Cancelled during the window: the stream ends, nothing is sent, the EPP keeps serving.
    const gone = t.client.open();
    gone.send(
      headers({ ':method': 'POST', ':path': '/v1/completions', 'content-type': 'application/json' }),
      body(JSON.stringify({ model: 'm', prompt: 'bye' }), true),
    );
    gone.cancel();
    expect((await gone.ended).code).toBe(1);
    expect(gone.responses).toEqual([]);
    expect(
      (await routeOverExtProc(t.client, { model: 'm', prompt: 'still here' })).set.get(
        'x-gateway-destination-endpoint',
      ),
    ).toBe('127.0.0.31:8000');
  }, 60_000);
});
