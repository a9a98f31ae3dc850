/**
 * Flow control end to end: client → gateway → EPP (flowControl gate, concurrency-detector) → a step-engine simulator.
 * The pool's capacity is held by "blocker" requests the simulator never answers (its hang fault); the test then queues
 * a flood, checks what the EPP holds, and frees capacity by disconnecting the blockers (the gateway cancels their
 * ext_proc streams, which releases their slots). Dispatch order is read from the simulator's request log, one request
 * at a time in flight, so the assertions count dispatches, never time. Objective priorities come from a static
 * RequestPolicies (the CRD watcher's job with Kubernetes). The gateway keeps its default --epp-message-timeout, as a
 * user's would: a queued request must be answered by the EPP however long the flood takes on a loaded machine.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/common/index.js';
import { eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { loopbackEppConfig, seeded, spec } from '../epp/fixtures.js';
import { ROOT, metricValue, metricsText, waitFor } from '../helpers.js';
import {
  arrivals as arrivalsAt,
  block as holdPool,
  queued as queuedIn,
  send as sendRequest,
  type Answer,
  type FlowStack,
} from '../flow-control-client.js';

const PRIORITIES: Record<string, number> = { high: 10, low: -1 };

function config(options: { maxConcurrency: number; ttl: string; band: string }): string {
  return `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: ${options.maxConcurrency}}}
- {name: rr, type: round-robin-fairness-policy}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  defaultRequestTTL: ${options.ttl}
  saturationDetector: {pluginRef: sat}
  defaultPriorityBand: {fairnessPolicyRef: rr}
  defaultNegativePriorityBand: {fairnessPolicyRef: rr, ${options.band}}
`;
}

interface Stack extends FlowStack {
  sim: SimulatorHandle;
  epp: EppHandle;
  gateway: GatewayHandle;
  metrics(): Promise<string>;
  close(): Promise<void>;
}

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function startStack(yaml: string): Promise<Stack> {
  // Two sequences at once: twice the one the EPP lets in flight, so only flow control holds requests back.
  const sim = await startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      engineModel: 'step',
      maxNumSeqs: 2,
      latencyCalculator: 'constant',
      timeToFirstToken: 5,
      interTokenLatency: 1,
      recordRequests: 1000,
    }),
  );
  const epp = await startEpp(loopbackEppConfig(yaml, [spec('sim-0', '127.0.0.1', 'decode', {}, sim.port)]), {
    random: seeded(),
    requestPolicies: { rewrite: () => undefined, priority: (text) => PRIORITIES[text] ?? 0 },
  });
  const gateway = await startGateway(
    gatewayConfig({ host: '127.0.0.1', port: 0, eppTls: false, epp: `127.0.0.1:${epp.grpcPort}` }),
  );
  const url = `http://127.0.0.1:${epp.metricsPort}`;
  return {
    sim,
    epp,
    gateway,
    gatewayUrl: gateway.url,
    metrics: () => metricsText(url),
    async close() {
      await gateway.close(1_000);
      await epp.close(1_000);
      await sim.close(1_000);
    },
  };
}

/** Bound of one request: a loaded 2-core machine may take a minute to queue and dispatch a 110-request flood one by one. */
const REQUEST_BOUND_MS = 150_000;

const send = (stack: Stack, tag: string, flow: string, objective = '', signal?: AbortSignal): Promise<Answer> =>
  sendRequest(stack, { tag, flow, objective, signal }, REQUEST_BOUND_MS);
const block = (stack: Stack, count: number) => holdPool(stack, count, 30_000);
const queued = (stack: Stack, flow: string, priority: string) => queuedIn(stack.epp, flow, priority);
const arrivals = (stack: Stack) => arrivalsAt(stack.sim);

