/**
 * The flow-control gate and its policies, driven directly: saturation is a variable the test sets, TTLs run on fake
 * timers. Every assertion is on dispatch order or counts, never on elapsed time.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  FlowControlGate,
  type BandSettings,
  type FlowGateObserver,
  type FlowGateSettings,
  type FlowOutcome,
  type FlowRequest,
} from '../../src/epp/flowcontrol/gate.js';
import {
  ORDERING_POLICIES,
  priorityHoldback,
  sloTtftMs,
  programAwareFairness,
  type ProgramAwareSettings,
  softReflectiveCeiling,
  staticUsageLimit,
  globalStrictFairness,
  roundRobinFairness,
  type QueuedItem,
} from '../../src/epp/flowcontrol/policies.js';
import { InferenceError } from '../../src/epp/framework/errors.js';
import type { Endpoint } from '../../src/epp/framework/types.js';
import {
  concurrencySaturation,
  gateSettings,
  saturationDetector,
  usageLimitPolicy,
  utilizationSaturation,
} from '../../src/epp/flowcontrol/from-config.js';
import { loadEndpointPickerConfig } from '../../src/epp/config/loader.js';

const band = (options: Partial<BandSettings> = {}): BandSettings => ({
  maxRequests: 5000,
  maxBytes: 1e9,
  fairness: 'global-strict-fairness-policy',
  ordering: 'fcfs-ordering-policy',
  ...options,
});

function settings(options: Partial<FlowGateSettings> = {}): FlowGateSettings {
  return {
    bands: new Map(),
    defaultBand: band(),
    defaultNegativeBand: band(),
    maxRequests: 0,
    maxBytes: 0,
    requestTtlMs: 30_000,
    maxFlows: 1024,
    pollIntervalMs: 0,
    ...options,
  };
}

interface Harness {
  gate: FlowControlGate;
  /** Saturation the detector reports; `capacity` makes it in-flight requests / capacity instead. */
  sat: { value: number; capacity?: number };
  dispatched: string[];
  shed: Array<{ id: string; err: InferenceError }>;
  outcomes: Array<[string, FlowOutcome]>;
  queuedGauge: Map<string, number>;
  send(id: string, fairnessId?: string, priority?: number, bytes?: number): 'now' | 'queued' | InferenceError;
}

