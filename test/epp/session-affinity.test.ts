/**
 * session-affinity-scorer and session-affinity-filter (llm-d v0.7.1, llm-d-router) and session-id-producer: the
 * encoded x-session-token strategy (strict base64 as Go decodes it, the response header, profileName), the session_id
 * strategy (binding, rebinding only when the bound endpoint is gone, TTL eviction, the pd-router bound), bad input
 * (a token naming a pod that left the pool falls back to normal scoring), parameters, and a real EPP over ext_proc
 * writing the token on the response and honouring it on the next request.
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import {
  PLUGIN_REGISTRY,
  loadEndpointPickerConfig,
  type Endpoint,
  type Filter,
  type PreRequest,
  type ResponseHeaders,
  type Scorer,
  type SchedulingResult,
} from '../../src/epp/index.js';
import { decodeSessionToken, encodeSessionToken } from '../../src/epp/plugins/scorer/session-affinity.js';
import { waitFor } from '../helpers.js';
import { endpointsYaml, harness, spec, startTestEpp, storeWith, type TestEpp } from './fixtures.js';
import { routeOverExtProc } from './ext-proc-route.js';
import { build, context, endpoint } from './plugin-build.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const TOKEN = 'x-session-token';
type Session = Scorer & Filter & PreRequest & ResponseHeaders;

const result = (picks: Record<string, Endpoint>, primary = 'decode'): SchedulingResult => ({
  primaryProfile: primary,
  results: new Map(Object.entries(picks).map(([profile, target]) => [profile, { targets: [target], scored: [] }])),
});
const scores = (scorer: Scorer, cycle: ReturnType<typeof context>, es: Endpoint[]) =>
  Array.from(scorer.score(cycle, es));

describe('encoded_endpoint_header (the default)', () => {
  const [a, b, c] = [endpoint(), endpoint(), endpoint()];

  it('tokens are base64(namespace/name), decoded strictly as Go’s StdEncoding', () => {
    expect(encodeSessionToken('default/d1')).toBe('ZGVmYXVsdC9kMQ==');
    expect(decodeSessionToken('ZGVmYXVsdC9kMQ==')).toBe('default/d1');
    for (const bad of ['ZGVmYXVsdC9kMQ', 'ZGVm*XVsdC9kMQ==', 'ZGVmYXVsdC9kMQ==\n', '', undefined])
      expect(decodeSessionToken(bad), String(bad)).toBeUndefined();
  });

  it('scorer: 1 for the session endpoint, 0 elsewhere; no token, a bad token, or a pod not in the pool → all 0', () => {
    const s = build<Session>('session-affinity-scorer', {});
    expect(scores(s, context({ headers: { [TOKEN]: encodeSessionToken(b.id) } }), [a, b, c])).toEqual([0, 1, 0]);
    expect(scores(s, context(), [a, b, c])).toEqual([0, 0, 0]);
    expect(scores(s, context({ headers: { [TOKEN]: 'not base64!' } }), [a, b, c])).toEqual([0, 0, 0]);
    expect(scores(s, context({ headers: { [TOKEN]: encodeSessionToken('default/gone') } }), [a, b, c])).toEqual([
      0, 0, 0,
    ]);
  });

  it('filter: only the session endpoint when it is a candidate, else every candidate (never empty)', () => {
    const f = build<Session>('session-affinity-filter', {});
    expect(f.filter(context({ headers: { [TOKEN]: encodeSessionToken(c.id) } }), [a, b, c])).toEqual([c]);
    expect(f.filter(context({ headers: { [TOKEN]: encodeSessionToken('default/gone') } }), [a, b, c])).toEqual([
      a,
      b,
      c,
    ]);
    expect(f.filter(context({ headers: { [TOKEN]: '%%%' } }), [a, b])).toEqual([a, b]);
  });

  it("writes the token of the primary pick, or of profileName's pick (nothing when that profile did not run)", () => {
    expect(
      build<Session>('session-affinity-scorer', {}).responseHeaders(context(), result({ decode: a, prefill: b })),
    ).toEqual([[TOKEN, encodeSessionToken(a.id)]]);
    const prefill = build<Session>('session-affinity-scorer', {
      profileName: 'prefill',
      encodedEndpointHeaderConfig: { header: ' X-Session-Token-Prefill ' },
    });
    expect(prefill.responseHeaders(context(), result({ decode: a, prefill: b }))).toEqual([
      ['x-session-token-prefill', encodeSessionToken(b.id)],
    ]);
    expect(prefill.responseHeaders(context(), result({ decode: a }))).toEqual([]);
    expect(
      prefill.score(context({ headers: { 'x-session-token-prefill': encodeSessionToken(b.id) } }), [a, b]),
    ).toEqual([0, 1]);
  });
});

describe('session_id', () => {
  const [a, b, c] = [endpoint(), endpoint(), endpoint()];
  let now = 1_000_000;
  const clock = () => now;
  const req = (id?: string, extra: Record<string, string> = {}) =>
    context({ headers: { ...(id ? { 'x-session-id': id } : {}), ...extra } }, clock);
  /** One request through the plugin: score (or filter) the candidates, then record the pick. */
  const cycle = (
    session: Session,
    id: string | undefined,
    candidates: Endpoint[],
    pick: (scores: number[]) => Endpoint,
  ) => {
    const c = req(id);
    const sc = scores(session, c, candidates);
    session.preRequest(c, result({ decode: pick(sc) }));
    return sc;
  };

  it('an unbound session has no preference and binds to the pick; later requests prefer it; nothing is written', () => {
    const s = build<Session>('session-affinity-scorer', { strategy: 'session_id' });
    expect(cycle(s, 's1', [a, b, c], () => b)).toEqual([0, 0, 0]);
    expect(cycle(s, 's1', [a, b, c], () => b)).toEqual([0, 1, 0]);
    expect(cycle(s, 's2', [a, b, c], () => c)).toEqual([0, 0, 0]);
    expect(scores(s, req('s2'), [a, b, c])).toEqual([0, 0, 1]);
    expect(scores(s, req(), [a, b, c])).toEqual([0, 0, 0]);
    expect(s.responseHeaders(req('s1'), result({ decode: b }))).toEqual([]);
  });

  it('a session moves only when its endpoint is gone; outweighed once, it stays', () => {
    const s = build<Session>('session-affinity-scorer', { strategy: 'session_id' });
    cycle(s, 's', [a, b], () => a);
    // Present but another plugin won this time: the binding stays on a.
    cycle(s, 's', [a, b], () => b);
    expect(scores(s, req('s'), [a, b])).toEqual([1, 0]);
    // a left the pool: no preference, and the session rebinds to where it went.
    expect(cycle(s, 's', [b, c], () => c)).toEqual([0, 0]);
    expect(scores(s, req('s'), [a, b, c])).toEqual([0, 0, 1]);
  });

  it('bindings unused for evictionTtlSeconds are dropped; use refreshes them', () => {
    const s = build<Session>('session-affinity-filter', {
      strategy: 'session_id',
      sessionIdConfig: { evictionTtlSeconds: 60, evictionSweepSeconds: 1 },
    });
    let c = req('s');
    s.filter(c, [a, b]);
    s.preRequest(c, result({ decode: a }));
    now += 50_000;
    expect(s.filter(req('s'), [a, b])).toEqual([a]);
    s.preRequest(req('s'), result({ decode: a }));
    now += 50_000;
    expect(s.filter(req('s'), [a, b])).toEqual([a]);
    now += 61_000;
    c = req('s');
    expect(s.filter(c, [a, b])).toEqual([a, b]);
  });

  it('pd-router bounds the bindings at maxSessions, dropping the least recently used', () => {
    const s = build<Session>('session-affinity-scorer', {
      strategy: 'session_id',
      sessionIdConfig: { maxSessions: 2 },
    });
    cycle(s, 'x', [a, b], () => a);
    cycle(s, 'y', [a, b], () => b);
    cycle(s, 'x', [a, b], () => a);
    cycle(s, 'z', [a, b], () => b);
    expect(scores(s, req('x'), [a, b])).toEqual([1, 0]);
    expect(scores(s, req('y'), [a, b])).toEqual([0, 0]);
    expect(scores(s, req('z'), [a, b])).toEqual([0, 1]);
  });

  it('sources in priority order: headers, and session-id-producer’s attribute (header or cookie)', () => {
    const warnings: string[] = [];
    const producer = build<{ type: string; name: string; produce: (c: ReturnType<typeof context>) => void }>(
      'session-id-producer',
      { cookieName: 'sid' },
      {},
      [],
      'sid-cookie',
    );
    const s = build<Session>(
      'session-affinity-scorer',
      {
        strategy: 'session_id',
        sessionIdConfig: {
          sources: [{ header: 'X-Conversation' }, { attribute: 'SessionIDDataKey', producer: 'sid-cookie' }],
        },
      },
      { 'sid-cookie': producer },
      warnings,
    );
    expect(warnings).toEqual([]);
    const withCookie = () => {
      const ctx = context({ headers: { cookie: 'theme=dark; sid=abc; x=1' } }, clock);
      producer.produce(ctx);
      return ctx;
    };
    let ctx = withCookie();
    s.score(ctx, [a, b]);
    s.preRequest(ctx, result({ decode: b }));
    expect(scores(s, withCookie(), [a, b])).toEqual([0, 1]);
    // The header source comes first.
    ctx = context({ headers: { 'x-conversation': 'conv', cookie: 'sid=abc' } }, clock);
    producer.produce(ctx);
    expect(scores(s, ctx, [a, b])).toEqual([0, 0]);
  });
});

