/**
 * Watches that end, expire and break, against a control plane of this file's own (the shared one must not be
 * restarted or compacted): kube-apiserver with its watch cache off, so watches are served by etcd and a compaction
 * makes a resumed watch fail with 410 Gone, and --min-request-timeout=2, so the server ends every watch after 2-4 s
 * as it does after 30-60 min in a cluster. It has Gateway API Inference Extension v1.4.0's CRDs, which also serve the
 * v1alpha2 InferencePool (inference.networking.x-k8s.io) that v1.5.0 dropped.
 */
import type pino from 'pino';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { sidecarConfig, startSidecar, type SidecarHandle } from '../../src/sidecar/index.js';
import { metricValue, waitFor } from '../helpers.js';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import {
  GAIE_EPP_RULES,
  inferencePool,
  until,
  capturedLogger,
  endpointIds,
  untilEndpointIds,
} from './kube-fixtures.js';
import { describeWith, need } from './need.js';

const req = await need('etcd', 'kube-apiserver', 'gaie-v1.4.0');
let cp: ControlPlane;
beforeAll(async () => {
  if (req.ok) cp = await startControlPlane({ crds: ['gaie-v1.4.0'], watchCache: false, minRequestTimeoutSeconds: 2 });
}, 600_000);
afterAll(async () => {
  await cp?.stop();
}, 60_000);

let epp: EppHandle | undefined;
let sidecar: SidecarHandle | undefined;
afterEach(async () => {
  await epp?.close(500);
  await sidecar?.close();
  epp = sidecar = undefined;
});

const T = 60_000;
const CONFIG =
  'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\ndataLayer: {injectDefaults: false}\n';
const base = {
  host: '127.0.0.1',
  grpcPort: 0,
  grpcHealthPort: 0,
  metricsPort: 0,
  secureServing: false,
  configText: CONFIG,
  metricsEndpointAuth: false,
}; // metrics auth: epp-metrics-auth.test.ts
const ids = (eppHandle: EppHandle) => endpointIds(eppHandle).join();
const untilIds = (expected: string[], what: string) => untilEndpointIds(epp!, expected, what, T);

/** Sum of an API server counter over every label set matching `labels` (e.g. LIST requests for pods). */
async function requestCount(verb: string, resource: string): Promise<number> {
  const text = await cp.metrics();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    if (line.includes(`verb="${verb}"`) && line.includes(`resource="${resource}"`) && line.includes('subresource=""'))
      sum += Number(line.split(' ').pop());
  }
  return sum;
}

/** A namespace with ServiceAccounts "epp" (GAIE's EPP rules) and "sidecar" (list/watch), a pool and two ready pods. */
async function pool(
  prefix: string,
  version: 'v1' | 'v1alpha2' = 'v1',
): Promise<{ ns: string; eppKubeconfig: string; sidecarKubeconfig: string }> {
  const ns = await cp.createNamespace(prefix);
  const group = version === 'v1' ? 'inference.networking.k8s.io' : 'inference.networking.x-k8s.io';
  await cp.createServiceAccount(ns, 'epp');
  await cp.grant(ns, 'epp', 'epp', [
    ...GAIE_EPP_RULES,
    { apiGroups: [group], resources: ['inferencepools'], verbs: ['get', 'list', 'watch'] },
  ]);
  await cp.createServiceAccount(ns, 'sidecar');
  await cp.grant(ns, 'sidecar', 'sidecar', [
    { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    { apiGroups: [group], resources: ['inferencepools'], verbs: ['list', 'watch'] },
  ]);
  await cp.apply(inferencePool('pool', { app: 'vllm' }, [8000], version), { namespace: ns });
  await cp.createPod(ns, 'a', { labels: { app: 'vllm' }, ip: '10.5.0.1' });
  await cp.createPod(ns, 'b', { labels: { app: 'vllm' }, ip: '10.5.0.2' });
  return {
    ns,
    eppKubeconfig: await cp.serviceAccountKubeconfig(ns, 'epp'),
    sidecarKubeconfig: await cp.serviceAccountKubeconfig(ns, 'sidecar'),
  };
}

async function startBoth(
  ns: string,
  eppKubeconfig: string,
  sidecarKubeconfig: string,
  opts: { poolGroup?: 'inference.networking.k8s.io' | 'inference.networking.x-k8s.io'; logger?: pino.Logger } = {},
): Promise<void> {
  const poolGroup = opts.poolGroup ?? 'inference.networking.k8s.io';
  epp = await startEpp(
    eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, poolGroup, kubeconfig: eppKubeconfig }),
    { logger: opts.logger },
  );
  sidecar = await startSidecar(
    sidecarConfig({
      host: '127.0.0.1',
      port: 0,
      secureProxy: false,
      modelServerPort: 1,
      enableSsrfProtection: true,
      inferencePool: `${ns}/pool`,
      poolGroup,
      kubeconfig: sidecarKubeconfig,
    }),
  );
  await untilIds([`${ns}/a-rank-0@10.5.0.1:8000`, `${ns}/b-rank-0@10.5.0.2:8000`], 'EPP synced');
  await until(epp.crds!, 'status', () => epp!.ready(), T, "EPP ready (the pool's CRDs listed too)");
  // The sidecar listens before its allowlist's first sync; it is ready once the watch has synced.
  await waitFor(() => sidecar!.guard.ready(), T, 'sidecar allowlist synced');
  expect(sidecar.guard.allowed('10.5.0.1', 8000) && sidecar.guard.allowed('10.5.0.2', 8000)).toBe(true);
}

