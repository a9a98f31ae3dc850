/**
 * Flow control driven by InferenceObjective priorities from the real kube-apiserver: the EPP watches the objectives of
 * its pool, and its flow-control gate orders queued requests by the priority their objective
 * (`x-gateway-inference-objective`) has in the API server. Client → gateway → EPP → a step-engine simulator whose one
 * slot is held by a "blocker" (its hang fault), as test/gateway/flow-control.test.ts does; the test queues requests,
 * waits until the EPP's queue gauges show them (by fairness id and priority), then frees the slot by disconnecting
 * the blocker. With one request in flight at a time the simulator's request log is the dispatch order. Every step
 * synchronises on an event (the watcher's change event, the gauge, the simulator's count), never on time.
 */
import { afterEach, expect, it } from 'vitest';
import { eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import type { SimulatorHandle } from '../../src/sim/index.js';
import { waitFor } from '../helpers.js';
import {
  arrivals as arrivalsAt,
  block as holdPool,
  queued as queuedIn,
  send as sendRequest,
  type Answer,
  type FlowStack,
} from '../flow-control-client.js';
import type { KubeCluster } from './control-plane.js';
import { GAIE_EPP_RULES, freePortOn, inferencePool, nextChange, startSimsOn, until } from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let epp: EppHandle | undefined;
let gateway: GatewayHandle | undefined;
let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await gateway?.close(1_000);
  await epp?.close(1_000);
  await sim?.close(1_000);
  epp = gateway = sim = stack = undefined;
});

const T = 30_000; // bound of each wait for the EPP to catch up with the API server
/** Bound of one request: a loaded 2-core machine may be slow to queue and dispatch. */
const REQUEST_BOUND_MS = 120_000;
const ADDRESS = '127.0.0.81';
const API = 'inference.networking.x-k8s.io/v1alpha2';
const LOW_BAND_MAX = 4;
/** An EndpointPickerConfig whose flow control lets one request in flight at a time; `bands` go under flowControl. */
const flowConfig = (ttl: string, extraPlugins: string[], bands: string[]) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: 1}}
${extraPlugins.map((plugin) => `- ${plugin}\n`).join('')}schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
dataLayer: {injectDefaults: false}
flowControl:
  defaultRequestTTL: ${ttl}
  saturationDetector: {pluginRef: sat}
${bands.map((band) => `  ${band}\n`).join('')}`;
// One request in flight at a time (the simulator could take two), so only flow control holds requests back. The
// negative band (the batch objective) holds LOW_BAND_MAX requests; the TTL is one no loaded machine reaches here.
const CONFIG = flowConfig('600s', [], [`defaultNegativePriorityBand: {maxRequests: ${LOW_BAND_MAX}}`]);
const FAIRNESS_CONFIG = flowConfig(
  '600s',
  ['{name: rr, type: round-robin-fairness-policy}'],
  ['defaultPriorityBand: {fairnessPolicyRef: rr, maxRequests: 1000}'],
);
const TTL_CONFIG = flowConfig('1s', [], []);

type Obj = Record<string, any>;
const objectiveObject = (name: string, priority: number, namespace: string): Obj => ({
  apiVersion: API,
  kind: 'InferenceObjective',
  metadata: { name, namespace },
  spec: { poolRef: { name: 'pool' }, priority },
});

let stack: FlowStack | undefined;
const send = (tag: string, flow: string, objective: string, signal?: AbortSignal): Promise<Answer> =>
  sendRequest(stack!, { tag, flow, objective, signal }, REQUEST_BOUND_MS);
const block = async (): Promise<AbortController> => holdPool(stack!, 1, T);
const queued = (flow: string, priority: number) => queuedIn(epp!, flow, priority);
const arrivals = (prefix: string) => arrivalsAt(sim!, prefix);

/**
 * One pod (a step-engine simulator that could take two sequences) in an InferencePool of a fresh namespace, an EPP
 * with `config` watching it as GAIE's ServiceAccount, the objectives `objectives` (name: priority) applied and seen by
 * the EPP, and the gateway in front.
 */
async function startStack(name: string, config: string, objectives: Record<string, number>): Promise<string> {
  const port = await freePortOn([ADDRESS]);
  [sim] = await startSimsOn([ADDRESS], port, {
    engineModel: 'step',
    maxNumSeqs: 2,
    latencyCalculator: 'constant',
    timeToFirstToken: 5,
    interTokenLatency: 1,
    recordRequests: 1000,
  });
  const ns = await cluster.createNamespace(name);
  await cluster.createServiceAccount(ns, 'epp');
  await cluster.grant(ns, 'epp', 'epp', GAIE_EPP_RULES);
  await cluster.apply(inferencePool('pool', { app: 'vllm' }, [port]), { namespace: ns });
  await cluster.createPod(ns, 'pod-0', { labels: { app: 'vllm' }, ip: ADDRESS });
  const kubeconfig = await cluster.serviceAccountKubeconfig(ns, 'epp');
  const started = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      configText: config,
      poolName: 'pool',
      poolNamespace: ns,
      kubeconfig,
      metricsEndpointAuth: false,
    }),
  );
  epp = started;
  expect(started.config.flowControl.enabled).toBe(true);
  await until(
    started.store,
    'changed',
    () => started.store.size === 1,
    T,
    'the pod discovered',
    () => String(started.store.size),
  );
  const crds = started.crds!;
  await until(
    crds,
    'status',
    () => started.ready(),
    T,
    'the CRDs listed',
    () => JSON.stringify(crds.describe()),
  );
  gateway = await startGateway(
    gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${started.grpcPort}`, eppTls: false }),
  );
  stack = { gatewayUrl: gateway.url, epp: started, sim: sim };
  const names = Object.keys(objectives);
  const applied = names.map((objective) => nextChange(T, crds, `${ns}/${objective}`, 'applied'));
  await cluster.apply(
    names.map((objective) => objectiveObject(objective, objectives[objective], ns)),
    { namespace: ns },
  );
  await Promise.all(applied);
  return ns;
}