describe('session-id-producer', () => {
  it('publishes a trimmed header value or cookie; exactly one of headerName and cookieName', () => {
    const params = PLUGIN_REGISTRY['session-id-producer'].params;
    expect(params.safeParse({}).success).toBe(false);
    expect(params.safeParse({ headerName: 'a', cookieName: 'b' }).success).toBe(false);
    expect(params.safeParse({ header: 'a' }).success).toBe(false);
    expect(params.parse({ headerName: ' X-Session-Id ' })).toEqual({ headerName: 'x-session-id', cookieName: '' });
  });
});

describe('parameters', () => {
  const load =
    (params: string, profiles = '[{name: decode, plugins: [{pluginRef: s}]}]') =>
    () =>
      loadEndpointPickerConfig(
        `${LLMD}plugins:\n- type: session-affinity-scorer\n  name: s\n  parameters: ${params}\nschedulingProfiles: ${profiles}`,
      );

  it("v0.7.1's scorer (no parameters) and llm-d-router's P/D pair load", () => {
    expect(
      loadEndpointPickerConfig(
        `${LLMD}plugins: [{type: session-affinity-scorer}, {type: decode-filter}]\nschedulingProfiles: [{name: d, plugins: [{pluginRef: decode-filter}, {pluginRef: session-affinity-scorer}]}]`,
      ).warnings,
    ).toEqual([]);
    const pd = `${LLMD}plugins:
- {type: prefill-filter}
- {type: decode-filter}
- {name: session-affinity-decode, type: session-affinity-scorer, parameters: {encodedEndpointHeaderConfig: {header: x-session-token}}}
- {name: session-affinity-prefill, type: session-affinity-scorer, parameters: {profileName: prefill, encodedEndpointHeaderConfig: {header: x-session-token-prefill}}}
- {type: disagg-profile-handler, parameters: {deciders: {prefill: always-disagg-pd-decider}}}
- {type: always-disagg-pd-decider}
schedulingProfiles:
- {name: prefill, plugins: [{pluginRef: prefill-filter}, {pluginRef: session-affinity-prefill}]}
- {name: decode, plugins: [{pluginRef: decode-filter}, {pluginRef: session-affinity-decode}]}
`;
    const h = harness(
      pd,
      storeWith([
        spec('p0', '10.0.0.1', 'prefill'),
        spec('p1', '10.0.0.2', 'prefill'),
        spec('d0', '10.0.0.3', 'decode'),
        spec('d1', '10.0.0.4', 'decode'),
      ]),
    );
    const first = h.route('hi');
    const headers = new Map(h.director.responseHeaders(first));
    const [d, p] = [first.result.results.get('decode')!.targets[0], first.result.results.get('prefill')!.targets[0]];
    expect(headers).toEqual(
      new Map([
        [TOKEN, encodeSessionToken(d.id)],
        ['x-session-token-prefill', encodeSessionToken(p.id)],
      ]),
    );
    // Echoed back, both stages stick, whatever the random tie-break would have chosen.
    for (let i = 0; i < 6; i++) {
      const again = h.route(`hi ${i}`, { headers: Object.fromEntries(headers) });
      expect(again.result.results.get('decode')!.targets[0].id).toBe(d.id);
      expect(again.result.results.get('prefill')!.targets[0].id).toBe(p.id);
    }
  });

  it('bad values fail the load naming the plugin and the key', () => {
    const where = /plugin "s" \(type session-affinity-scorer\)/;
    for (const [params, key] of [
      ['{strategy: sticky}', 'parameter "strategy": must be "encoded_endpoint_header" or "session_id"'],
      [
        '{strategy: session_id, sessionIdConfig: {evictionTtlSeconds: -1}}',
        'parameter "sessionIdConfig.evictionTtlSeconds": must be > 0',
      ],
      [
        '{strategy: session_id, sessionIdConfig: {sources: [{header: a, attribute: b}]}}',
        'parameter "sessionIdConfig.sources.0": exactly one of header or attribute must be set',
      ],
      [
        '{strategy: session_id, sessionIdConfig: {sources: [{}]}}',
        'parameter "sessionIdConfig.sources.0": exactly one of header or attribute must be set',
      ],
      [
        '{encodedEndpointHeaderConfig: {header: "x session"}}',
        'parameter "encodedEndpointHeaderConfig.header": must be an HTTP header name',
      ],
      ['{encodedEndpointHeaderConfig: {name: x}}', 'unknown parameter "encodedEndpointHeaderConfig.name"'],
      ['{sessionHeader: x}', 'unknown parameter "sessionHeader"'],
      ['{profileName: prefil}', 'parameter "profileName": "prefil" is not a scheduling profile (decode)'],
    ] as const) {
      expect(load(params), params).toThrow(ConfigError);
      expect(load(params), params).toThrow(where);
      expect(load(params), params).toThrow(key);
    }
  });

  it('a block for the other strategy, or an attribute nothing publishes, is warned about', () => {
    expect(
      loadEndpointPickerConfig(
        `${LLMD}plugins:\n- {type: session-affinity-filter, name: s, parameters: {sessionIdConfig: {}}}\nschedulingProfiles: [{name: d, plugins: [{pluginRef: s}]}]`,
      ).warnings,
    ).toEqual([
      'plugin "s" (type session-affinity-filter): parameter "sessionIdConfig" has no effect with strategy encoded_endpoint_header',
    ]);
    expect(
      loadEndpointPickerConfig(
        `${LLMD}plugins:\n- {type: session-affinity-filter, name: s, parameters: {strategy: session_id, sessionIdConfig: {sources: [{attribute: agent-identity}]}}}\nschedulingProfiles: [{name: d, plugins: [{pluginRef: s}]}]`,
      ).warnings,
    ).toEqual([
      'plugin "s" (type session-affinity-filter): sessionIdConfig source {attribute: "agent-identity", producer: ""} never matches: only a configured session-id-producer publishes a request attribute (SessionIDDataKey)',
    ]);
  });
});

