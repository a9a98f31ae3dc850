/**
 * In-flight eviction (`flowControl.enableEviction`), as llm-d-router's flowcontrol/eviction and reclamation
 * controller: the victim policies, the gate's trigger and pacing driven directly (saturation a variable, a fake
 * clock), then the EPP over ext_proc, the test playing Envoy: a sheddable request in flight is answered 429 evicted
 * when a higher-priority request waits, and the waiting one is routed in its place. Every wait is on a message.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  EvictedError,
  priorityThenTimeEvictionOrder,
  RequestEvictor,
  sheddableEvictionFilter,
  type EvictionItem,
} from '../../src/epp/flowcontrol/eviction.js';
import { evictionSettings, gateSettings } from '../../src/epp/flowcontrol/from-config.js';
import { FlowControlGate, type BandSettings, type FlowGateSettings } from '../../src/epp/flowcontrol/gate.js';
import { loadEndpointPickerConfig } from '../../src/epp/config/loader.js';
import { immediateResponse } from '../../src/epp/extproc/messages.js';
import { startEpp, type EppHandle } from '../../src/epp/index.js';
import { metricValue } from '../helpers.js';
import { loopbackEppConfig, seeded, spec } from './fixtures.js';
import { body, ExtProcTestClient, headers, responseBody, responseHeaders, setHeadersOf } from './ext-proc-client.js';

const item = (requestId: string, priority: number, dispatchedAt: number, seq = 0): EvictionItem => ({
  requestId,
  priority,
  dispatchedAt,
  seq,
  evict: () => undefined,
});

describe('eviction policies', () => {
  it('sheddable-eviction-filter: only priority < 0; priority-then-time: lowest priority first, then the newest', () => {
    expect([-1, -100, 0, 5].map((priority) => sheddableEvictionFilter(item('r', priority, 0)))).toEqual([
      true,
      true,
      false,
      false,
    ]);
    expect(priorityThenTimeEvictionOrder(item('a', -5, 10), item('b', -1, 20))).toBe(true);
    expect(priorityThenTimeEvictionOrder(item('a', -1, 10), item('b', -5, 20))).toBe(false);
    expect(priorityThenTimeEvictionOrder(item('new', -1, 20), item('old', -1, 10))).toBe(true);
    expect(priorityThenTimeEvictionOrder(item('old', -1, 10), item('new', -1, 20))).toBe(false);
    // Same millisecond: the later tracked goes first (upstream's clock has nanoseconds).
    expect(priorityThenTimeEvictionOrder(item('second', -1, 10, 2), item('first', -1, 10, 1))).toBe(true);
  });

  it('evictN stops at the first victim whose priority is not below the bound; an untracked request is never a victim', () => {
    let t = 0;
    const evictor = new RequestEvictor(undefined, undefined, () => t++);
    const evicted: string[] = [];
    const untrack = new Map<string, () => void>();
    for (const [id, p] of [
      ['a', -3],
      ['b', -1],
      ['c', -3],
      ['d', 0],
      ['e', -2],
    ] as const)
      untrack.set(
        id,
        evictor.track(id, p, () => evicted.push(id)),
      );
    expect(evictor.stats()).toEqual({ inFlight: 5, evictable: 4 });
    untrack.get('c')!();
    expect(evictor.evictN(10, -1).map((victim) => victim.requestId)).toEqual(['a', 'e']);
    expect(evicted).toEqual(['a', 'e']);
    expect(evictor.stats()).toEqual({ inFlight: 2, evictable: 1 });
  });
});

const band = (): BandSettings => ({
  maxRequests: 100,
  maxBytes: 1e9,
  fairness: 'global-strict-fairness-policy',
  ordering: 'fcfs-ordering-policy',
});

/** A one-token request of flow `f` at `priority`. */
const flowRequest = (id: string, priority: number) => ({
  id,
  fairnessId: 'f',
  priority,
  bytes: 1,
  tokens: 1,
  model: 'm',
  targetModel: 'm',
});

