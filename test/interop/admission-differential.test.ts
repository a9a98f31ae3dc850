/**
 * Admission and flow-control plugins of llm-d-router's sample configs, side by side with llm-d-router ebab687's own
 * EPP: both load the same upstream config file, unchanged, watch the same InferencePool and InferenceObjectives on
 * a kube-apiserver (objectives `sheddable` at priority -1 and `critical` at 10, named by
 * `x-gateway-inference-objective`), and answer the same requests over ext_proc, the test playing Envoy. ebab687 watches
 * InferenceObjectives only in its own group (llm-d.ai/v1alpha2), which the shared control plane does not serve, and
 * pd-router prefers that group once it is served: installing its CRDs there would change what every later file's EPPs
 * watch, so this file starts its own control plane (GAIE v1.5.0 CRDs plus llm-d-router's llm-d.ai ones). The pool is one
 * pod, a pd-router simulator that runs one sequence at a time with a ten-minute time to first token: requests sent to
 * it directly wait in its queue, which both EPPs scrape from its /metrics. Each phase starts when both EPPs report the
 * queue it needs (their per-endpoint queue gauges), so saturation is the same for both, never a matter of time.
 *
 * Where the plugins' outcomes are random or timing-dependent, only the deterministic states are compared:
 * - probabilistic-admitter (probabilistic-admitter-epp-config.yaml): refuses a sheddable request with probability
 *   min(saturation^5 × 300, 1). At saturation 0 (queue 0, nothing running: KV usage 0) that is 0, at queue 2 of the
 *   threshold 5 (saturation 0.4) it is 1; both are compared, with the refusal's status and body. In between the
 *   outcome is a coin toss on each EPP's own random source, so it is not compared.
 * - soft-reflective-ceiling-policy (soft-reflective-ceiling-epp-config.yaml): ceilings 1 − i × saturation / (n − 1).
 *   At saturation 0 every band dispatches at once; at saturation >= 1 (queue 6 of 5) every band, the highest
 *   included, holds its requests in the queue (both EPPs' queue gauges show them, neither answers), and once the
 *   queue drains both route them. Between 0.5 and 1 a gated band opens on one dispatch cycle in
 *   round(saturation / (1 − saturation)): which request goes on which cycle depends on each EPP's dispatch ticks
 *   (upstream's processor loops on its own schedule, pd-router's gate on events and its poll), so it is not compared.
 * - enableEviction (a config of our own: upstream's default detector and usage limit): a sheddable request in flight
 *   (routed at saturation 0, its response never started) and, at saturation 1.2, a critical request waiting: both
 *   EPPs revoke the sheddable one (deficit 0.2 at credit 1.2: one revocation) with the same immediate response, and
 *   route the critical one once the queue drains. The victim order and the pacing between revocations are checked in
 *   pd-router's own tests (test/epp/flow-control-eviction.test.ts): ordering several victims here would need several
 *   revocation decisions, each gated on the previous one's confirmation grace, a matter of each EPP's clock.
 * - utilization-detector: both configs' saturation detector (the first neutered by its thresholds, as upstream's
 *   comment says; the second upstream's default).
 * Not compared here, and why:
 * - program-aware-fairness (sim-program-aware-config.yaml) and slo-deadline-ordering-policy: their outcome is the order
 *   in which queued requests are dispatched. With the scraped utilization-detector every queued request is dispatched
 *   in the same cycle once saturation falls, so the order reaches Envoy only as the order of concurrent gRPC answers,
 *   which neither EPP promises. A one-slot pool (concurrency-detector, maxConcurrency 1) would make it observable, but
 *   ebab687 counts a dispatched request in flight only in its PreRequest hook, on the request's own goroutine, while
 *   its processor starts the next dispatch cycle at once: a freed slot may let two queued requests through, so which
 *   one goes first is not deterministic there either. Their choices are checked in pd-router's own tests
 *   (test/epp/flow-control-gate.test.ts, test/gateway/flow-control.test.ts).
 * - soft-reflective-ceiling between saturation 0.5 and 1, and probabilistic-admitter between its two certain states,
 *   as said above.
 */
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import {
  ExtProcTestClient,
  body,
  headers,
  responseBody,
  responseHeaders,
  setHeadersOf,
} from '../epp/ext-proc-client.js';
import { envoyStatusNumber } from '../../src/common/envoy/ext-proc.js';
import { holdCompletions, metricsText } from '../helpers.js';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { GAIE_EPP_RULES, freePortOn, inferencePool } from './kube-fixtures.js';
import { startUpstreamEpp, upstreamFile } from './llm-d.js';
import { describeWith, need, pathOf } from './need.js';
import { PeerSet, startPdRouterEpp } from './pd-router-peers.js';