/**
 * Holds the pool, queues `lows` requests of the batch objective (fairness id "tenant-batch"), then `highs` of the
 * critical objective (fairness id "tenant-critical") and waits until the EPP holds them under the expected
 * priorities; frees the pool and returns every answer with the dispatch order of the phase's requests.
 */
async function phase(
  name: string,
  counts: { lows: number; highs: number },
  priorities: { batch: number; critical: number },
): Promise<{ answers: Answer[]; order: string[] }> {
  const blocker = await block();
  const low = Array.from({ length: counts.lows }, (_, i) => send(`${name}-batch${i}`, 'tenant-batch', 'batch'));
  const queuedLows = Math.min(counts.lows, LOW_BAND_MAX);
  await waitFor(async () => (await queued('tenant-batch', priorities.batch)) === queuedLows, T, `${name}: lows queued`);
  const high = Array.from({ length: counts.highs }, (_, i) =>
    send(`${name}-critical${i}`, 'tenant-critical', 'critical'),
  );
  await waitFor(
    async () => (await queued('tenant-critical', priorities.critical)) === counts.highs,
    T,
    `${name}: criticals queued under priority ${priorities.critical}`,
  );
  blocker.abort();
  const answers = [...(await Promise.all(high)), ...(await Promise.all(low))];
  return { answers, order: arrivals(`${name}-`) };
}