function harness(settings: FlowGateSettings): Harness {
  const h = {
    sat: { value: 0 },
    dispatched: [] as string[],
    shed: [] as Harness['shed'],
    outcomes: [] as Harness['outcomes'],
    queuedGauge: new Map<string, number>(),
  } as Harness;
  const observer: FlowGateObserver = {
    queued: (flowRequest, delta) =>
      h.queuedGauge.set(
        `${flowRequest.fairnessId}/${flowRequest.priority}`,
        (h.queuedGauge.get(`${flowRequest.fairnessId}/${flowRequest.priority}`) ?? 0) + delta,
      ),
    outcome: (flowRequest, text) => h.outcomes.push([flowRequest.id, text]),
    saturation: () => undefined,
  };
  h.gate = new FlowControlGate(
    settings,
    (inflight) => (h.sat.capacity ? inflight.requests / h.sat.capacity : h.sat.value),
    observer,
  );
  h.send = (id, fairnessId = 'f', priority = 0, bytes = 10) => {
    const req: FlowRequest = { id, fairnessId, priority, bytes, tokens: 1, model: 'm', targetModel: 'm' };
    try {
      const t = h.gate.admit(req, (err) => (err ? h.shed.push({ id, err }) : h.dispatched.push(id)));
      return t ? 'queued' : 'now';
    } catch (e) {
      if (e instanceof InferenceError) return e;
      throw e;
    }
  };
  return h;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('flow-control gate', () => {
  it('lets requests straight through while the pool has room, and queues them once it is saturated', () => {
    const h = harness(settings());
    h.sat.capacity = 2;
    expect(h.send('a')).toBe('now');
    expect(h.send('b')).toBe('now');
    expect(h.send('c')).toBe('queued');
    expect(h.gate.queued).toBe(1);
    h.gate.release({ tokens: 1 });
    expect(h.dispatched).toEqual(['c']);
    expect(h.gate.queued).toBe(0);
    expect(h.gate.inFlight.requests).toBe(2);
    expect(h.outcomes.map(([, outcome]) => outcome)).toEqual(['Dispatched', 'Dispatched', 'Dispatched']);
  });

  it('dispatches higher priority bands first; a new request never overtakes a queued one of its own or a higher band', () => {
    const h = harness(settings());
    h.sat.capacity = 1;
    h.send('run');
    h.send('low1', 'x', -1);
    h.send('high1', 'y', 10);
    h.send('mid1', 'z', 0);
    h.send('high2', 'y', 10);
    for (let i = 0; i < 4; i++) h.gate.release({ tokens: 1 });
    expect(h.dispatched).toEqual(['high1', 'high2', 'mid1', 'low1']);
  });

  it('priority-holdback keeps headroom: the low band stops at its ceiling, the high band uses the rest, and a high band over its ceiling blocks lower ones', () => {
    // Two bands: ceilings 1 (priority 10) and 0.5 (priority -1); four slots.
    const h = harness(
      settings({
        bands: new Map([
          [10, band()],
          [-1, band()],
        ]),
        usageLimit: priorityHoldback({ minCeiling: 0.5, maxCeiling: 1, domain: 'rank' }),
      }),
    );
    h.sat.capacity = 4;
    expect(['low1', 'low2', 'low3', 'low4'].map((id) => h.send(id, 'l', -1))).toEqual([
      'now',
      'now',
      'queued',
      'queued',
    ]);
    // Half the pool stays free for the high band, which goes straight on until the pool is full.
    expect(['high1', 'high2', 'high3'].map((id) => h.send(id, 'h', 10))).toEqual(['now', 'now', 'queued']);
    h.gate.release({ tokens: 1 }); // 3 of 4 in flight: the high band (ceiling 1) may go
    expect(h.dispatched).toEqual(['high3']);
    h.gate.release({ tokens: 1 }); // 3 of 4: the low band (ceiling 0.5) may not
    expect(h.dispatched).toEqual(['high3']);
    h.gate.release({ tokens: 1 }); // 2 of 4: still not
    h.gate.release({ tokens: 1 }); // 1 of 4: one low, then 2 of 4 stops it again
    expect(h.dispatched).toEqual(['high3', 'low3']);
    expect(h.gate.queued).toBe(1);
  });

  it('a static usage limit below 1 is one ceiling for every band; value-domain holdback spaces ceilings by priority', () => {
    const h = harness(settings({ usageLimit: staticUsageLimit(0.5) }));
    h.sat.capacity = 4;
    expect(['a', 'b', 'c'].map((id) => h.send(id, 'f', 10))).toEqual(['now', 'now', 'queued']);
    expect(h.send('d', 'f', -1)).toBe('queued');
    const value = priorityHoldback({ minCeiling: 0.2, maxCeiling: 1, domain: 'value' });
    expect(value(0, [10, 8, 0]).map((ceiling) => ceiling.toFixed(2))).toEqual(['1.00', '0.84', '0.20']);
    expect(value(0, [3])).toEqual([1]);
    const rank = priorityHoldback({ minCeiling: 0.4, maxCeiling: 0.9, domain: 'rank' });
    expect(rank(0, [10, 8, 0]).map((ceiling) => ceiling.toFixed(2))).toEqual(['0.90', '0.65', '0.40']);
  });

  it("soft-reflective-ceiling: upstream's ceilings: 1 − i × sat / (n − 1); open below it, shut at sat >= 1", () => {
    const policy = softReflectiveCeiling();
    // Below every reflective ceiling ([1, 0.85, 0.7] at 0.3): all open, and no tick is spent.
    expect(policy(0.3, [100, 0, -50])).toEqual([1, 1, 1]);
    expect(policy(0.49, [100, -50])).toEqual([1, 1]);
    // Saturated: the highest band keeps 1 (the gate stops it at sat >= 1 anyway), the others 0.
    expect(policy(1, [100, 0, -50])).toEqual([1, 0, 0]);
    expect(policy(1.5, [100, 0, -50])).toEqual([1, 0, 0]);
    // One band: always 1.
    expect(policy(0.9, [7])).toEqual([1]);
    expect(policy(0.9, [])).toEqual([]);
    // Four bands at 0.7: ceilings [1, 0.767, 0.533, 0.3]: band 1 open, bands 2 and 3 gated (open or shut together).
    const four = policy(0.7, [100, 50, 0, -50]);
    expect(four.slice(0, 2)).toEqual([1, 1]);
    expect([
      [1, 1],
      [0, 0],
    ]).toContainEqual(four.slice(2));
  });

  it('soft-reflective-ceiling: a gated band opens on one call in round(sat / (1 − sat)), one tick shared by all bands', () => {
    const pattern = (sat: number, calls: number, policy = softReflectiveCeiling()) =>
      Array.from({ length: calls }, () => policy(sat, [100, -50])[1]);
    expect(pattern(0.7, 6)).toEqual([0, 1, 0, 1, 0, 1]); // period 2
    expect(pattern(0.75, 6)).toEqual([0, 0, 1, 0, 0, 1]); // period 3
    expect(pattern(0.9, 9)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1]); // period 9
    expect(pattern(0.5, 3)).toEqual([1, 1, 1]); // period 1: at its ceiling, yet open
    // Rising saturation with three bands: gated bands always open together, and the lowest is never starved.
    const policy = softReflectiveCeiling();
    for (let i = 0; i < 3; i++) policy(0.6, [100, 0, -50]);
    let open = 0;
    for (let i = 0; i < 100; i++) {
      const [, mid, low] = policy(0.7, [100, 0, -50]);
      expect(mid).toBe(low);
      open += low;
    }
    expect(open).toBe(50);
  });

  it('soft-reflective-ceiling in the gate: at saturation 0.7 the low band dispatches on every other decision, the high band always; below 0.5 all flow', () => {
    const h = harness(
      settings({
        bands: new Map([
          [10, band()],
          [-1, band()],
        ]),
        usageLimit: softReflectiveCeiling(),
      }),
    );
    h.sat.value = 0.7;
    // Decision 1 (tick 1, shut): low1 queues; the others queue behind it without a decision.
    expect(['low1', 'low2', 'low3', 'low4'].map((id) => h.send(id, 'l', -1))).toEqual([
      'queued',
      'queued',
      'queued',
      'queued',
    ]);
    // The high band's ceiling is 1: straight on (decision 2, tick 2).
    expect(h.send('high1', 'h', 10)).toBe('now');
    h.gate.pump(); // tick 3: shut
    expect(h.dispatched).toEqual([]);
    h.gate.pump(); // tick 4: open, low1 goes; tick 5: shut, the cycle stops
    expect(h.dispatched).toEqual(['low1']);
    h.gate.pump(); // tick 6: open; tick 7: shut
    expect(h.dispatched).toEqual(['low1', 'low2']);
    h.sat.value = 1; // every band stops
    h.gate.pump();
    expect(h.send('high2', 'h', 10)).toBe('queued');
    expect(h.dispatched).toEqual(['low1', 'low2']);
    h.sat.value = 0.4; // below every reflective ceiling: everything flows, high first
    h.gate.pump();
    expect(h.dispatched).toEqual(['low1', 'low2', 'high2', 'low3', 'low4']);
  });

  const LAS: ProgramAwareSettings = {
    evictionTtlSeconds: 3600,
    evictionSweepSeconds: 300,
    lasWeightService: 0.8,
    lasWeightHeadWait: 0.2,
    lasHalfLifeSeconds: 60,
  };
  const flow = (id: string, enqueuedAt?: number) => ({
    id,
    head: () => (enqueuedAt === undefined ? undefined : { seq: 0, enqueuedAt, deadline: Infinity }),
  });
  const fcfs = ORDERING_POLICIES['fcfs-ordering-policy'];

  it('program-aware-fairness (las): least attained service first (prompt + 2 × completion tokens), head wait second', () => {
    let t = 1_000_000;
    const policy = programAwareFairness(LAS, () => t);
    const [a, b] = [flow('a', t - 500), flow('b', t - 100)];
    // Equal service: the longer wait wins; all equal: the first flow.
    expect(policy.pick([b, a], fcfs)?.id).toBe('a');
    expect(policy.pick([flow('x', t), flow('y', t)], fcfs)?.id).toBe('x');
    // An empty flow is never picked; none waiting: nothing.
    expect(policy.pick([flow('e'), b], fcfs)?.id).toBe('b');
    expect(policy.pick([flow('e')], fcfs)).toBeUndefined();
    policy.dispatched!('a');
    policy.completed!('a', { promptTokens: 100, completionTokens: 50 });
    expect(policy.service('a')).toBe(200);
    // 0.8 × (1 − 1) + 0.2 × 1 = 0.2 for a, 0.8 × 1 + 0 = 0.8 for b.
    expect(policy.pick([a, b], fcfs)?.id).toBe('b');
    // Decay: half after one half-life.
    t += 60_000;
    expect(policy.service('a')).toBeCloseTo(100, 9);
    // Without usage the request still counts as over, adding nothing.
    policy.completed!('b', undefined);
    expect(policy.service('b')).toBe(0);
    // Head wait alone (lasWeightService 0): the oldest head.
    const waitOnly = programAwareFairness({ ...LAS, lasWeightService: 0, lasWeightHeadWait: 1 }, () => t);
    waitOnly.completed!('b', { promptTokens: 1e6, completionTokens: 0 });
    expect(waitOnly.pick([flow('a', t - 10), flow('b', t - 20)], fcfs)?.id).toBe('b');
    // lasHalfLifeSeconds 0: no decay.
    const noDecay = programAwareFairness({ ...LAS, lasHalfLifeSeconds: 0 }, () => t);
    noDecay.completed!('a', { promptTokens: 7, completionTokens: 0 });
    t += 3_600_000;
    expect(noDecay.service('a')).toBe(7);
  });

  it('program-aware-fairness forgets a program idle for evictionTtlSeconds (checked every evictionSweepSeconds), never one in flight', () => {
    let t = 0;
    const policy = programAwareFairness({ ...LAS, evictionTtlSeconds: 10, evictionSweepSeconds: 5 }, () => t);
    policy.completed!('idle', { promptTokens: 5, completionTokens: 0 });
    policy.dispatched!('busy');
    expect(policy.programs).toBe(2);
    t = 10_000; // idle for exactly the TTL: kept
    policy.pick([], fcfs);
    expect(policy.programs).toBe(2);
    t = 15_001;
    policy.pick([], fcfs);
    expect(policy.programs).toBe(1);
    expect(policy.service('idle')).toBe(0);
    // Off with evictionTtlSeconds 0.
    const keep = programAwareFairness({ ...LAS, evictionTtlSeconds: 0 }, () => t);
    keep.completed!('x', undefined);
    t += 1e9;
    keep.pick([], fcfs);
    expect(keep.programs).toBe(1);
  });

  it("program-aware-fairness reports upstream's gauges: attained service, mean wait per program, Jain's index over the waits", () => {
    let t = 0;
    const seen = { service: new Map<string, number>(), wait: new Map<string, number>(), index: [] as number[] };
    const policy = programAwareFairness({ ...LAS, evictionTtlSeconds: 10, evictionSweepSeconds: 1 }, () => t, {
      attainedService: (id, tokens) => seen.service.set(id, tokens),
      averageWait: (id, ms) => seen.wait.set(id, ms),
      fairnessIndex: (value) => seen.index.push(value),
      forget: (id) => {
        seen.service.delete(id);
        seen.wait.delete(id);
      },
    });
    policy.dispatched!('a', 100);
    policy.dispatched!('a', 300.9); // whole milliseconds, as upstream
    policy.dispatched!('b', 0);
    expect([...seen.wait]).toEqual([
      ['a', 200],
      ['b', 0],
    ]);
    policy.completed!('a', { promptTokens: 3, completionTokens: 1 });
    expect(seen.service.get('a')).toBe(5);
    policy.pick([flow('a', t)], fcfs);
    // Waits 200 and 0: (200)² / (2 × 200²) = 0.5.
    expect(seen.index.at(-1)).toBe(0.5);
    policy.dispatched!('b', 200);
    policy.pick([], fcfs);
    expect(seen.index.at(-1)).toBeCloseTo(0.9, 12); // waits 200 and 100: 300² / (2 × (200² + 100²))
    // Idle past the TTL: forgotten, its series dropped ('b' still has requests in flight).
    t = 20_000;
    policy.completed!('a', undefined);
    policy.completed!('a', undefined);
    t = 40_000;
    policy.pick([], fcfs);
    expect([...seen.wait.keys()]).toEqual(['b']);
  });

  it('program-aware-fairness in the gate: the program that used fewer tokens is served first, fed by release usage', () => {
    const h = harness(
      settings({
        defaultBand: band({ fairness: 'program-aware-fairness', fairnessPolicy: programAwareFairness(LAS) }),
      }),
    );
    h.sat.capacity = 1;
    expect(h.send('run', 'heavy')).toBe('now');
    for (const id of ['a1', 'a2']) h.send(id, 'heavy');
    for (const id of ['b1', 'b2']) h.send(id, 'light');
    // FCFS between flows would serve a1 next; the heavy program's answer used 1000 tokens.
    h.gate.release({ tokens: 1, priority: 0, fairnessId: 'heavy' }, { promptTokens: 1000, completionTokens: 0 });
    h.gate.release({ tokens: 1, priority: 0, fairnessId: 'light' }, { promptTokens: 10, completionTokens: 5 });
    h.gate.release({ tokens: 1, priority: 0, fairnessId: 'light' }, { promptTokens: 10, completionTokens: 5 });
    expect(h.dispatched).toEqual(['b1', 'b2', 'a1']);
  });

  it('slo-deadline-ordering-policy: x-llm-d-slo-ttft-ms (else x-slo-ttft-ms) as upstream parses it', () => {
    const cases: Array<[Record<string, string>, number | undefined]> = [
      [{ 'x-llm-d-slo-ttft-ms': '250' }, 250],
      [{ 'x-llm-d-slo-ttft-ms': ' 250 ' }, 250],
      [{ 'x-llm-d-slo-ttft-ms': '+5' }, 5],
      [{ 'x-llm-d-slo-ttft-ms': '0' }, 0],
      [{ 'x-slo-ttft-ms': '40' }, 40],
      [{ 'x-llm-d-slo-ttft-ms': '10', 'x-slo-ttft-ms': '40' }, 10],
      // The first header present is read, even when empty or bad.
      [{ 'x-llm-d-slo-ttft-ms': '', 'x-slo-ttft-ms': '40' }, undefined],
      [{ 'x-llm-d-slo-ttft-ms': '-1' }, undefined],
      [{ 'x-llm-d-slo-ttft-ms': '1.5' }, undefined],
      [{ 'x-llm-d-slo-ttft-ms': '1e3' }, undefined],
      [{ 'x-llm-d-slo-ttft-ms': 'soon' }, undefined],
      [{ 'x-llm-d-slo-ttft-ms': '9223372036854' }, 9_223_372_036_854],
      [{ 'x-llm-d-slo-ttft-ms': '9223372036855' }, undefined],
      [{}, undefined],
    ];
    for (const [headers, want] of cases) expect(sloTtftMs(headers), JSON.stringify(headers)).toBe(want);
  });

  it('slo-deadline-ordering-policy in the gate: earliest received + SLO first, requests without one last, ties by receipt', () => {
    const h = harness(settings({ defaultBand: band({ ordering: 'slo-deadline-ordering-policy' }) }));
    h.sat.capacity = 1;
    expect(h.send('run')).toBe('now');
    const queue = (id: string, receivedAt: number, slo?: number) =>
      h.gate.admit(
        {
          id,
          fairnessId: 'f',
          priority: 0,
          bytes: 1,
          tokens: 1,
          model: 'm',
          targetModel: 'm',
          receivedAt,
          ...(slo === undefined ? {} : { sloTtftMs: slo }),
        },
        (err) => (err ? h.shed.push({ id, err }) : h.dispatched.push(id)),
      );
    queue('none-early', 1000);
    queue('loose', 1000, 5000); // deadline 6000
    queue('tight', 2000, 100); // deadline 2100
    queue('tie-first', 1500, 600); // deadline 2100 too, received earlier: first of the tie
    queue('none-late', 3000);
    queue('none-earliest', 500);
    for (let i = 0; i < 6; i++) h.gate.release({ tokens: 1 });
    expect(h.dispatched).toEqual(['tie-first', 'tight', 'loose', 'none-earliest', 'none-early', 'none-late']);
    const order = ORDERING_POLICIES['slo-deadline-ordering-policy'];
    // Without receipt or SLO (items built elsewhere): the enqueue time, then arrival order.
    expect(order({ seq: 1, enqueuedAt: 5, deadline: 0 }, { seq: 2, enqueuedAt: 5, deadline: 0 })).toBeLessThan(0);
    expect(order({ seq: 1, enqueuedAt: 9, deadline: 0 }, { seq: 2, enqueuedAt: 5, deadline: 0 })).toBeGreaterThan(0);
  });

  it('round-robin fairness serves two fairness ids flooding at 10:1 one for one', () => {
    const h = harness(settings({ defaultBand: band({ fairness: 'round-robin-fairness-policy' }) }));
    h.sat.capacity = 1;
    h.send('run');
    for (let i = 0; i < 110; i++) h.send(i % 11 === 10 ? `b${i}` : `a${i}`, i % 11 === 10 ? 'b' : 'a');
    for (let i = 0; i < 20; i++) h.gate.release({ tokens: 1 });
    const a = h.dispatched.filter((id) => id.startsWith('a')).length;
    const b = h.dispatched.filter((id) => id.startsWith('b')).length;
    expect([a, b]).toEqual([10, 10]);
    // Strictly alternating, each flow in its own arrival order.
    expect(h.dispatched.slice(0, 4)).toEqual(['a0', 'b10', 'a1', 'b21']);
  });

  it('global-strict fairness serves the band as one FCFS queue (10:1 in, 10:1 out)', () => {
    const h = harness(settings());
    h.sat.capacity = 1;
    h.send('run');
    for (let i = 0; i < 110; i++) h.send(i % 11 === 10 ? `b${i}` : `a${i}`, i % 11 === 10 ? 'b' : 'a');
    for (let i = 0; i < 22; i++) h.gate.release({ tokens: 1 });
    expect(h.dispatched.filter((id) => id.startsWith('b'))).toEqual(['b10', 'b21']);
    expect(h.dispatched[0]).toBe('a0');
  });

  it('a full band sheds with 429 rejected-saturated; so does the global bound in requests and bytes', () => {
    const h = harness(settings({ bands: new Map([[5, band({ maxRequests: 2 })]]), maxBytes: 100 }));
    h.sat.value = 1;
    h.send('p1', 'f', 5);
    h.send('p2', 'f', 5);
    const e = h.send('p3', 'f', 5) as InferenceError;
    expect(e).toBeInstanceOf(InferenceError);
    expect([e.status, e.dropReason]).toEqual([429, 'rejected-saturated']);
    expect(e.message).toMatch(/^queue at capacity: priority band 5 is full \(2 requests, 20 bytes queued\)/);
    const big = h.send('big', 'f', 0, 81) as InferenceError;
    expect([big.status, big.dropReason]).toEqual([429, 'rejected-saturated']);
    expect(big.message).toMatch(/flow control queues are full \(2 requests, 20 bytes queued\)/);
    expect(h.outcomes.filter(([, outcome]) => outcome === 'RejectedCapacity').map(([id]) => id)).toEqual(['p3', 'big']);
  });

  it('bounds the number of flows: a flood of fairness ids is shed with a reason, empty flows are collected', () => {
    const h = harness(settings({ maxFlows: 3 }));
    h.sat.value = 1;
    for (const id of ['a', 'b', 'c']) expect(h.send(id, id)).toBe('queued');
    const e = h.send('d', 'd') as InferenceError;
    expect([e.status, e.dropReason]).toEqual([429, 'rejected-saturated']);
    expect(e.message).toMatch(/too many flows \(3 queues .*the bound is 3\)/);
    // Existing flows still take requests.
    expect(h.send('a2', 'a')).toBe('queued');
    h.sat.value = 0;
    h.gate.pump();
    h.sat.value = 1;
    expect(h.gate.flows).toBe(3);
    expect(h.send('d', 'd')).toBe('queued');
    expect(h.gate.flows).toBe(1);
  });

  it('a request waits no longer than its TTL: then 429 rejected-ttl-expired, and it leaves the queue', () => {
    vi.useFakeTimers();
    const h = harness(settings({ requestTtlMs: 1_000 }));
    h.sat.value = 1;
    h.send('old');
    vi.advanceTimersByTime(600);
    h.send('young');
    vi.advanceTimersByTime(399);
    expect(h.shed).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.shed.map((settings) => [settings.id, settings.err.status, settings.err.dropReason])).toEqual([
      ['old', 429, 'rejected-ttl-expired'],
    ]);
    expect(h.shed[0].err.message).toBe('request timed out in queue: waited 1000ms');
    expect(h.gate.queued).toBe(1);
    vi.advanceTimersByTime(600);
    expect(h.shed.map((settings) => settings.id)).toEqual(['old', 'young']);
    expect(h.queuedGauge.get('f/0')).toBe(0);
  });

  it('a cancelled request (client gone) leaves its queue without an answer; shutdown sheds the rest with 503', () => {
    const h = harness(settings());
    h.sat.value = 1;
    const req = (id: string): FlowRequest => ({
      id,
      fairnessId: 'f',
      priority: 0,
      bytes: 1,
      tokens: 1,
      model: 'm',
      targetModel: 'm',
    });
    const resumed: string[] = [];
    const t = h.gate.admit(req('gone'), () => resumed.push('gone'))!;
    h.gate.admit(req('stays'), (err) => resumed.push(`stays:${err?.status}:${err?.dropReason}`));
    t.cancel();
    expect(h.gate.queued).toBe(1);
    expect(h.outcomes).toEqual([['gone', 'EvictedContextCancelled']]);
    h.gate.close();
    expect(resumed).toEqual(['stays:503:rejected-shutting-down']);
    expect(() => h.gate.admit(req('late'), () => undefined)).toThrow(/flow controller shutting down/);
  });
});