const req = await need('etcd', 'kube-apiserver', 'gaie-v1.5.0', 'llm-d-router-ebab687-src', 'llm-d-router-ebab687-epp');

let cluster: ControlPlane | undefined;
beforeAll(async () => {
  if (!req.ok) return;
  cluster = await startControlPlane({ crds: ['gaie-v1.5.0'] });
  // llm-d-router's own CRDs (InferenceObjective, InferenceModelRewrite in llm-d.ai/v1alpha2), served before any EPP
  // starts, so both EPPs choose that group.
  const dir = path.join(pathOf(req, 'llm-d-router-ebab687-src'), 'config/crd/bases');
  const crds = readdirSync(dir)
    .filter((file) => file.endsWith('.yaml'))
    .flatMap((file) => parseAllDocuments(readFileSync(path.join(dir, file), 'utf8')).map((doc) => doc.toJSON()))
    .filter((obj: { kind?: string } | null) => obj?.kind === 'CustomResourceDefinition');
  await cluster.apply(crds);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await cluster.request('GET', '/apis/llm-d.ai/v1alpha2');
    const served = new Set(((r.json?.resources ?? []) as Array<{ name: string }>).map((resource) => resource.name));
    if (served.has('inferenceobjectives') && served.has('inferencemodelrewrites')) break;
    if (Date.now() > deadline)
      throw new Error(`llm-d.ai/v1alpha2 not in discovery: ${r.status} ${r.text.slice(0, 300)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}, 600_000);
afterAll(async () => {
  await cluster?.stop();
}, 60_000);

const peers = new PeerSet();
let sims: SimulatorHandle[] = [];
const loads: AbortController[] = [];
const clients: ExtProcTestClient[] = [];
afterEach(async () => {
  for (const l of loads.splice(0)) l.abort();
  for (const c of clients.splice(0)) c.close();
  await peers.closeAll();
  await Promise.all(sims.map((handle) => handle.close()));
  sims = [];
});

const MODEL = 'sim-model';
const API = 'llm-d.ai/v1alpha2';
/** GAIE's EPP rules, and llm-d-router's own group's objectives and rewrites. */
const EPP_RULES = [
  ...GAIE_EPP_RULES,
  {
    apiGroups: ['llm-d.ai'],
    resources: ['inferenceobjectives', 'inferencemodelrewrites'],
    verbs: ['get', 'watch', 'list'],
  },
];
const WAIT_MS = 60_000;
const TEST_MS = 240_000;

interface Epp {
  name: string;
  grpcPort: number;
  metricsPort: number;
  client: ExtProcTestClient;
}

/** One sim pod in an InferencePool with the two objectives, and both EPPs on `configFile`, watching it. */
async function startPool(
  namespace: string,
  address: string,
  configFile: string,
): Promise<{ sim: SimulatorHandle; pod: string; epps: Epp[] }> {
  const port = await freePortOn([address]);
  const sim = await startSimulator(
    simConfig({ host: address, port, model: [MODEL], mode: 'echo', seed: 1, maxNumSeqs: 1, timeToFirstToken: 600_000 }),
  );
  sims.push(sim);
  const c = cluster!;
  const ns = await c.createNamespace(namespace);
  await c.createPod(ns, 'pod-0', { labels: { app: 'vllm-pd' }, ip: address });
  await c.apply(inferencePool('pool', { app: 'vllm-pd' }, [port]), { namespace: ns });
  await c.createServiceAccount(ns, 'epp');
  await c.grant(ns, 'epp', 'epp', EPP_RULES);
  const kubeconfig = await c.serviceAccountKubeconfig(ns, 'epp');
  // The objectives exist before either EPP starts; the first phase still waits until each EPP has used them.
  await c.apply(
    Object.entries({ sheddable: -1, critical: 10 }).map(([name, priority]) => ({
      apiVersion: API,
      kind: 'InferenceObjective',
      metadata: { name, namespace: ns },
      // The group explicitly: this API server does not fill in the CRD's default, and ebab687 compares it as stored.
      spec: { poolRef: { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'pool' }, priority },
    })),
    { namespace: ns },
  );
  const upstream = peers.add(
    // The flow-control policies and the admitter are alpha upstream.
    await startUpstreamEpp('ebab687', {
      kubeconfig,
      poolName: 'pool',
      poolNamespace: ns,
      configFile,
      extraArgs: ['--allow-experimental-plugins'],
    }),
  );
  const pdRouter = peers.add(
    await startPdRouterEpp({ configFile, discovery: { kubeconfig, poolName: 'pool', poolNamespace: ns } }),
  );
  const epps = [
    { name: 'pd-router', grpcPort: pdRouter.grpcPort, metricsPort: pdRouter.metricsPort },
    { name: 'llm-d-router ebab687', grpcPort: upstream.grpcPort, metricsPort: upstream.metricsPort },
  ].map((peer) => {
    const client = new ExtProcTestClient(`127.0.0.1:${peer.grpcPort}`);
    clients.push(client);
    return { ...peer, client };
  });
  return { sim, pod: `${address}:${port}`, epps };
}

/** A config file of our own (the same for both EPPs). */
function configFile(text: string): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'pd-adm-diff-')), 'config.yaml');
  writeFileSync(file, text);
  return file;
}

/** Sends `count` requests straight to the simulator: one runs (ten-minute TTFT), the rest wait in its queue. */
function load(sim: SimulatorHandle, count: number): AbortController {
  const held = holdCompletions(sim.url, MODEL, count);
  loads.push(held);
  return held;
}

async function poll(what: string, cond: () => Promise<boolean>, detail?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await cond())) {
    peers.check();
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}\n${detail ? await detail() : ''}\n${peers.tails()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The pod's waiting queue as the EPP's per-endpoint gauge reports it (either family). */
async function queueOf(epp: Epp): Promise<number | undefined> {
  const text = await metricsText(`http://127.0.0.1:${epp.metricsPort}`);
  const m = /^(?:inference_pool_per_pod_queue_size|llm_d_epp_per_endpoint_queue_size)\{[^}]*pod-0[^}]*\} (\S+)$/m.exec(
    text,
  );
  return m ? Number(m[1]) : undefined;
}