describe('over ext_proc', () => {
  let t: TestEpp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  const CONFIG = `${LLMD}plugins:
- type: session-affinity-scorer
- type: queue-scorer
- type: max-score-picker
dataLayer: {injectDefaults: false}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: session-affinity-scorer, weight: 2}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]
`;

  it('the token comes back on the response, pins the next request, and a pod that left the pool falls back to normal scoring', async () => {
    const pool = [
      spec('a', '127.0.0.11', undefined, {}, 8000),
      spec('b', '127.0.0.12', undefined, {}, 8000),
      spec('c', '127.0.0.13', undefined, {}, 8000),
    ];
    t = await startTestEpp(CONFIG, pool);
    const store = t.epp.store;
    const queues = (queueSizes: Record<string, number>) => {
      for (const [n, v] of Object.entries(queueSizes)) store.get(`default/${n}`)!.metrics.waitingQueueSize = v;
    };
    queues({ a: 0, b: 5, c: 9 });
    const route = (headers: Record<string, string> = {}) =>
      routeOverExtProc(t!.client, { model: 'm', prompt: 'hi' }, { headers });
    const first = await route();
    expect(first.set.get('x-gateway-destination-endpoint')).toBe('127.0.0.11:8000');
    const token = first.response.get(TOKEN)!;
    expect(decodeSessionToken(token)).toBe('default/a');

    // a is now the busiest; the session still goes there (2 × 1 + 0 beats 1).
    queues({ a: 9, b: 0, c: 5 });
    const sticky = await route({ [TOKEN]: token });
    expect(sticky.set.get('x-gateway-destination-endpoint')).toBe('127.0.0.11:8000');
    expect(sticky.response.get(TOKEN)).toBe(token);
    // The EPP's token replaces one the model server sent (one header, the EPP's value), as upstream's header map.
    const replaced = await routeOverExtProc(
      t.client,
      { model: 'm', prompt: 'hi' },
      { headers: { [TOKEN]: token }, responseHeaders: { [TOKEN]: 'from-the-model-server' } },
    );
    expect(replaced.responseList.filter(([k]) => k.toLowerCase() === TOKEN)).toEqual([[TOKEN, token]]);
    // Garbage in the header is no error: normal scoring.
    expect((await route({ [TOKEN]: '***' })).set.get('x-gateway-destination-endpoint')).toBe('127.0.0.12:8000');

    // a leaves the pool: its token no longer names a candidate; the request is scored normally and gets a new token.
    writeFileSync(t.file, endpointsYaml(pool.slice(1)));
    await waitFor(() => store.size === 2, 30_000, 'a to leave the pool');
    queues({ b: 0, c: 5 });
    const moved = await route({ [TOKEN]: token });
    expect(moved.rejected).toBeUndefined();
    expect(moved.set.get('x-gateway-destination-endpoint')).toBe('127.0.0.12:8000');
    expect(decodeSessionToken(moved.response.get(TOKEN))).toBe('default/b');
  }, 90_000);
});