describeWith(req, 'flow control ordered by InferenceObjective priorities from kube-apiserver', () => {
  it(
    'queued critical requests go before a batch flood; a priority changed in the API server reorders later requests; a deleted objective falls back to 0; the excess is shed with 429 and a reason, and shutdown sheds with 503',
    async () => {
      const ns = await startStack('fc-objectives', CONFIG, { critical: 10, batch: -1 });
      const e = epp!;
      const w = e.crds!;

      // 1. critical (10) before batch (-1); the batch band holds four, the other two are shed at once.
      const first = await phase('p1', { lows: 6, highs: 2 }, { batch: -1, critical: 10 });
      expect(first.order.slice(0, 2).sort()).toEqual(['p1-critical0', 'p1-critical1']);
      expect(first.order).toHaveLength(6);
      const shed = first.answers.filter((answer) => answer.status !== 200);
      expect(shed).toHaveLength(2);
      for (const s of shed) {
        expect(s.tag).toMatch(/^p1-batch/);
        expect([s.status, s.reason]).toEqual([429, 'rejected-saturated']);
        expect(s.body).toMatch(/queue at capacity: priority band -1 is full/);
      }

      // 2. The API server moves critical below batch: later requests of critical wait behind the batch ones.
      const lowered = nextChange(T, w, `${ns}/critical`, 'applied');
      await cluster.apply(objectiveObject('critical', -5, ns), { namespace: ns });
      await lowered;
      const second = await phase('p2', { lows: 2, highs: 2 }, { batch: -1, critical: -5 });
      expect(second.answers.map((answer) => [answer.tag, answer.status])).toEqual([
        ['p2-critical0', 200],
        ['p2-critical1', 200],
        ['p2-batch0', 200],
        ['p2-batch1', 200],
      ]);
      expect(second.order.slice(0, 2).sort()).toEqual(['p2-batch0', 'p2-batch1']);
      expect(second.order.slice(2).sort()).toEqual(['p2-critical0', 'p2-critical1']);

      // 3. Deleted: critical falls back to priority 0, above batch again.
      const removed = nextChange(T, w, `${ns}/critical`, 'removed');
      await cluster.remove(objectiveObject('critical', -5, ns));
      await removed;
      const third = await phase('p3', { lows: 2, highs: 2 }, { batch: -1, critical: 0 });
      expect(third.answers.every((answer) => answer.status === 200)).toBe(true);
      expect(third.order.slice(0, 2).sort()).toEqual(['p3-critical0', 'p3-critical1']);
      expect(third.order.slice(2).sort()).toEqual(['p3-batch0', 'p3-batch1']);

      // 4. Requests still queued when the EPP stops are shed at once with 503 rejected-shutting-down.
      const blocker = await block();
      const waiting = [0, 1].map((i) => send(`p4-batch${i}`, 'tenant-batch', 'batch'));
      await waitFor(async () => (await queued('tenant-batch', -1)) === 2, T, 'p4: two queued');
      const closing = e.close(1_000);
      for (const a of await Promise.all(waiting)) {
        expect([a.status, a.reason]).toEqual([503, 'rejected-shutting-down']);
        expect(a.body).toMatch(/flow controller shutting down/);
      }
      blocker.abort();
      await closing;
      expect(arrivals('p4-')).toEqual([]);
    },
    4 * REQUEST_BOUND_MS,
  );

  it(
    'two fairness ids flooding one objective at 10:1 are dispatched 1:1 under round-robin fairness; none is cut by the gateway',
    async () => {
      // The objective's priority (5) comes from the API server; its band is made from defaultPriorityBand (round robin).
      await startStack('fc-fairness', FAIRNESS_CONFIG, { shared: 5 });
      const blocker = await block();
      const answers: Array<Promise<Answer>> = [];
      for (let i = 0; i < 55; i++)
        answers.push(i % 11 === 10 ? send(`f-b${i}`, 'b', 'shared') : send(`f-a${i}`, 'a', 'shared'));
      await waitFor(
        async () => (await queued('a', 5)) === 50 && (await queued('b', 5)) === 5,
        REQUEST_BOUND_MS,
        'the flood queued under priority 5',
      );
      blocker.abort();
      const done = await Promise.all(answers);
      expect(done.filter((answer) => answer.status !== 200).map((answer) => `${answer.tag}: ${answer.status}`)).toEqual(
        [],
      );
      // While both flows were backlogged (the first 10 dispatches), round robin alternates between them.
      const first10 = arrivals('f-').slice(0, 10);
      expect(first10.filter((tag) => tag.startsWith('f-b'))).toHaveLength(5);
      expect(first10.filter((tag) => tag.startsWith('f-a'))).toHaveLength(5);
    },
    2 * REQUEST_BOUND_MS,
  );

  it(
    'nothing waits beyond its deadline: requests of an objective from the API server are shed at the TTL with 429 rejected-ttl-expired',
    async () => {
      await startStack('fc-ttl', TTL_CONFIG, { batch: -1 });
      const blocker = await block();
      // Each waits from its own enqueue; the blocker holds the pool, so every one reaches its TTL, whenever it arrived.
      const waiting = [0, 1, 2].map((i) => send(`t-w${i}`, 'x', 'batch'));
      for (const answer of await Promise.all(waiting)) {
        expect([answer.status, answer.reason]).toEqual([429, 'rejected-ttl-expired']);
        expect(answer.body).toBe('inference error: ResourceExhausted - request timed out in queue: waited 1000ms');
      }
      expect(arrivals('t-')).toEqual([]);
      expect(await queued('x', -1)).toBe(0);
      blocker.abort();
    },
    2 * REQUEST_BOUND_MS,
  );
});