describe('flow-control policies', () => {
  const item = (seq: number, enqueuedAt: number, deadline = Infinity): QueuedItem => ({ seq, enqueuedAt, deadline });
  it('fcfs orders by enqueue time; edf by deadline (none last), ties by enqueue time', () => {
    const items = [item(0, 10, 500), item(1, 5, Infinity), item(2, 20, 100), item(3, 15, 100)];
    expect([...items].sort(ORDERING_POLICIES['fcfs-ordering-policy']).map((i) => i.seq)).toEqual([1, 0, 3, 2]);
    expect([...items].sort(ORDERING_POLICIES['edf-ordering-policy']).map((i) => i.seq)).toEqual([3, 2, 0, 1]);
  });

  it('global-strict picks the flow with the best head; round-robin cycles over non-empty flows', () => {
    const flows = [
      { id: 'a', items: [item(0, 30)] },
      { id: 'b', items: [] as QueuedItem[] },
      { id: 'c', items: [item(1, 20)] },
    ].map((field) => ({ id: field.id, head: () => field.items[0] }));
    const fcfs = ORDERING_POLICIES['fcfs-ordering-policy'];
    expect(globalStrictFairness().pick(flows, fcfs)?.id).toBe('c');
    const rr = roundRobinFairness();
    expect([1, 2, 3, 4].map(() => rr.pick(flows, fcfs)?.id)).toEqual(['a', 'c', 'a', 'c']);
    expect(rr.pick([], fcfs)).toBeUndefined();
  });
});

