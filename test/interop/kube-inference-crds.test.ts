/**
 * InferenceModelRewrite and InferenceObjective (GAIE v1.5.0's v1alpha2 CRDs, installed on the shared control plane)
 * against the real kube-apiserver: the EPP watches them for its pool while requests flow through the gateway to
 * simulators, and the tests assert what the simulators receive and what the metrics say. Each test synchronises on
 * the watcher's own event for the object it wrote, then asserts on the requests issued after that event.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterEach, expect, it } from 'vitest';
import { Rng } from '../../src/common/index.js';
import { eppConfig, healthClientConstructor, startEpp, type EppHandle } from '../../src/epp/index.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import type { SimulatorHandle } from '../../src/sim/index.js';
import { metricValue, metricsText, postJson } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import type { CrdChange } from '../../src/epp/datalayer/inference-crds.js';
import {
  GAIE_EPP_RULES,
  freePortOn,
  inferencePool,
  nextChange,
  startSimsOn,
  until,
  capturedLogger,
} from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let epp: EppHandle | undefined;
let gateway: GatewayHandle | undefined;
let sims: SimulatorHandle[] = [];
let traffic: Traffic | undefined;
afterEach(async () => {
  await traffic?.stop();
  await gateway?.close();
  await epp?.close(500);
  await Promise.all(sims.map((handle) => handle.close()));
  traffic = epp = gateway = undefined;
  sims = [];
});

const T = 30_000; // bound of each wait for the EPP to catch up with the API server
const MODEL = 'food-review';
const SERVED = [MODEL, 'food-review-v1', 'food-review-v2', 'food-review-canary'];
const ADDRESSES = ['127.0.0.71', '127.0.0.72'];
const CONFIG =
  'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\ndataLayer: {injectDefaults: false}\n';
const CRD_RULE = GAIE_EPP_RULES[0]; // get/list/watch inferenceobjectives and inferencemodelrewrites (x-k8s.io)
const POOL_RULES = GAIE_EPP_RULES.slice(1);
const API = 'inference.networking.x-k8s.io/v1alpha2';

type Obj = Record<string, any>;
type Rule = {
  matches?: Array<{ model: { value: string } }>;
  targets: Array<{ modelRewrite: string; weight?: number }>;
};

const rewriteObject = (name: string, rules: Rule[], pool = 'pool'): Obj => ({
  apiVersion: API,
  kind: 'InferenceModelRewrite',
  metadata: { name },
  spec: { poolRef: { name: pool }, rules },
});
const objectiveObject = (name: string, priority: number | undefined, pool = 'pool'): Obj => ({
  apiVersion: API,
  kind: 'InferenceObjective',
  metadata: { name },
  spec: { poolRef: { name: pool }, ...(priority === undefined ? {} : { priority }) },
});
const inNamespace = (obj: Obj, namespace: string): Obj => ({ ...obj, metadata: { ...obj.metadata, namespace } });
const exact = (model: string) => [{ model: { value: model } }];

/**
 * Requests for `model` through the gateway, `concurrency` at a time, until stopped. Request n carries the prompt
 * `req-<n>`, so what a simulator received for it can be looked up; n is taken when the request is issued.
 */
