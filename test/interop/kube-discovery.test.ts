/**
 * Endpoint discovery against a real kube-apiserver (the shared control plane): the PoolWatcher the EPP and the
 * sidecar use, and the EPP's discovery, readiness and routing as pods change. Each test works in its own namespace
 * with a ServiceAccount whose RBAC is exactly what the test says, and writes pod status as a kubelet would.
 */
import { afterEach, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../src/common/index.js';
import { PoolWatcher, loadKubeConfig, type PodEndpoint } from '../../src/common/kubernetes/pool-watcher.js';
import { EXT_PROC_SERVICE_NAME } from '../../src/common/envoy/ext-proc.js';
import { eppConfig, healthClientConstructor, startEpp, type EppHandle } from '../../src/epp/index.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import type { SimulatorHandle } from '../../src/sim/index.js';
import { postJson } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import {
  GAIE_EPP_RULES,
  endpointIds,
  untilEndpointIds,
  freePortOn,
  inferencePool,
  startSimsOn,
  until,
  capturedLogger,
} from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let watcher: PoolWatcher | undefined;
let epp: EppHandle | undefined;
let gateway: GatewayHandle | undefined;
let sims: SimulatorHandle[] = [];
afterEach(async () => {
  await watcher?.stop();
  await gateway?.close();
  await epp?.close(500);
  await Promise.all(sims.map((handle) => handle.close()));
  watcher = epp = gateway = undefined;
  sims = [];
});

const T = 30_000; // bound of each wait for the component to catch up with the API server

/** A fresh namespace with a ServiceAccount "epp" granted `rules` (none: no RBAC at all), and its kubeconfig. */
async function namespaceWith(
  prefix: string,
  rules: Parameters<KubeCluster['grant']>[3] | undefined,
): Promise<{ ns: string; kubeconfig: string }> {
  const ns = await cluster.createNamespace(prefix);
  await cluster.createServiceAccount(ns, 'epp');
  if (rules) await cluster.grant(ns, 'epp', 'epp', rules);
  return { ns, kubeconfig: await cluster.serviceAccountKubeconfig(ns, 'epp') };
}

const addrs = (eps: PodEndpoint[]) =>
  eps.map((podEndpoint) => `${podEndpoint.address}:${podEndpoint.port}${podEndpoint.ready ? '' : '(unready)'}`).sort();
const watcherState = () => addrs(watcher?.endpoints() ?? []).join(',');
const untilEndpoints = (expected: string[], what: string) =>
  until(watcher!, 'change', () => watcherState() === [...expected].sort().join(','), T, what, watcherState);

const POOL_READ: Parameters<KubeCluster['grant']>[3] = [
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
  { apiGroups: ['inference.networking.k8s.io'], resources: ['inferencepools'], verbs: ['list', 'watch'] },
];

describeWith(req, 'PoolWatcher against kube-apiserver', () => {
  it('lists and watches the pool and its pods; endpoints follow pod and pool changes; the pool is read by name (RBAC resourceNames suffice)', async () => {
    // Only the pool named "pool": the API server allows list/watch under resourceNames only with fieldSelector metadata.name=pool.
    const { ns, kubeconfig } = await namespaceWith('pw-follow', [
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
      {
        apiGroups: ['inference.networking.k8s.io'],
        resources: ['inferencepools'],
        resourceNames: ['pool'],
        verbs: ['list', 'watch'],
      },
    ]);
    await cluster.apply(inferencePool('pool', { app: 'llm' }, [8000]), { namespace: ns });
    await cluster.createPod(ns, 'p1', { labels: { app: 'llm', 'llm-d.ai/role': 'prefill' }, ip: '10.0.0.1' });
    await cluster.createPod(ns, 'other', { labels: { app: 'other' }, ip: '10.0.0.9' });
    watcher = new PoolWatcher(
      loadKubeConfig({ kubeconfig }),
      { kind: 'pool', namespace: ns, name: 'pool' },
      silentLogger(),
    );
    watcher.start();
    await watcher.synced(T);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.0.1:8000']);
    expect(watcher.endpoints()[0].labels['llm-d.ai/role']).toBe('prefill');

    await cluster.createPod(ns, 'p2', { labels: { app: 'llm' }, ip: '10.0.0.2', ready: false });
    await untilEndpoints(['10.0.0.1:8000', '10.0.0.2:8000(unready)'], 'an unready pod added');

    await cluster.apply(inferencePool('pool', { app: 'llm' }, [8000, 8001]), { namespace: ns });
    await untilEndpoints(
      ['10.0.0.1:8000', '10.0.0.1:8001', '10.0.0.2:8000(unready)', '10.0.0.2:8001(unready)'],
      'a second target port',
    );

    await cluster.patchPodMetadata(ns, 'p1', { annotations: { 'llm-d.ai/active-ports': '8001' } });
    await untilEndpoints(
      ['10.0.0.1:8001', '10.0.0.2:8000(unready)', '10.0.0.2:8001(unready)'],
      'active-ports annotation',
    );

    await cluster.setPodStatus(ns, 'p2', { ready: true });
    await untilEndpoints(['10.0.0.1:8001', '10.0.0.2:8000', '10.0.0.2:8001'], 'pod became ready');

    await cluster.deletePod(ns, 'p2');
    await untilEndpoints(['10.0.0.1:8001'], 'pod deleted');

    await cluster.apply(inferencePool('pool', { app: 'other' }, [9000]), { namespace: ns });
    await untilEndpoints(['10.0.0.9:9000'], 'a selector change restarts the pod watch');
    expect(watcher.errorCount).toBe(0);
  });

  it('retries while RBAC denies it (403) and syncs once the Role is bound, without a restart', async () => {
    const { ns, kubeconfig } = await namespaceWith('pw-rbac', undefined);
    await cluster.apply(inferencePool('pool', { app: 'llm' }, [8000]), { namespace: ns });
    await cluster.createPod(ns, 'p1', { labels: { app: 'llm' }, ip: '10.0.0.1' });
    watcher = new PoolWatcher(
      loadKubeConfig({ kubeconfig }),
      { kind: 'pool', namespace: ns, name: 'pool' },
      silentLogger(),
    );
    const errors: Error[] = [];
    watcher.on('error', (err) => errors.push(err));
    watcher.start();
    await until(watcher, 'error', () => errors.length >= 1, T, 'a list error');
    expect(errors[0].message + JSON.stringify((errors[0] as { body?: unknown }).body ?? '')).toMatch(/forbidden|403/i);
    expect(watcher.endpoints()).toEqual([]);
    await cluster.grant(ns, 'epp', 'epp', GAIE_EPP_RULES);
    await watcher.synced(T);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.0.1:8000']);
  });

  it('selector mode needs only pods: no InferencePool access, no errors', async () => {
    const { ns, kubeconfig } = await namespaceWith('pw-selector', [
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    ]);
    await cluster.createPod(ns, 'd1', { labels: { 'llm-d.ai/role': 'decode', app: 'x' }, ip: '10.0.1.1' });
    watcher = new PoolWatcher(
      loadKubeConfig({ kubeconfig }),
      { kind: 'selector', namespace: ns, selector: 'app=x', ports: [8000, 8001] },
      silentLogger(),
    );
    watcher.start();
    await watcher.synced(T);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.1.1:8000', '10.0.1.1:8001']);
    expect(watcher.errorCount).toBe(0);
  });

  it('a missing pool is synced with no endpoints, and endpoints appear when it is created', async () => {
    const { ns, kubeconfig } = await namespaceWith('pw-missing', POOL_READ);
    await cluster.createPod(ns, 'p1', { labels: { app: 'llm' }, ip: '10.0.0.1' });
    watcher = new PoolWatcher(
      loadKubeConfig({ kubeconfig }),
      { kind: 'pool', namespace: ns, name: 'pool' },
      silentLogger(),
    );
    watcher.start();
    await watcher.synced(T);
    expect(watcher.endpoints()).toEqual([]);
    await cluster.apply(inferencePool('pool', { app: 'llm' }, [8000]), { namespace: ns });
    await untilEndpoints(['10.0.0.1:8000'], 'pool created');
  });

  it('a pod being deleted gracefully (Terminating) is unready at once; its endpoint goes when the deletion completes', async () => {
    const { ns, kubeconfig } = await namespaceWith('pw-terminating', POOL_READ);
    await cluster.apply(inferencePool('pool', { app: 'llm' }, [8000]), { namespace: ns });
    // Scheduled on a node, so the API server deletes it gracefully (a kubelet would confirm with grace period 0).
    await cluster.createPod(ns, 'p1', { labels: { app: 'llm' }, ip: '10.0.0.1', nodeName: 'node-a' });
    watcher = new PoolWatcher(
      loadKubeConfig({ kubeconfig }),
      { kind: 'pool', namespace: ns, name: 'pool' },
      silentLogger(),
    );
    watcher.start();
    await watcher.synced(T);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.0.1:8000']);
    await cluster.deletePod(ns, 'p1', 30);
    await untilEndpoints(['10.0.0.1:8000(unready)'], 'deletionTimestamp set');
    await cluster.deletePod(ns, 'p1', 0);
    await untilEndpoints([], 'pod gone');
  });
});

const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\n';
const NO_SCRAPE = `${HEAD}dataLayer: {injectDefaults: false}\n`;
const base = {
  host: '127.0.0.1',
  grpcPort: 0,
  grpcHealthPort: 0,
  metricsPort: 0,
  secureServing: false,
  configText: NO_SCRAPE,
  metricsEndpointAuth: false,
}; // metrics auth: epp-metrics-auth.test.ts
const ids = (eppHandle: EppHandle) => endpointIds(eppHandle, true);
const untilIds = (expected: string[], what: string) => untilEndpointIds(epp!, expected, what, T, true);

describeWith(req, 'EPP discovery against kube-apiserver', () => {
  it('InferencePool: Ready pods matching the selector, one endpoint per target port; pods come and go', async () => {
    const { ns, kubeconfig } = await namespaceWith('epp-pool', GAIE_EPP_RULES);
    await cluster.apply(inferencePool('pool', { app: 'vllm' }, [8000]), { namespace: ns });
    await cluster.createPod(ns, 'p0', { labels: { app: 'vllm', 'llm-d.ai/role': 'prefill' }, ip: '10.2.0.1' });
    await cluster.createPod(ns, 'd0', { labels: { app: 'vllm', 'llm-d.ai/role': 'decode' }, ip: '10.2.0.2' });
    await cluster.createPod(ns, 'other', { labels: { app: 'other' }, ip: '10.2.0.9' });
    await cluster.createPod(ns, 'starting', { labels: { app: 'vllm' }, ip: '10.2.0.3', ready: false });
    await cluster.createPod(ns, 'pending', { labels: { app: 'vllm' } }); // no IP yet
    epp = await startEpp(eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, kubeconfig }));
    await untilIds([`${ns}/d0-rank-0@10.2.0.2:8000[decode]`, `${ns}/p0-rank-0@10.2.0.1:8000[prefill]`], 'pool synced');
    // Ready once the pool's InferenceModelRewrites and InferenceObjectives are listed too.
    await until(epp.crds!, 'status', () => epp!.ready(), T, 'ready');

    await cluster.patchPodMetadata(ns, 'starting', { labels: { 'llm-d.ai/role': 'decode' } });
    await cluster.setPodStatus(ns, 'starting', { ready: true });
    await untilIds(
      [
        `${ns}/d0-rank-0@10.2.0.2:8000[decode]`,
        `${ns}/p0-rank-0@10.2.0.1:8000[prefill]`,
        `${ns}/starting-rank-0@10.2.0.3:8000[decode]`,
      ],
      'pod became ready',
    );
    await cluster.deletePod(ns, 'p0');
    await untilIds(
      [`${ns}/d0-rank-0@10.2.0.2:8000[decode]`, `${ns}/starting-rank-0@10.2.0.3:8000[decode]`],
      'pod removed',
    );
    await cluster.apply(inferencePool('pool', { app: 'vllm' }, [8000, 8001]), { namespace: ns });
    await until(
      epp.store,
      'changed',
      () => epp!.store.size === 4,
      T,
      'second target port',
      () => ids(epp!).join(),
    );
    expect(ids(epp)).toContain(`${ns}/d0-rank-1@10.2.0.2:8001[decode]`);
  });

  it('selector mode (--endpoint-selector, --endpoint-target-ports) needs only pods', async () => {
    const { ns, kubeconfig } = await namespaceWith('epp-selector', [
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    ]);
    await cluster.createPod(ns, 'd0', { labels: { app: 'x' }, ip: '10.3.0.2' });
    epp = await startEpp(
      eppConfig({
        ...base,
        endpointSelector: 'app=x',
        endpointTargetPorts: ['8000', '8200'],
        poolNamespace: ns,
        kubeconfig,
      }),
    );
    await untilIds([`${ns}/d0-rank-0@10.3.0.2:8000[]`, `${ns}/d0-rank-1@10.3.0.2:8200[]`], 'selector endpoints');
  });

  it('gRPC health: NOT_SERVING (but liveness SERVING) while RBAC denies the pod list (403), SERVING for every service name once the Role is bound', async () => {
    // The pool and the pool's InferenceModelRewrites / InferenceObjectives (GAIE's rule), not the pods.
    const { ns, kubeconfig } = await namespaceWith('epp-health', [
      GAIE_EPP_RULES[0],
      { apiGroups: ['inference.networking.k8s.io'], resources: ['inferencepools'], verbs: ['get', 'list', 'watch'] },
    ]);
    await cluster.apply(inferencePool('pool', { app: 'vllm' }, [8000]), { namespace: ns });
    await cluster.createPod(ns, 'd0', { labels: { app: 'vllm' }, ip: '10.4.0.1' });
    const log = capturedLogger(T);
    epp = await startEpp(eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, kubeconfig }), {
      logger: log.logger,
    });
    await log.untilLine(/"what":"pods".*kubernetes list\/watch failed/, 'the denied pod list logged');
    const Ctor = healthClientConstructor();
    const h = new Ctor(`127.0.0.1:${epp.healthPort}`, grpc.credentials.createInsecure()) as any;
    const check = (service: string) =>
      new Promise<string>((resolve, reject) =>
        h.Check({ service }, { deadline: Date.now() + 3000 }, (err: Error | null, result: { status: string }) =>
          err ? reject(err) : resolve(result.status),
        ),
      );
    try {
      for (const s of ['', 'readiness', EXT_PROC_SERVICE_NAME, 'inference-extension'])
        expect(await check(s)).toBe('NOT_SERVING');
      // A liveness probe on `liveness` must not restart a pod that restarting cannot fix.
      expect(await check('liveness')).toBe('SERVING');
      await cluster.grant(ns, 'epp', 'pods', [
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      ]);
      await until(epp.store, 'changed', () => epp!.store.size === 1, T, 'pods listed after the retry');
      await until(epp.crds!, 'status', () => epp!.ready(), T, 'the CRDs listed too');
      for (const s of ['', 'liveness', 'readiness', EXT_PROC_SERVICE_NAME]) expect(await check(s)).toBe('SERVING');
    } finally {
      h.close();
    }
  });

  it('routing follows the pods: ready, unready, deleted, re-addressed and Terminating pods change where requests go', async () => {
    const addresses = ['127.0.0.31', '127.0.0.32', '127.0.0.33'];
    const port = await freePortOn(addresses);
    sims = await startSimsOn(addresses, port);
    const [simA, simB, simC] = sims as [SimulatorHandle, SimulatorHandle, SimulatorHandle];
    const { ns, kubeconfig } = await namespaceWith('epp-routing', GAIE_EPP_RULES);
    await cluster.apply(inferencePool('pool', { app: 'vllm' }, [port]), { namespace: ns });
    await cluster.createPod(ns, 'a', { labels: { app: 'vllm' }, ip: addresses[0], nodeName: 'node-a' });
    await cluster.createPod(ns, 'b', { labels: { app: 'vllm' }, ip: addresses[1], ready: false, nodeName: 'node-a' });
    epp = await startEpp(eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, kubeconfig }));
    gateway = await startGateway(
      gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${epp.grpcPort}`, eppTls: false }),
    );
    /** Sends one request; returns the address of the simulator that answered it (its record count grew). */
    const route = async (): Promise<string> => {
      const before = sims.map((handle) => handle.engine.recentRequests().length);
      const r = await postJson(`${gateway!.url}/v1/completions`, {
        model: 'sim-model',
        prompt: 'where am I',
        max_tokens: 1,
      });
      expect(r.status, r.text).toBe(200);
      const hit = sims.findIndex((handle, i) => handle.engine.recentRequests().length > before[i]);
      return addresses[hit];
    };
    const endpoints = (list: Array<[string, string]>, what: string) =>
      untilIds(
        list.map(([pod, ip]) => `${ns}/${pod}-rank-0@${ip}:${port}[]`),
        what,
      );

    await endpoints([['a', addresses[0]]], 'a ready, b not');
    expect(await route()).toBe(addresses[0]);
    await cluster.setPodStatus(ns, 'b', { ready: true });
    await cluster.setPodStatus(ns, 'a', { ready: false });
    await endpoints([['b', addresses[1]]], 'b ready, a unready');
    expect(await route()).toBe(addresses[1]);
    await cluster.setPodStatus(ns, 'a', { ready: true });
    await cluster.deletePod(ns, 'b');
    await endpoints([['a', addresses[0]]], 'b deleted, a ready again');
    expect(await route()).toBe(addresses[0]);
    await cluster.setPodStatus(ns, 'a', { ip: addresses[2] });
    await endpoints([['a', addresses[2]]], 'a re-addressed');
    expect(await route()).toBe(addresses[2]);
    await cluster.deletePod(ns, 'a', 30);
    await untilIds([], 'a Terminating');
    const none = await postJson(`${gateway.url}/v1/completions`, {
      model: 'sim-model',
      prompt: 'anyone?',
      max_tokens: 1,
    });
    expect(none.status).toBe(503);
    expect([simA, simB, simC].map((handle) => handle.engine.recentRequests().length)).toEqual([2, 1, 1]);
  });
});