/** Waits until both EPPs report the pod's waiting queue as `size`. */
async function scraped(epps: Epp[], size: number): Promise<void> {
  for (const e of epps) await poll(`${e.name}: the pod's queue ${size}`, async () => (await queueOf(e)) === size);
}

/** Requests of `priority` in the EPP's flow-control queues (llm_d_epp_flow_control_queue_size, summed over flows). */
async function queuedAt(epp: Epp, priority: number): Promise<number> {
  const text = await metricsText(`http://127.0.0.1:${epp.metricsPort}`);
  let total = 0;
  for (const m of text.matchAll(/^llm_d_epp_flow_control_queue_size\{([^}]*)\} (\S+)$/gm))
    if (m[1].includes(`priority="${priority}"`)) total += Number(m[2]);
  return total;
}

/** Whether the EPP counted a request of `priority` (its llm_d_epp_request_total series): it knew the objective. */
async function sawPriority(epp: Epp, priority: number): Promise<boolean> {
  const text = await metricsText(`http://127.0.0.1:${epp.metricsPort}`);
  return new RegExp(`^llm_d_epp_request_(?:error_)?total\\{[^}]*priority="${priority}"[^}]*\\} [1-9]`, 'm').test(text);
}

interface Outcome {
  /** Where the request was routed, or the immediate response instead. */
  routed?: string;
  rejected?: { status: number; body: string; reason?: string };
}