function gateWith(options: Partial<FlowGateSettings>) {
  const clock = { t: 1_000 };
  const sat = { capacity: 2 };
  const dispatched: string[] = [];
  const evicted: string[] = [];
  const revocations: string[] = [];
  const untrack = new Map<string, () => void>();
  const gate = new FlowControlGate(
    {
      bands: new Map(),
      defaultBand: band(),
      defaultNegativeBand: band(),
      maxRequests: 0,
      maxBytes: 0,
      requestTtlMs: 60_000,
      maxFlows: 100,
      pollIntervalMs: 0,
      eviction: { maxRevocationsPerDecision: 2, confirmationGraceMs: 100, confirmationTimeoutMs: 10_000 },
      ...options,
    },
    (inflight) => inflight.requests / sat.capacity,
    {
      queued: () => undefined,
      outcome: () => undefined,
      saturation: () => undefined,
      eviction: {
        revoked: (id, priority, demand) => revocations.push(`${id}:${priority}<${demand}`),
        confirmed: (id, outcome) => revocations.push(`${id}:${outcome}`),
      },
    },
    () => clock.t,
  );
  /** A dispatched request's stream ends: untracked, its capacity released. */
  const finish = (id: string) => {
    untrack.get(id)?.();
    untrack.delete(id);
    gate.release({ tokens: 1 });
  };
  /** A request that is tracked once dispatched; its eviction ends it at once (as the ext_proc stream does). */
  const send = (id: string, priority: number) => {
    const req = flowRequest(id, priority);
    const start = () => {
      dispatched.push(id);
      untrack.set(
        id,
        gate.track(req, () => {
          evicted.push(id);
          finish(id);
        }),
      );
    };
    if (!gate.admit(req, (err) => (err ? undefined : start()))) start();
  };
  return { gate, clock, sat, dispatched, evicted, revocations, send, finish };
}