class Traffic {
  next = 0;
  readonly statuses = new Map<number, number>();
  private readonly done = new EventEmitter();
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(
    private readonly url: string,
    private readonly headers: Record<string, string> = {},
    concurrency = 2,
  ) {
    this.loops = Array.from({ length: concurrency }, () => this.loop());
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const n = this.next++;
      const r = await postJson(
        `${this.url}/v1/completions`,
        { model: MODEL, prompt: `req-${n}`, max_tokens: 1 },
        this.headers,
        T,
      );
      this.statuses.set(n, r.status);
      this.done.emit('done');
    }
  }

  /** Resolves once `count` requests numbered `from` or later have been answered. */
  answeredFrom(from: number, count: number, what: string): Promise<void> {
    const answered = () => [...this.statuses.keys()].filter((count) => count >= from).length;
    return until(
      this.done,
      'done',
      () => answered() >= count,
      T,
      what,
      () => `${answered()} answered from ${from}`,
    );
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** The model each simulator received, by request number (requests from a Traffic). */
function receivedModels(): Map<number, string> {
  const out = new Map<number, string>();
  for (const s of sims) {
    for (const r of s.engine.recentRequests()) {
      const b = r.body as { prompt?: string; model?: string } | undefined;
      const m = /^req-(\d+)$/.exec(b?.prompt ?? '');
      if (m && b?.model) out.set(Number(m[1]), b.model);
    }
  }
  return out;
}

/** Models received for the requests numbered `from` to `to` (exclusive), with how many of each. */
function modelsBetween(from: number, to: number): Record<string, number> {
  const got = receivedModels();
  const out: Record<string, number> = {};
  for (let n = from; n < to; n++) {
    const m = got.get(n) ?? '(not received)';
    out[m] = (out[m] ?? 0) + 1;
  }
  return out;
}

/** A namespace with a ServiceAccount "epp" granted `rules`, a pool on the simulators' port and one ready pod per simulator. */
async function poolWithSims(
  prefix: string,
  rules: Parameters<KubeCluster['grant']>[3],
): Promise<{ ns: string; kubeconfig: string }> {
  const port = await freePortOn(ADDRESSES);
  sims = await startSimsOn(ADDRESSES, port, { model: SERVED, recordRequests: 5_000 });
  const ns = await cluster.createNamespace(prefix);
  await cluster.createServiceAccount(ns, 'epp');
  await cluster.grant(ns, 'epp', 'epp', rules);
  await cluster.apply(inferencePool('pool', { app: 'vllm' }, [port]), { namespace: ns });
  for (const [i, ip] of ADDRESSES.entries()) await cluster.createPod(ns, `pod-${i}`, { labels: { app: 'vllm' }, ip });
  return { ns, kubeconfig: await cluster.serviceAccountKubeconfig(ns, 'epp') };
}

/** Starts the EPP (seeded) and the gateway; resolves once the EPP is ready (pods listed, both CRDs listed). */
async function startStack(ns: string, kubeconfig: string, logger?: pino.Logger): Promise<void> {
  const rng = new Rng(42);
  epp = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      configText: CONFIG,
      poolName: 'pool',
      poolNamespace: ns,
      kubeconfig,
      metricsEndpointAuth: false,
    }),
    {
      logger,
      random: () => rng.next(),
    },
  );
  await until(
    epp.store,
    'changed',
    () => epp!.store.size === ADDRESSES.length,
    T,
    'both pods discovered',
    () => String(epp!.store.size),
  );
  await until(
    epp.crds!,
    'status',
    () => epp!.ready(),
    T,
    'the CRDs listed',
    () => JSON.stringify(epp!.crds!.describe()),
  );
  gateway = await startGateway(
    gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${epp.grpcPort}`, eppTls: false }),
  );
}

describeWith(req, 'InferenceModelRewrite and InferenceObjective against kube-apiserver', () => {
  it('a rewrite created, changed and deleted while traffic flows: every request issued after the watch event reaches the simulators with the new model', async () => {
    const { ns, kubeconfig } = await poolWithSims('crd-rewrite', GAIE_EPP_RULES);
    await startStack(ns, kubeconfig);
    expect(epp!.crds!.describe()).toEqual({
      InferenceModelRewrite: 'synced inferencemodelrewrites.inference.networking.x-k8s.io',
      InferenceObjective: 'synced inferenceobjectives.inference.networking.x-k8s.io',
    });
    traffic = new Traffic(gateway!.url);
    await traffic.answeredFrom(0, 5, 'traffic before any rewrite');
    const w = epp!.crds!;
    const object = `${ns}/alias`;
    const latencies: number[] = [];

    /** Writes, waits for the watcher's event, then checks the next 10 requests issued. */
    const step = async (write: () => Promise<unknown>, outcome: CrdChange['outcome'], expected: string) => {
      const start = performance.now();
      const event = nextChange(T, w, object, outcome).then(() => {
        latencies.push(performance.now() - start);
        return traffic!.next;
      });
      await write();
      const from = await event;
      await traffic!.answeredFrom(from, 10, `10 requests after the ${outcome} event`);
      expect(modelsBetween(from, from + 10), `requests issued after the ${outcome} event`).toEqual({ [expected]: 10 });
    };

    await step(
      () =>
        cluster.apply(
          rewriteObject('alias', [{ matches: exact(MODEL), targets: [{ modelRewrite: 'food-review-v1' }] }]),
          { namespace: ns },
        ),
      'applied',
      'food-review-v1',
    );
    await step(
      () =>
        cluster.apply(
          rewriteObject('alias', [{ matches: exact(MODEL), targets: [{ modelRewrite: 'food-review-v2' }] }]),
          { namespace: ns },
        ),
      'applied',
      'food-review-v2',
    );
    await step(() => cluster.remove(inNamespace(rewriteObject('alias', []), ns)), 'removed', MODEL);
    await traffic.stop();
    // No request failed while the rewrites changed.
    expect([...traffic.statuses.values()].filter((seconds) => seconds !== 200)).toEqual([]);
    // Every request was received with one of the models the rewrites named.
    expect(Object.keys(modelsBetween(0, traffic.statuses.size)).sort()).toEqual([
      MODEL,
      'food-review-v1',
      'food-review-v2',
    ]);
    // For the record: from the API write to the EPP's watch event (not asserted: a loaded machine may be slow).
    console.info(
      `InferenceModelRewrite write → EPP watch event: ${latencies.map((line) => `${line.toFixed(0)} ms`).join(', ')}`,
    );
  }, 180_000);

  it('a 90/10 weighted split lands within ±3% over 2,000 requests, and the decisions are counted in both metric families', async () => {
    const { ns, kubeconfig } = await poolWithSims('crd-split', GAIE_EPP_RULES);
    await startStack(ns, kubeconfig);
    const applied = nextChange(T, epp!.crds!, `${ns}/canary`, 'applied');
    await cluster.apply(
      rewriteObject('canary', [
        {
          matches: exact(MODEL),
          targets: [
            { modelRewrite: 'food-review-v1', weight: 90 },
            { modelRewrite: 'food-review-canary', weight: 10 },
          ],
        },
      ]),
      { namespace: ns },
    );
    await applied;
    const N = 2_000;
    let issued = 0;
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (issued < N) {
          const n = issued++;
          statuses.push(
            (
              await postJson(
                `${gateway!.url}/v1/completions`,
                { model: MODEL, prompt: `req-${n}`, max_tokens: 1 },
                {},
                T,
              )
            ).status,
          );
        }
      }),
    );
    expect(statuses.filter((seconds) => seconds !== 200)).toEqual([]);
    const got = modelsBetween(0, N);
    expect(Object.keys(got).sort()).toEqual(['food-review-canary', 'food-review-v1']);
    expect(Math.abs(got['food-review-canary'] / N - 0.1), JSON.stringify(got)).toBeLessThanOrEqual(0.03);
    const text = await metricsText(`http://127.0.0.1:${epp!.metricsPort}`);
    for (const name of [
      'inference_extension_model_rewrite_decisions_total',
      'llm_d_epp_model_rewrite_decisions_total',
    ]) {
      for (const target of ['food-review-v1', 'food-review-canary']) {
        expect(
          metricValue(text, name, { model_rewrite_name: 'canary', model_name: MODEL, target_model: target }),
          `${name} ${target}`,
        ).toBe(got[target]);
      }
    }
    // The request metrics name the client's model and the target model.
    expect(
      metricValue(text, 'llm_d_epp_request_total', {
        model_name: MODEL,
        target_model_name: 'food-review-canary',
        priority: '0',
      }),
    ).toBe(got['food-review-canary']);
    expect(
      metricValue(text, 'inference_objective_request_total', {
        model_name: MODEL,
        target_model_name: 'food-review-v1',
      }),
    ).toBe(got['food-review-v1']);
  }, 300_000);

  it("an objective's priority (x-gateway-inference-objective, x-llm-d-inference-objective) labels the request metrics; changes and deletion follow the watch", async () => {
    const { ns, kubeconfig } = await poolWithSims('crd-objective', GAIE_EPP_RULES);
    await startStack(ns, kubeconfig);
    const w = epp!.crds!;
    const applied = [
      nextChange(T, w, `${ns}/critical`, 'applied'),
      nextChange(T, w, `${ns}/batch`, 'applied'),
      nextChange(T, w, `${ns}/plain`, 'applied'),
    ];
    await cluster.apply(
      [objectiveObject('critical', 10), objectiveObject('batch', -5), objectiveObject('plain', undefined)],
      { namespace: ns },
    );
    await Promise.all(applied);
    const send = async (headers: Record<string, string>) => {
      const r = await postJson(
        `${gateway!.url}/v1/completions`,
        { model: MODEL, prompt: 'hi', max_tokens: 1 },
        headers,
        T,
      );
      expect(r.status, r.text).toBe(200);
    };
    for (let i = 0; i < 3; i++) await send({ 'x-gateway-inference-objective': 'critical' });
    for (let i = 0; i < 2; i++) await send({ 'x-llm-d-inference-objective': 'batch' });
    await send({ 'x-gateway-inference-objective': 'plain' });
    await send({ 'x-gateway-inference-objective': 'unknown' });
    await send({});
    const count = async (priority: string) =>
      metricValue(await metricsText(`http://127.0.0.1:${epp!.metricsPort}`), 'llm_d_epp_request_total', {
        model_name: MODEL,
        priority,
      });
    expect([await count('10'), await count('-5'), await count('0')]).toEqual([3, 2, 3]);

    const changed = nextChange(T, w, `${ns}/critical`, 'applied');
    await cluster.apply(objectiveObject('critical', 20), { namespace: ns });
    await changed;
    await send({ 'x-gateway-inference-objective': 'critical' });
    expect(await count('20')).toBe(1);

    const removed = nextChange(T, w, `${ns}/critical`, 'removed');
    await cluster.remove(inNamespace(objectiveObject('critical', 20), ns));
    await removed;
    await send({ 'x-gateway-inference-objective': 'critical' });
    expect([await count('20'), await count('0')]).toEqual([1, 4]);

    // An objective of another pool does not count; moving one away removes it.
    const other = nextChange(T, w, `${ns}/elsewhere`, 'ignored');
    await cluster.apply(objectiveObject('elsewhere', 7, 'other-pool'), { namespace: ns });
    await other;
    const moved = nextChange(T, w, `${ns}/batch`, 'removed');
    await cluster.apply(objectiveObject('batch', -5, 'other-pool'), { namespace: ns });
    await moved;
    await send({ 'x-gateway-inference-objective': 'elsewhere' });
    await send({ 'x-llm-d-inference-objective': 'batch' });
    expect([await count('7'), await count('-5'), await count('0')]).toEqual([undefined, 2, 6]);
  }, 180_000);

  it('malformed objects (bad weights, no target model, priority beyond int32) are logged by name and skipped; the last valid state keeps serving', async () => {
    const { ns, kubeconfig } = await poolWithSims('crd-malformed', GAIE_EPP_RULES);
    const log = capturedLogger(T);
    await startStack(ns, kubeconfig, log.logger);
    const w = epp!.crds!;
    const route = async (model: string, headers: Record<string, string> = {}) => {
      const before = receivedModels().size;
      const n = 1_000_000 + before;
      const r = await postJson(
        `${gateway!.url}/v1/completions`,
        { model, prompt: `req-${n}`, max_tokens: 1 },
        headers,
        T,
      );
      expect(r.status, r.text).toBe(200);
      return receivedModels().get(n);
    };

    const good = nextChange(T, w, `${ns}/alias`, 'applied');
    await cluster.apply(
      rewriteObject('alias', [{ matches: exact(MODEL), targets: [{ modelRewrite: 'food-review-v1' }] }]),
      { namespace: ns },
    );
    await good;
    expect(await route(MODEL)).toBe('food-review-v1');

    // Weights on one target of two: the API server's schema lets it through; the EPP keeps the last valid version.
    const mixed = nextChange(T, w, `${ns}/alias`, 'rejected');
    await cluster.apply(
      rewriteObject('alias', [
        {
          matches: exact(MODEL),
          targets: [{ modelRewrite: 'food-review-v2', weight: 1 }, { modelRewrite: 'food-review-canary' }],
        },
      ]),
      { namespace: ns },
    );
    expect((await mixed).reason).toMatch(/weights are set on 1 of 2 targets/);
    await log.untilLine(
      new RegExp(
        `InferenceModelRewrite ${ns}/alias is invalid: spec\\.rules\\.0\\.targets: weights are set on 1 of 2 targets.*its last valid version stays in use`,
      ),
      'the mixed weights logged',
    );
    expect(await route(MODEL)).toBe('food-review-v1');

    // A new object whose target names no model: ignored, requests for its model are not rewritten.
    const empty = nextChange(T, w, `${ns}/nameless`, 'rejected');
    await cluster.apply(
      rewriteObject('nameless', [{ matches: exact('food-review-v2'), targets: [{ modelRewrite: '' }] }]),
      { namespace: ns },
    );
    await empty;
    await log.untilLine(
      new RegExp(
        `InferenceModelRewrite ${ns}/nameless is invalid: spec\\.rules\\.0\\.targets\\.0\\.modelRewrite: modelRewrite must not be empty; it is ignored`,
      ),
      'the empty model logged',
    );
    expect(await route('food-review-v2')).toBe('food-review-v2');

    // A priority beyond int32 (the CRD's schema has no bound).
    const big = nextChange(T, w, `${ns}/huge`, 'rejected');
    await cluster.apply(objectiveObject('huge', 2 ** 40), { namespace: ns });
    await big;
    await log.untilLine(
      new RegExp(
        `InferenceObjective ${ns}/huge is invalid: spec\\.priority: priority must fit in 32 bits; it is ignored`,
      ),
      'the priority logged',
    );
    expect(epp!.crds!.priority('huge')).toBe(0);

    // Fixed: the new version applies.
    const fixed = nextChange(T, w, `${ns}/alias`, 'applied');
    await cluster.apply(
      rewriteObject('alias', [
        {
          matches: exact(MODEL),
          targets: [
            { modelRewrite: 'food-review-v2', weight: 1 },
            { modelRewrite: 'food-review-canary', weight: 1 },
          ],
        },
      ]),
      { namespace: ns },
    );
    await fixed;
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add((await route(MODEL))!);
    expect([...seen].sort()).toEqual(['food-review-canary', 'food-review-v2']);
    expect(epp!.ready()).toBe(true);
  }, 180_000);

  it('without RBAC on the CRDs: NOT_SERVING, the log names the resources; SERVING once the Role allows them, without a restart', async () => {
    const { ns, kubeconfig } = await poolWithSims('crd-rbac', POOL_RULES);
    const log = capturedLogger(T);
    epp = await startEpp(
      eppConfig({
        host: '127.0.0.1',
        grpcPort: 0,
        grpcHealthPort: 0,
        metricsPort: 0,
        secureServing: false,
        configText: CONFIG,
        poolName: 'pool',
        poolNamespace: ns,
        kubeconfig,
        metricsEndpointAuth: false,
      }),
      { logger: log.logger },
    );
    for (const plural of ['inferencemodelrewrites', 'inferenceobjectives']) {
      await log.untilLine(
        new RegExp(
          `missing RBAC permission: cannot list/watch ${plural}\\.inference\\.networking\\.x-k8s\\.io in namespace ${ns}; not ready until it is granted`,
        ),
        `the denied ${plural} logged`,
      );
    }
    await until(
      epp.store,
      'changed',
      () => epp!.store.size === ADDRESSES.length,
      T,
      'the pods listed (their RBAC is granted)',
    );
    const Ctor = healthClientConstructor();
    const h = new Ctor(`127.0.0.1:${epp.healthPort}`, grpc.credentials.createInsecure()) as any;
    const check = () =>
      new Promise<string>((resolve, reject) =>
        h.Check({ service: '' }, { deadline: Date.now() + 3000 }, (err: Error | null, result: { status: string }) =>
          err ? reject(err) : resolve(result.status),
        ),
      );
    try {
      expect(epp.ready()).toBe(false);
      expect(await check()).toBe('NOT_SERVING');
      await cluster.grant(ns, 'epp', 'crds', [CRD_RULE]);
      await until(
        epp.crds!,
        'status',
        () => epp!.ready(),
        T,
        'ready once the CRDs can be listed',
        () => JSON.stringify(epp!.crds!.describe()),
      );
      expect(await check()).toBe('SERVING');
    } finally {
      h.close();
    }
  }, 120_000);
});