let seq = 0;
/** Opens one request's stream (objective `objective`, none when empty); `outcome` resolves with the EPP's first answer. */
function open(
  epp: Epp,
  objective: string,
): { outcome: Promise<Outcome>; finish(): Promise<void>; later(): Promise<Outcome> } {
  const call = epp.client.open();
  call.send(
    headers({
      ':method': 'POST',
      ':path': '/v1/completions',
      ':authority': 'envoy',
      'content-type': 'application/json',
      'x-request-id': `adm-${++seq}`,
      ...(objective ? { 'x-gateway-inference-objective': objective } : {}),
    }),
    body(JSON.stringify({ model: MODEL, prompt: `hello ${seq}`, max_tokens: 2 }), true),
  );
  const outcome = call.waitFor(1, WAIT_MS * 2).then(([first]): Outcome => {
    const ir = first.immediate_response;
    if (ir) {
      const reason = setHeadersOf(ir.headers).find(([key]) => key === 'x-llm-d-request-dropped-reason')?.[1];
      return {
        rejected: {
          status: envoyStatusNumber(ir.status.code),
          body: Buffer.from(ir.body ?? '').toString(),
          ...(reason ? { reason } : {}),
        },
      };
    }
    const set = new Map(
      setHeadersOf(first.request_headers!.response.header_mutation).map(([key, value]) => [key.toLowerCase(), value]),
    );
    return { routed: set.get('x-gateway-destination-endpoint') };
  });
  outcome.catch(() => undefined);
  return {
    outcome,
    /** The next answer after the routing (headers and body): an immediate response ends a routed request early. */
    async later() {
      const [, , third] = await call.waitFor(3, WAIT_MS * 2);
      const ir = third.immediate_response;
      if (!ir) return {};
      const reason = setHeadersOf(ir.headers).find(([key]) => key === 'x-llm-d-request-dropped-reason')?.[1];
      return {
        rejected: {
          status: envoyStatusNumber(ir.status.code),
          body: Buffer.from(ir.body ?? '').toString(),
          ...(reason ? { reason } : {}),
        },
      };
    },
    async finish() {
      const o = await outcome;
      if (o.routed && !call.responses[2]?.immediate_response) {
        await call.waitFor(2, WAIT_MS);
        call.send(responseHeaders({ ':status': '200', 'content-type': 'application/json' }));
        await call.waitFor(3, WAIT_MS);
        call.send(responseBody('{"choices":[]}', true));
        await call.waitFor(4, WAIT_MS);
      }
      call.end();
      await call.ended;
    },
  };
}

/** One whole request: its outcome, the stream completed. */
async function request(epp: Epp, objective: string): Promise<Outcome> {
  const r = open(epp, objective);
  const o = await r.outcome;
  await r.finish();
  return o;
}

/** Until each EPP has counted a sheddable request (idle pool: admitted by both), so both resolve the objectives. */
async function objectivesKnown(epps: Epp[]): Promise<void> {
  for (const e of epps)
    await poll(
      `${e.name}: the sheddable objective applied`,
      async () => {
        expect((await request(e, 'sheddable')).rejected).toBeUndefined();
        return sawPriority(e, -1);
      },
      async () =>
        (await metricsText(`http://127.0.0.1:${e.metricsPort}`))
          .split('\n')
          .filter((line) => /request_(error_)?total|priority=/.test(line) && !line.startsWith('#'))
          .join('\n'),
    );
}

/** Two sheddable requests, a critical one and an unclassified one. */
const MIX = ['sheddable', 'sheddable', 'critical', ''];

/** `objectives`' requests to one EPP, one after the other. */
async function requests(epp: Epp, objectives: string[]): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const objective of objectives) outcomes.push(await request(epp, objective));
  return outcomes;
}