describe('eviction in the flow-control gate', () => {
  it('a waiting higher band revokes the newest request of the lowest sheddable priority, and takes its slot', () => {
    const g = gateWith({});
    g.clock.t = 1_000;
    g.send('low-old', -1);
    g.clock.t = 2_000;
    g.send('low-new', -1);
    g.send('high', 0);
    // Saturation 1 = ceiling 1: the deficit is 0, so one revocation (upstream's max(1, ⌈0 / credit⌉)).
    expect(g.evicted).toEqual(['low-new']);
    expect(g.dispatched).toEqual(['low-old', 'low-new', 'high']);
    expect(g.revocations).toEqual(['low-new:-1<0', 'low-new:confirmed']);
    expect(g.gate.queued).toBe(0);
  });

  it('lowest priority goes first however old; nothing below the waiting priority, nothing non-sheddable is evicted', () => {
    const g = gateWith({});
    g.sat.capacity = 3;
    g.send('p-5', -5);
    g.clock.t += 10;
    g.send('p-1', -1);
    g.clock.t += 10;
    g.send('p0', 0);
    g.send('waiting-1', -1);
    // The waiting band (-1) is above the lowest victim (-5, older than p-1): p-5 is revoked for it.
    expect(g.evicted).toEqual(['p-5']);
    expect(g.dispatched.at(-1)).toBe('waiting-1');
    // Now the victims are p-1 and waiting-1 (both -1): a waiting -1 is not above them, nothing is revoked.
    g.clock.t += 1_000;
    g.send('waiting-1b', -1);
    expect(g.evicted).toEqual(['p-5']);
    expect(g.gate.queued).toBe(1);
    // A priority-0 request may revoke a -1 one: the newest, waiting-1.
    g.send('p0b', 0);
    expect(g.evicted).toEqual(['p-5', 'waiting-1']);
    g.finish('p0');
    // The freed slot goes to the higher band first.
    expect(g.dispatched.slice(-2)).toEqual(['p0b', 'waiting-1b']);
  });

  it('no eviction without enableEviction, and none when only non-sheddable requests are in flight', () => {
    const off = gateWith({ eviction: undefined });
    off.send('low', -1);
    off.send('low2', -1);
    off.send('high', 5);
    expect([off.evicted, off.gate.queued]).toEqual([[], 1]);
    const on = gateWith({});
    on.send('a', 0);
    on.send('b', 1);
    on.send('high', 5);
    expect([on.evicted, on.gate.queued]).toEqual([[], 1]);
  });

  it('paces revocations: none while one is unconfirmed, none during the grace after it, then the next', () => {
    const g = gateWith({});
    // Victims that do not end when told to (their streams have not closed yet): confirmation waits.
    const lingering: Array<() => void> = [];
    for (const id of ['s1', 's2']) {
      expect(g.gate.admit(flowRequest(id, -1), () => undefined)).toBeUndefined();
      g.clock.t += 1;
      const untrack = g.gate.track(flowRequest(id, -1), () => {
        g.evicted.push(id);
        lingering.push(() => {
          untrack();
          g.gate.release({ tokens: 1 });
        });
      });
    }
    g.sat.capacity = 1; // saturation 2: deficit 1 at credit 1 → one revocation
    const high = (id: string) => g.gate.admit(flowRequest(id, 3), () => g.dispatched.push(id));
    expect(high('h1')).toBeDefined();
    expect(g.evicted).toEqual(['s2']);
    g.gate.pump();
    expect(g.evicted).toEqual(['s2']); // outstanding
    lingering.shift()!(); // s2's stream ends: confirmed; saturation 1 now, still at the ceiling
    expect(g.revocations).toEqual(['s2:-1<3', 's2:confirmed']);
    g.gate.pump();
    expect(g.evicted).toEqual(['s2']); // cooling
    g.clock.t += 100;
    g.gate.pump();
    expect(g.evicted).toEqual(['s2', 's1']);
    lingering.shift()!();
    expect(g.dispatched).toEqual(['h1']);
  });

  it('an unconfirmed revocation counts as confirmed after the timeout', () => {
    const g = gateWith({
      eviction: { maxRevocationsPerDecision: 1, confirmationGraceMs: 0, confirmationTimeoutMs: 500 },
    });
    for (const id of ['s1', 's2']) {
      g.gate.admit(flowRequest(id, -1), () => undefined);
      g.clock.t += 1;
      g.gate.track(flowRequest(id, -1), () => g.evicted.push(id));
    }
    g.gate.admit(flowRequest('h', 1), () => undefined);
    expect(g.evicted).toEqual(['s2']);
    g.clock.t += 499;
    g.gate.pump();
    expect(g.evicted).toEqual(['s2']);
    g.clock.t += 1;
    g.gate.pump();
    expect(g.evicted).toEqual(['s2', 's1']);
    expect(g.revocations).toContain('s2:timed_out');
  });

  it("the grace follows the detector as upstream's runner derives it; enableEviction reaches the gate settings", () => {
    const yaml = (detector: string) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: random-picker}
- {name: sat, type: ${detector}}
- {type: sheddable-eviction-filter}
- {type: priority-then-time-eviction-order-policy}
flowControl: {enableEviction: true, saturationDetector: {pluginRef: sat}}
`;
    const flags = {
      flowControlRequestTtl: 1,
      flowControlBandMaxRequests: 1,
      flowControlMaxFlows: 1,
      flowControlPollInterval: 1,
      refreshMetricsInterval: 50,
      metricsStalenessThreshold: 2_000,
    };
    const scraped = loadEndpointPickerConfig(yaml('utilization-detector'));
    expect(gateSettings(scraped.flowControl, flags).eviction).toEqual({
      maxRevocationsPerDecision: 2,
      confirmationTimeoutMs: 10_000,
      confirmationGraceMs: 2_300,
    });
    const counted = loadEndpointPickerConfig(yaml('concurrency-detector'));
    expect(evictionSettings(counted.flowControl, flags).confirmationGraceMs).toBe(10);
    expect(
      gateSettings(
        loadEndpointPickerConfig(yaml('concurrency-detector').replace('enableEviction: true, ', '')).flowControl,
        flags,
      ).eviction,
    ).toBeUndefined();
  });

  it("an evicted request's answer: 429, upstream's body verbatim, x-llm-d-request-dropped-reason: evicted", () => {
    const r = immediateResponse(new EvictedError()).immediate_response!;
    expect([
      r.status?.code,
      Buffer.from(r.body!).toString(),
      setHeadersOf(r.headers).map(([key, value]) => [key, value]),
    ]).toEqual(['TooManyRequests', 'request evicted by flow control', [['x-llm-d-request-dropped-reason', 'evicted']]]);
  });
});

describe('eviction through the EPP (ext_proc)', () => {
  let epp: EppHandle | undefined;
  let client: ExtProcTestClient | undefined;
  afterEach(async () => {
    client?.close();
    await epp?.close(1_000);
    epp = client = undefined;
  });

  const PRIORITIES: Record<string, number> = { sheddable: -1, critical: 10, standard: 0 };

  async function start(maxConcurrency: number): Promise<ExtProcTestClient> {
    epp = await startEpp(
      loopbackEppConfig(
        `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: random-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: ${maxConcurrency}}}
flowControl:
  enableEviction: true
  defaultRequestTTL: 600s
  saturationDetector: {pluginRef: sat}
`,
        [spec('pod-a', '127.0.0.1', undefined, {}, 9)],
      ),
      { random: seeded(), requestPolicies: { rewrite: () => undefined, priority: (text) => PRIORITIES[text] ?? 0 } },
    );
    return (client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`));
  }

  const request = (target: ExtProcTestClient, id: string, objective: string) =>
    target.open().send(
      headers({
        ':method': 'POST',
        ':path': '/v1/completions',
        'x-request-id': id,
        'x-gateway-inference-objective': objective,
      }),
      body(JSON.stringify({ model: 'm', prompt: `hello ${id}` }), true),
    );

  it('a sheddable request in flight is answered 429 evicted when a critical one waits; the critical one is routed', async () => {
    const c = await start(1);
    const low = request(c, 'low', 'sheddable');
    const routed = await low.waitFor(2, 10_000);
    expect(routed[0].request_headers).toBeDefined();
    const high = request(c, 'high', 'critical');
    const [, , evicted] = await low.waitFor(3, 10_000);
    expect(evicted.immediate_response?.status?.code).toBe('TooManyRequests');
    expect(Buffer.from(evicted.immediate_response!.body!).toString()).toBe('request evicted by flow control');
    expect(setHeadersOf(evicted.immediate_response!.headers).map(([key, value]) => [key, value])).toEqual([
      ['x-llm-d-request-dropped-reason', 'evicted'],
    ]);
    expect((await low.ended).code).toBe(0);
    const [highHeaders] = await high.waitFor(2, 10_000);
    expect(highHeaders.request_headers).toBeDefined();
    // llm-d-router's revocation counters: one issued for the waiting band, confirmed when the victim's stream ended.
    const text = await epp!.metrics.registry.metrics();
    expect(metricValue(text, 'llm_d_epp_flow_control_revocations_issued_total', { priority: '10' })).toBe(1);
    expect(metricValue(text, 'llm_d_epp_flow_control_revocations_total', { outcome: 'confirmed' })).toBe(1);
    high.end();
  }, 30_000);

  it('a standard request is never evicted: the critical one waits for its answer to end', async () => {
    const c = await start(1);
    const standard = request(c, 'std', 'standard');
    await standard.waitFor(2, 10_000);
    const high = request(c, 'high', 'critical');
    // The standard request's answer completes: only then the critical one is routed, and nothing was evicted.
    standard.send(responseHeaders({ ':status': '200', 'content-type': 'application/json' }), responseBody('{}', true));
    const answered = await standard.waitFor(4, 10_000);
    expect(answered.every((message) => !message.immediate_response)).toBe(true);
    await high.waitFor(2, 10_000);
    high.end();
    standard.end();
  }, 30_000);
});