describeWith(req, 'watches against kube-apiserver: timed out, expired (410 Gone), broken by a restart', () => {
  it('a watch the server ends is resumed: changes keep arriving', async () => {
    const { ns, eppKubeconfig, sidecarKubeconfig } = await pool('expiry-resume');
    await startBoth(ns, eppKubeconfig, sidecarKubeconfig);
    const [watches, lists] = [await requestCount('WATCH', 'pods'), await requestCount('LIST', 'pods')];
    // Each watch lasts 2-4 s: wait until the server has ended the pod watches (a WATCH is counted when it ends).
    await waitFor(
      async () => (await requestCount('WATCH', 'pods')) >= watches + 2,
      T,
      'pod watches ended by the server',
    );
    // Resumed from their resourceVersion, not re-listed.
    expect(await requestCount('LIST', 'pods')).toBe(lists);
    await cp.createPod(ns, 'c', { labels: { app: 'vllm' }, ip: '10.5.0.3' });
    await untilIds(
      [`${ns}/a-rank-0@10.5.0.1:8000`, `${ns}/b-rank-0@10.5.0.2:8000`, `${ns}/c-rank-0@10.5.0.3:8000`],
      'a pod added after the re-watch',
    );
    await waitFor(() => sidecar!.guard.allowed('10.5.0.3', 8000), T, 'sidecar allowlist after the re-watch');
  });

  it('after an etcd compaction the resumed watch gets 410 Gone: EPP and sidecar re-list, keep every endpoint, and follow later changes', async () => {
    const { ns, eppKubeconfig, sidecarKubeconfig } = await pool('expiry-410');
    await startBoth(ns, eppKubeconfig, sidecarKubeconfig);
    const removed: string[] = [];
    epp!.store.on('removed', (endpoint) => removed.push(endpoint.id));
    let sidecarDenied = 0;
    const checkSidecar = setInterval(() => {
      if (!sidecar?.guard.allowed('10.5.0.1', 8000) || !sidecar?.guard.allowed('10.5.0.2', 8000)) sidecarDenied++;
    }, 5);
    try {
      const lists = await requestCount('LIST', 'pods');
      // Move etcd's revision past everything the watchers have seen (objects they do not watch), then compact.
      for (let i = 0; i < 3; i++)
        await cp.apply(
          { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `bump-${i}` }, data: { i: String(i) } },
          { namespace: ns },
        );
      const revision = await cp.compactEtcd();
      expect(revision).toBeGreaterThan(0);
      // The EPP and the sidecar each list pods again once their resumed watch is answered 410 Gone.
      await waitFor(async () => (await requestCount('LIST', 'pods')) >= lists + 2, T, 'pods re-listed after 410 Gone');
    } finally {
      clearInterval(checkSidecar);
    }
    expect(removed).toEqual([]);
    expect(sidecarDenied).toBe(0);
    expect(ids(epp!)).toBe([`${ns}/a-rank-0@10.5.0.1:8000`, `${ns}/b-rank-0@10.5.0.2:8000`].join());
    await cp.deletePod(ns, 'b');
    await untilIds([`${ns}/a-rank-0@10.5.0.1:8000`], 'a deletion after the re-list');
    await waitFor(() => !sidecar!.guard.allowed('10.5.0.2', 8000), T, 'sidecar allowlist after the re-list');
  });

  it('an API server restart is survived: endpoints stay while it is down, changes made meanwhile arrive once it is back', async () => {
    const { ns, eppKubeconfig, sidecarKubeconfig } = await pool('expiry-restart');
    const log = capturedLogger(T);
    await startBoth(ns, eppKubeconfig, sidecarKubeconfig, { logger: log.logger });
    const removed: string[] = [];
    epp!.store.on('removed', (endpoint) => removed.push(endpoint.id));
    await cp.stopApiServer();
    await log.untilLine(/kubernetes list\/watch failed/, 'the EPP noticing the API server is gone');
    expect(removed).toEqual([]);
    expect(epp!.ready()).toBe(true);
    expect(sidecar!.guard.allowed('10.5.0.2', 8000)).toBe(true);
    await cp.startApiServer();
    await cp.deletePod(ns, 'b');
    await cp.createPod(ns, 'c', { labels: { app: 'vllm' }, ip: '10.5.0.3' });
    await untilIds([`${ns}/a-rank-0@10.5.0.1:8000`, `${ns}/c-rank-0@10.5.0.3:8000`], 'changes after the restart');
    await waitFor(
      () => !sidecar!.guard.allowed('10.5.0.2', 8000) && sidecar!.guard.allowed('10.5.0.3', 8000),
      T,
      'sidecar allowlist after the restart',
    );
  });

  it('the v1alpha2 InferencePool (inference.networking.x-k8s.io, GAIE v1.4.0) with --pool-group', async () => {
    const { ns, eppKubeconfig, sidecarKubeconfig } = await pool('expiry-v1alpha2', 'v1alpha2');
    await startBoth(ns, eppKubeconfig, sidecarKubeconfig, { poolGroup: 'inference.networking.x-k8s.io' });
    // Both read the v1alpha2 pool by name (a list with fieldSelector metadata.name, which the API server counts as a GET).
    const metrics = await cp.metrics();
    expect(
      metricValue(metrics, 'apiserver_request_total', {
        group: 'inference.networking.x-k8s.io',
        resource: 'inferencepools',
        verb: 'GET',
        code: '200',
      }),
    ).toBeGreaterThanOrEqual(2);
  });
});