describeWith(req, 'admission plugins: pd-router and llm-d-router ebab687 on its sample configs, the same pool', () => {
  it(
    'probabilistic-admitter-epp-config.yaml: idle pool, everything admitted; saturation 0.4, every sheddable request refused with the same 500 and body, critical and unclassified ones routed',
    async () => {
      const configFile = await upstreamFile('ebab687', 'deploy/config/probabilistic-admitter-epp-config.yaml');
      const { sim, pod, epps } = await startPool('diff-adm-prob', '127.0.0.91', configFile);
      await scraped(epps, 0);
      await objectivesKnown(epps);

      // Idle: saturation 0, p = 0 (never refused).
      const idle: Record<string, Outcome[]> = {};
      for (const e of epps) idle[e.name] = await requests(e, MIX);
      for (const e of epps) expect(idle[e.name], e.name).toEqual(Array(4).fill({ routed: pod }));

      // Queue 2 of the threshold 5: saturation 0.4, p = min(0.4^5 × 300, 1) = 1.
      load(sim, 3);
      await scraped(epps, 2);
      const busy: Record<string, Outcome[]> = {};
      for (const e of epps) busy[e.name] = await requests(e, MIX);
      const [ours, theirs] = epps.map((epp) => busy[epp.name]);
      expect(ours).toEqual(theirs);
      expect(ours[0].rejected?.status).toBe(500);
      expect(ours[0].rejected?.body).toMatch(
        /^inference error: Internal - request cannot be admitted: inference error: ResourceExhausted - probabilistic-admitter: rejected, saturation=0\.\d{3} prob=1\.00$/,
      );
      expect(ours[0].rejected?.reason).toBeUndefined();
      expect(ours.slice(2)).toEqual([{ routed: pod }, { routed: pod }]);
    },
    TEST_MS,
  );

  it(
    "soft-reflective-ceiling-epp-config.yaml: idle pool, every band dispatches at once; saturation >= 1, critical and sheddable requests wait in both EPPs' queues, and both route them once the queue drains",
    async () => {
      const configFile = await upstreamFile('ebab687', 'deploy/config/soft-reflective-ceiling-epp-config.yaml');
      const { sim, pod, epps } = await startPool('diff-adm-soft', '127.0.0.92', configFile);
      await scraped(epps, 0);
      await objectivesKnown(epps);

      for (const e of epps)
        expect([await request(e, 'critical'), await request(e, 'sheddable'), await request(e, '')], e.name).toEqual(
          Array(3).fill({ routed: pod }),
        );

      // Queue 6 of the detector's threshold 5: saturation 1.2, at or over every band's ceiling (the highest's is 1).
      const hold = load(sim, 7);
      await scraped(epps, 6);
      const waiting = epps.map((epp) => ({ epp, critical: open(epp, 'critical'), sheddable: open(epp, 'sheddable') }));
      for (const { epp } of waiting)
        await poll(
          `${epp.name}: one critical and one sheddable request queued`,
          async () => (await queuedAt(epp, 10)) === 1 && (await queuedAt(epp, -1)) === 1,
        );
      // The queue drains: saturation 0, both requests are dispatched on both EPPs.
      hold.abort();
      await scraped(epps, 0);
      for (const w of waiting) {
        expect([await w.critical.outcome, await w.sheddable.outcome], w.epp.name).toEqual([
          { routed: pod },
          { routed: pod },
        ]);
        await w.critical.finish();
        await w.sheddable.finish();
      }
      for (const e of epps) expect([await queuedAt(e, 10), await queuedAt(e, -1)], e.name).toEqual([0, 0]);
    },
    TEST_MS,
  );

  it(
    'enableEviction: a sheddable request in flight is evicted with the same 429, body and reason when a critical one waits at saturation >= 1; the critical one is routed once the queue drains',
    async () => {
      // Upstream's default saturation detector (utilization-detector: queue 5, KV 0.8) and usage limit (ceiling 1).
      const file = configFile(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  enableEviction: true
`);
      const { sim, pod, epps } = await startPool('diff-adm-evict', '127.0.0.93', file);
      await scraped(epps, 0);
      await objectivesKnown(epps);
      // A sheddable request is routed at saturation 0 and stays in flight (its response never starts).
      const victims = epps.map((epp) => ({ epp, victim: open(epp, 'sheddable') }));
      for (const { epp, victim } of victims) expect(await victim.outcome, epp.name).toEqual({ routed: pod });
      // Saturation 1.2: a critical request queues; the sheddable one in flight is revoked for it (deficit 0.2 at
      // credit 1.2 over the one tracked request: one revocation).
      const hold = load(sim, 7);
      await scraped(epps, 6);
      const critical = epps.map((epp) => open(epp, 'critical'));
      const evicted = await Promise.all(victims.map(({ victim }) => victim.later()));
      expect(evicted[0]).toEqual(evicted[1]);
      expect(evicted[0]).toEqual({
        rejected: { status: 429, body: 'request evicted by flow control', reason: 'evicted' },
      });
      for (const epp of epps) expect(await queuedAt(epp, 10), epp.name).toBe(1);
      hold.abort();
      await scraped(epps, 0);
      for (const [i, epp] of epps.entries()) {
        expect(await critical[i].outcome, epp.name).toEqual({ routed: pod });
        await critical[i].finish();
        await victims[i].victim.finish();
      }
    },
    TEST_MS,
  );
});