describe('flow control through the gateway', () => {
  it(
    'two fairness ids flooding at 10:1 are dispatched 1:1 under round-robin fairness',
    async () => {
      stack = await startStack(config({ maxConcurrency: 1, ttl: '60s', band: 'maxRequests: 1000' }));
      const s = stack;
      const blockers = await block(s, 1);
      const answers: Array<Promise<Answer>> = [];
      for (let i = 0; i < 110; i++) answers.push(i % 11 === 10 ? send(s, `b${i}`, 'b') : send(s, `a${i}`, 'a'));
      await waitFor(
        async () => (await queued(s, 'a', '0')) === 100 && (await queued(s, 'b', '0')) === 10,
        REQUEST_BOUND_MS,
        'the flood queued',
      );
      blockers.abort();
      const done = await Promise.all(answers);
      // Every request waited in its queue until dispatched: none was cut by the gateway (a 500 "no answer from the EPP").
      expect(
        done
          .filter((answer) => answer.status !== 200)
          .map((answer) => `${answer.tag}: ${answer.status} ${answer.body}`),
      ).toEqual([]);
      // While both flows were backlogged (the first 20 dispatches), round robin alternates between them.
      const first20 = arrivals(s).slice(0, 20);
      expect(first20.filter((text) => text.startsWith('b'))).toHaveLength(10);
      expect(first20.filter((text) => text.startsWith('a'))).toHaveLength(10);
      const text = await s.metrics();
      expect(metricValue(text, 'llm_d_epp_flow_control_requests_total', { outcome: 'Dispatched', priority: '0' })).toBe(
        111,
      );
      expect(
        metricValue(text, 'inference_extension_flow_control_queue_size', { fairness_id: 'a', priority: '0' }),
      ).toBe(0);
      expect(
        metricValue(await metricsText(s.gateway.url, '/gateway/metrics'), 'pd_router_gateway_epp_failures_total') ?? 0,
      ).toBe(0);
    },
    2 * REQUEST_BOUND_MS,
  );

  it("the gateway's default EPP message timeout is deploy/envoy.yaml's message_timeout and outlasts the EPP's default queue TTL", () => {
    const envoy = readFileSync(path.join(ROOT, 'deploy/envoy.yaml'), 'utf8');
    const timeouts = [...envoy.matchAll(/message_timeout: (\S+)/g)].map((match) => parseDuration(match[1]));
    expect(timeouts).toHaveLength(1);
    expect(gatewayConfig({}).eppMessageTimeout).toBe(timeouts[0]);
    // A request may wait in a flow-control queue until its TTL; the gateway must not give up on the EPP before that.
    expect(gatewayConfig({}).eppMessageTimeout).toBeGreaterThan(eppConfig({}).flowControlRequestTtl);
  });

  it('a high-priority objective is dispatched before a queued low-priority flood, which is shed with 429 and a reason past its bound', async () => {
    stack = await startStack(config({ maxConcurrency: 1, ttl: '60s', band: 'maxRequests: 6' }));
    const s = stack;
    const blockers = await block(s, 1);
    const low: Array<Promise<Answer>> = [];
    for (let i = 0; i < 10; i++) low.push(send(s, `low${i}`, 'tenant-low', 'low'));
    // Six fit in the low band; four are shed at once.
    const rejectedNow = async () =>
      metricValue(await s.metrics(), 'llm_d_epp_flow_control_requests_total', {
        outcome: 'RejectedCapacity',
        priority: '-1',
      }) ?? 0;
    await waitFor(
      async () => (await queued(s, 'tenant-low', '-1')) === 6 && (await rejectedNow()) === 4,
      30_000,
      'six low requests queued, four shed',
    );
    const high = [0, 1, 2].map((i) => send(s, `high${i}`, 'tenant-high', 'high'));
    await waitFor(async () => (await queued(s, 'tenant-high', '10')) === 3, 30_000, 'three high requests queued');
    blockers.abort();
    const all = [...(await Promise.all(high)), ...(await Promise.all(low))];
    expect(all.filter((answer) => answer.tag.startsWith('high')).map((answer) => answer.status)).toEqual([
      200, 200, 200,
    ]);
    // Which four of the ten were over the bound depends on arrival; exactly four, each 429 rejected-saturated.
    const rejected = all.filter((answer) => answer.status !== 200);
    expect(rejected).toHaveLength(4);
    for (const r of rejected) {
      expect([r.status, r.reason]).toEqual([429, 'rejected-saturated']);
      expect(r.body).toMatch(/queue at capacity: priority band -1 is full/);
    }
    expect(arrivals(s).slice(0, 3).sort()).toEqual(['high0', 'high1', 'high2']);
    expect(arrivals(s)).toHaveLength(9);
  }, 120_000);

  it('priority-holdback-policy keeps headroom: the low band stops at its ceiling, and a high-priority request goes straight to the free slot', async () => {
    // Two slots; ceilings 1 (priority 10) and 0.5 (priority -1): low requests take one slot at most.
    stack = await startStack(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: 2}}
- {name: hold, type: priority-holdback-policy, parameters: {minCeiling: 0.5}}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  defaultRequestTTL: 600s
  saturationDetector: {pluginRef: sat}
  usageLimitPolicyPluginRef: hold
  priorityBands: [{priority: 10}, {priority: -1}]
`);
    const s = stack;
    // The simulator holds the first request that reaches it (the first low one) until the test lets it go.
    let held = 0;
    Object.defineProperty(s.sim.engine.faults, 'hang', {
      configurable: true,
      get: () => ++held <= 1,
      set: () => undefined,
    });
    const first = new AbortController();
    const hung = send(s, 'low0', 'tenant-low', 'low', first.signal).catch((err: unknown) => (err as Error).name);
    await waitFor(() => held >= 1, 30_000, 'the first low request held at the simulator');
    const low = [1, 2].map((i) => send(s, `low${i}`, 'tenant-low', 'low'));
    // With the static ceiling 1.0 the second slot would take low1; the holdback keeps it for higher priorities.
    await waitFor(async () => (await queued(s, 'tenant-low', '-1')) === 2, 30_000, 'two low requests queued');
    const high = await send(s, 'high0', 'tenant-high', 'high');
    expect([high.status, await queued(s, 'tenant-low', '-1')]).toEqual([200, 2]);
    // (A held request is not in the simulator's log.)
    expect(arrivals(s).filter((tag) => tag !== 'low0')).toEqual(['high0']);
    first.abort();
    expect(await hung).toBe('AbortError');
    expect((await Promise.all(low)).map((answer) => [answer.tag, answer.status])).toEqual([
      ['low1', 200],
      ['low2', 200],
    ]);
    const text = await s.metrics();
    expect(metricValue(text, 'llm_d_epp_flow_control_requests_total', { outcome: 'Dispatched', priority: '10' })).toBe(
      1,
    );
    expect(metricValue(text, 'llm_d_epp_flow_control_requests_total', { outcome: 'Dispatched', priority: '-1' })).toBe(
      3,
    );
  }, 120_000);

  it('nothing waits beyond its deadline: queued requests are shed with 429 rejected-ttl-expired', async () => {
    stack = await startStack(config({ maxConcurrency: 1, ttl: '1s', band: 'maxRequests: 100' }));
    const s = stack;
    const blockers = await block(s, 1);
    // Each waits from its own enqueue; the blocker holds the pool, so every one reaches its TTL, whenever it arrived.
    const waiting = [0, 1, 2].map((i) => send(s, `w${i}`, 'x', 'low'));
    for (const a of await Promise.all(waiting)) {
      expect([a.status, a.reason]).toEqual([429, 'rejected-ttl-expired']);
      expect(a.body).toBe('inference error: ResourceExhausted - request timed out in queue: waited 1000ms');
    }
    const text = await s.metrics();
    expect(metricValue(text, 'llm_d_epp_flow_control_requests_total', { outcome: 'EvictedTTL', priority: '-1' })).toBe(
      3,
    );
    // Queue time is recorded per outcome; no TTL eviction is recorded under 1 s.
    expect(
      metricValue(text, 'llm_d_epp_flow_control_request_queue_duration_seconds_bucket', {
        fairness_id: 'x',
        outcome: 'EvictedTTL',
        le: '0.5',
      }),
    ).toBe(0);
    expect(arrivals(s)).toEqual([]);
    blockers.abort();
  }, 120_000);

  it(
    'with an asynchronous producer (burst-prefix-cache window), a request dispatched from its queue is decided, routed and released',
    async () => {
      // The decision waits for the producer's window after flow control lets the request go; each completion must free
      // the slot, or the second queued request would never leave its queue.
      stack = await startStack(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: burst-prefix-cache-producer, parameters: {windowDurationMs: 20}}
- {type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: burst-prefix-cache-producer}}
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: 1}}
schedulingProfiles: [{name: default, plugins: [{pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  defaultRequestTTL: 600s
  saturationDetector: {pluginRef: sat}
`);
      const s = stack;
      expect(s.epp.config.flowControl.enabled).toBe(true);
      const blockers = await block(s, 1);
      const waiting = [0, 1, 2].map((i) => send(s, `q${i}`, 'x'));
      await waitFor(async () => (await queued(s, 'x', '0')) === 3, REQUEST_BOUND_MS, 'three queued');
      blockers.abort();
      expect((await Promise.all(waiting)).map((answer) => [answer.tag, answer.status])).toEqual([
        ['q0', 200],
        ['q1', 200],
        ['q2', 200],
      ]);
      expect([...arrivals(s)].sort()).toEqual(['q0', 'q1', 'q2']);
      expect(
        metricValue(await s.metrics(), 'llm_d_epp_flow_control_requests_total', {
          outcome: 'Dispatched',
          priority: '0',
        }),
      ).toBe(4);
    },
    2 * REQUEST_BOUND_MS,
  );

  it(
    'a disconnect leaves the queue at once; the requests behind it are still served',
    async () => {
      // A TTL no loaded machine reaches here: only the disconnect takes the request out.
      stack = await startStack(config({ maxConcurrency: 1, ttl: '600s', band: 'maxRequests: 100' }));
      const s = stack;
      const blockers = await block(s, 1);
      const gone = new AbortController();
      const leaving = send(s, 'leaver', 'x', 'low', gone.signal).catch((err: unknown) => (err as Error).name);
      await waitFor(async () => (await queued(s, 'x', '-1')) === 1, REQUEST_BOUND_MS, 'the leaver queued');
      const waiting = [0, 1, 2].map((i) => send(s, `w${i}`, 'x', 'low'));
      await waitFor(async () => (await queued(s, 'x', '-1')) === 4, REQUEST_BOUND_MS, 'four queued');
      gone.abort();
      await waitFor(
        async () => (await queued(s, 'x', '-1')) === 3,
        REQUEST_BOUND_MS,
        'the disconnected request left its queue',
      );
      expect(await leaving).toBe('AbortError');
      expect(
        metricValue(await s.metrics(), 'llm_d_epp_flow_control_requests_total', {
          outcome: 'EvictedContextCancelled',
          priority: '-1',
        }),
      ).toBe(1);
      blockers.abort();
      expect((await Promise.all(waiting)).map((answer) => [answer.tag, answer.status])).toEqual([
        ['w0', 200],
        ['w1', 200],
        ['w2', 200],
      ]);
      // The leaver never reached the simulator.
      expect([...arrivals(s)].sort()).toEqual(['w0', 'w1', 'w2']);
      const text = await s.metrics();
      expect(
        metricValue(text, 'llm_d_epp_flow_control_requests_total', { outcome: 'EvictedTTL', priority: '-1' }),
      ).toBeUndefined();
    },
    2 * REQUEST_BOUND_MS,
  );
  it('program-aware-fairness: a program whose answers used tokens waits behind one that has used none, though it queued first', async () => {
    stack = await startStack(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: 1}}
- {name: pa, type: program-aware-fairness}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  defaultRequestTTL: 600s
  saturationDetector: {pluginRef: sat}
  defaultPriorityBand: {fairnessPolicyRef: pa}
`);
    const s = stack;
    // The answer's usage (prompt + 2 × completion tokens) is the heavy program's attained service.
    expect((await send(s, 'warm', 'heavy')).status).toBe(200);
    const blockers = await block(s, 1);
    const heavy = send(s, 'h1', 'heavy');
    await waitFor(async () => (await queued(s, 'heavy', '0')) === 1, 30_000, 'h1 queued');
    const light = send(s, 'l1', 'light');
    await waitFor(async () => (await queued(s, 'light', '0')) === 1, 30_000, 'l1 queued');
    blockers.abort();
    expect((await Promise.all([heavy, light])).map((answer) => answer.status)).toEqual([200, 200]);
    // First come, first served (or global-strict fairness) would send h1 first.
    expect(arrivals(s)).toEqual(['warm', 'l1', 'h1']);
    // llm-d-router's gauges for the plugin: each program's attained service, mean wait, and Jain's index.
    const text = await s.metrics();
    for (const program of ['heavy', 'light']) {
      expect(
        metricValue(text, 'llm_d_epp_program_aware_attained_service_tokens', { program_id: program }),
      ).toBeGreaterThan(0);
      expect(
        metricValue(text, 'llm_d_epp_program_aware_avg_wait_time_milliseconds', { program_id: program }),
      ).toBeDefined();
    }
    const index = metricValue(text, 'llm_d_epp_program_aware_jains_fairness_index')!;
    expect(index > 0 && index <= 1).toBe(true);
  }, 120_000);
});
