/**
 * The sidecar's SSRF allowlist from an InferencePool (--enable-ssrf-protection --inference-pool) against a real
 * kube-apiserver (the shared control plane), with a ServiceAccount's kubeconfig and only the RBAC the test grants.
 */
import { afterEach, expect, it } from 'vitest';
import { getJson, postJson, waitFor } from '../helpers.js';
import { MODEL, startPd, type PdFixture } from '../sidecar/fixture.js';
import type { KubeCluster } from './control-plane.js';
import { inferencePool } from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const T = 30_000;
const send = (fx: PdFixture, target: string) =>
  postJson(`${fx.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': target });
/** list and watch of pools and pods: all the allowlist needs (no get). */
const LIST_WATCH = [
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
  { apiGroups: ['inference.networking.k8s.io'], resources: ['inferencepools'], verbs: ['list', 'watch'] },
];

async function sidecarNamespace(prefix: string): Promise<{ ns: string; kubeconfig: string }> {
  const ns = await cluster.createNamespace(prefix);
  await cluster.createServiceAccount(ns, 'sidecar');
  return { ns, kubeconfig: await cluster.serviceAccountKubeconfig(ns, 'sidecar') };
}

describeWith(req, 'SSRF allowlist from an InferencePool, against kube-apiserver', () => {
  it('denied (and not ready) while RBAC denies the watch; allowed once the Role is bound', async () => {
    const { ns, kubeconfig } = await sidecarNamespace('ssrf-rbac');
    f = await startPd({
      sidecar: { enableSsrfProtection: true, inferencePool: `${ns}/pool`, kubeconfig, ssrfSyncTimeout: 200 },
    });
    expect(f.sidecar.guard.mode).toBe('inference-pool');
    expect((await send(f, f.prefillHeader)).status).toBe(403);
    const ready = await getJson(`${f.sidecar.url}/ready`);
    expect(ready.status).toBe(503);
    expect(ready.body.ssrfAllowlist).toBe('not synced');

    await cluster.apply(inferencePool('pool', { app: 'llm' }, [f.prefill.port]), { namespace: ns });
    await cluster.createPod(ns, 'prefill-pod', { labels: { app: 'llm', 'llm-d.ai/role': 'prefill' }, ip: '127.0.0.1' });
    await cluster.grant(ns, 'sidecar', 'sidecar', LIST_WATCH);
    await waitFor(
      () => f!.sidecar.guard.allowed('127.0.0.1', f!.prefill.port),
      T,
      'allowlist synced after the Role was bound',
    );
    expect((await getJson(`${f.sidecar.url}/ready`)).body.ssrfAllowlist).toBe('synced');
    expect((await send(f, f.prefillHeader)).status).toBe(200);
  });

  it('pod IP or pod name on a target port; follows the pods (added, unready, re-addressed, deleted) with list and watch only', async () => {
    const { ns, kubeconfig } = await sidecarNamespace('ssrf-follow');
    await cluster.grant(ns, 'sidecar', 'sidecar', LIST_WATCH);
    f = await startPd({ sidecar: { enableSsrfProtection: true, inferencePool: `${ns}/pool`, kubeconfig } });
    // No pool yet: synced (the sidecar listens before the first sync) and empty.
    await waitFor(() => f!.sidecar.guard.ready(), T, 'allowlist synced');
    expect((await getJson(`${f.sidecar.url}/ready`)).body.ssrfAllowlist).toBe('synced');
    const port = f.prefill.port;
    const guard = f.sidecar.guard;
    expect((await send(f, `127.0.0.1:${port}`)).status).toBe(403);

    await cluster.apply(inferencePool('pool', { app: 'llm' }, [port]), { namespace: ns });
    await cluster.createPod(ns, 'prefill-pod', { labels: { app: 'llm', 'llm-d.ai/role': 'prefill' }, ip: '127.0.0.1' });
    await waitFor(() => guard.allowed('127.0.0.1', port), T, 'pod added');
    expect((await send(f, `127.0.0.1:${port}`)).status).toBe(200);
    // Allowed by pod name (the name does not resolve here, so the prefill itself fails with 502, not 403).
    expect((await send(f, `prefill-pod:${port}`)).status).toBe(502);
    expect((await send(f, `127.0.0.1:${port + 1}`)).status).toBe(403);
    expect((await send(f, `10.1.1.1:${port}`)).status).toBe(403);

    // As upstream: every pod of the pool with an IP is allowed, ready or not.
    await cluster.setPodStatus(ns, 'prefill-pod', { ready: false });
    await cluster.createPod(ns, 'marker', { labels: { app: 'llm' }, ip: '127.0.0.9' });
    await waitFor(() => guard.allowed('127.0.0.9', port), T, 'later pod seen');
    expect((await send(f, `127.0.0.1:${port}`)).status).toBe(200);

    await cluster.setPodStatus(ns, 'prefill-pod', { ip: '127.0.0.2' });
    await waitFor(() => !guard.allowed('127.0.0.1', port) && guard.allowed('127.0.0.2', port), T, 'pod re-addressed');
    expect((await send(f, `127.0.0.1:${port}`)).status).toBe(403);

    await cluster.setPodStatus(ns, 'prefill-pod', { ip: '127.0.0.1' });
    await waitFor(() => guard.allowed('127.0.0.1', port), T, 'pod back on 127.0.0.1');
    await cluster.deletePod(ns, 'prefill-pod');
    await waitFor(() => !guard.allowed('127.0.0.1', port), T, 'pod deleted');
    expect((await send(f, `127.0.0.1:${port}`)).status).toBe(403);
    expect((await send(f, `prefill-pod:${port}`)).status).toBe(403);
  });
});