describe('flow-control settings and saturation detectors', () => {
  const endpoint = (waiting: number, kv: number, updatedAt: number) =>
    // eslint-disable-next-line no-restricted-syntax -- the detectors read only an endpoint's metrics
    ({ metrics: { waitingQueueSize: waiting, kvCacheUsage: kv, updatedAt } }) as unknown as Endpoint;

  it('utilization: mean over endpoints of max(queue ratio, KV ratio), a stale endpoint counting 1, no endpoint 1', () => {
    const t = { queueDepthThreshold: 5, kvCacheUtilThreshold: 0.8, metricsStalenessThresholdMs: 200 };
    const now = () => 1_000;
    expect(utilizationSaturation(t, () => [], now)({ requests: 0, tokens: 0 })).toBe(1);
    expect(
      utilizationSaturation(t, () => [endpoint(5, 0.4, 900), endpoint(0, 0.4, 900)], now)({ requests: 0, tokens: 0 }),
    ).toBeCloseTo((1 + 0.5) / 2);
    expect(
      utilizationSaturation(t, () => [endpoint(0, 0, 700), endpoint(0, 0.8, 1_000)], now)({ requests: 0, tokens: 0 }),
    ).toBe(1);
  });

  it('concurrency: in-flight requests (or tokens) over the per-endpoint limit times endpoints', () => {
    const two = () => [endpoint(0, 0, 0), endpoint(0, 0, 0)];
    expect(
      concurrencySaturation(
        { maxConcurrency: 4, maxTokenConcurrency: 100, concurrencyMode: 'requests' },
        two,
      )({ requests: 6, tokens: 0 }),
    ).toBe(0.75);
    expect(
      concurrencySaturation(
        { maxConcurrency: 4, maxTokenConcurrency: 100, concurrencyMode: 'tokens' },
        two,
      )({ requests: 6, tokens: 300 }),
    ).toBe(1.5);
    expect(
      concurrencySaturation(
        { maxConcurrency: 4, maxTokenConcurrency: 100, concurrencyMode: 'hybrid' },
        two,
      )({ requests: 8, tokens: 50 }),
    ).toBe(1);
    expect(
      concurrencySaturation({ maxConcurrency: 4, maxTokenConcurrency: 100, concurrencyMode: 'requests' }, () => [])({
        requests: 0,
        tokens: 0,
      }),
    ).toBe(1);
  });

  it('bands, policies and bounds come from the config with GAIE defaults and the pd-router flags where upstream has none', () => {
    const c = loadEndpointPickerConfig(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {name: rr, type: round-robin-fairness-policy}
- {name: pa, type: program-aware-fairness}
- {type: edf-ordering-policy}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: 7}}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
flowControl:
  maxRequests: 50
  saturationDetector: {pluginRef: sat}
  defaultPriorityBand: {fairnessPolicyRef: rr, maxBytes: 1Mi}
  priorityBands: [{priority: 5, orderingPolicyRef: edf-ordering-policy, maxRequests: 3}, {priority: 1, fairnessPolicyRef: pa}, {priority: 2, fairnessPolicyRef: pa}]
`);
    const flags = {
      flowControlRequestTtl: 30_000,
      flowControlBandMaxRequests: 5000,
      flowControlMaxFlows: 1024,
      flowControlPollInterval: 50,
    };
    const s = gateSettings(c.flowControl, flags);
    expect(s.defaultBand).toEqual({
      maxRequests: 5000,
      maxBytes: 1024 * 1024,
      fairness: 'round-robin-fairness-policy',
      ordering: 'fcfs-ordering-policy',
    });
    expect(s.bands.get(5)).toEqual({
      maxRequests: 3,
      maxBytes: 1024 * 1024,
      fairness: 'round-robin-fairness-policy',
      ordering: 'edf-ordering-policy',
    });
    // program-aware-fairness keeps state per program: one instance for the plugin, shared by the bands naming it.
    expect(s.bands.get(1)!.fairness).toBe('program-aware-fairness');
    expect(s.bands.get(1)!.fairnessPolicy).toBeDefined();
    expect(s.bands.get(2)!.fairnessPolicy).toBe(s.bands.get(1)!.fairnessPolicy);
    expect(c.warnings.join('\n')).not.toContain('program-aware');
    expect([s.maxRequests, s.maxBytes, s.requestTtlMs, s.maxFlows]).toEqual([50, 0, 30_000, 1024]);
    expect(saturationDetector(c.flowControl, () => [endpoint(0, 0, 0)])({ requests: 7, tokens: 0 })).toBe(1);
    // No usageLimitPolicyPluginRef: upstream's static policy, ceiling 1.
    expect(s.usageLimit!(0.3, [5, 1, 0])).toEqual([1, 1, 1]);
  });

  it('usageLimitPolicyPluginRef selects the static, priority-holdback or soft-reflective-ceiling policy with its parameters', () => {
    const load = (plugin: string) =>
      loadEndpointPickerConfig(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {name: limit, ${plugin}}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
flowControl: {usageLimitPolicyPluginRef: limit}
`).flowControl;
    expect(usageLimitPolicy(load('type: static-usage-limit-policy, parameters: {threshold: 0.8}'))(0, [1, 0])).toEqual([
      0.8, 0.8,
    ]);
    expect(
      usageLimitPolicy(load('type: priority-holdback-policy, parameters: {minCeiling: 0.4, maxCeiling: 0.9}'))(
        0,
        [10, 0],
      ),
    ).toEqual([0.9, 0.4]);
    // Stateful: at 0.75 (period 3) the low band opens on every third call.
    const soft = usageLimitPolicy(load('type: soft-reflective-ceiling-policy'));
    expect([1, 2, 3].map(() => soft(0.75, [10, 0]))).toEqual([
      [1, 0],
      [1, 0],
      [1, 1],
    ]);
    expect(() => load('type: soft-reflective-ceiling-policy, parameters: {alpha: 1}')).toThrow(
      /plugin "limit" \(type soft-reflective-ceiling-policy\).*"alpha"/,
    );
  });
});
