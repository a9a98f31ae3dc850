import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PoolWatcher, loadKubeConfig, type PodEndpoint } from '../../src/common/kubernetes/pool-watcher.js';
import { silentLogger } from '../../src/common/index.js';
import { FakeKubeApiServer, inferencePoolObject, podObject } from '../fakes/kube-apiserver.js';
import { waitFor } from '../helpers.js';

let api: FakeKubeApiServer;
let watcher: PoolWatcher | undefined;

beforeEach(async () => {
  api = await new FakeKubeApiServer().start();
});
afterEach(async () => {
  await watcher?.stop();
  watcher = undefined;
  await api.close();
});

const addrs = (eps: PodEndpoint[]) => eps.map((e) => `${e.address}:${e.port}${e.ready ? '' : '(unready)'}`).sort();

describe('PoolWatcher against a fake API server', () => {
  it('lists and watches the pool and its pods; endpoints follow pod and pool changes', async () => {
    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'llm' }, [8000]));
    api.upsert('pods', podObject('p1', '10.0.0.1', { app: 'llm', 'llm-d.ai/role': 'prefill' }));
    api.upsert('pods', podObject('other', '10.0.0.9', { app: 'other' }));
    watcher = new PoolWatcher(loadKubeConfig({ server: api.url }), { kind: 'pool', namespace: 'default', name: 'pool' }, silentLogger());
    watcher.start();
    await watcher.synced(5000);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.0.1:8000']);
    expect(watcher.endpoints()[0]!.labels['llm-d.ai/role']).toBe('prefill');

    api.upsert('pods', podObject('p2', '10.0.0.2', { app: 'llm' }, { ready: false }));
    await waitFor(() => watcher!.endpoints().length === 2, 5000, 'pod added');
    expect(addrs(watcher.endpoints())).toEqual(['10.0.0.1:8000', '10.0.0.2:8000(unready)']);

    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'llm' }, [8000, 8001]));
    await waitFor(() => watcher!.endpoints().length === 4, 5000, 'second target port');

    api.upsert('pods', podObject('p1', '10.0.0.1', { app: 'llm' }, { annotations: { 'llm-d.ai/active-ports': '8001' } }));
    await waitFor(() => addrs(watcher!.endpoints()).join() === '10.0.0.1:8001,10.0.0.2:8000(unready),10.0.0.2:8001(unready)', 5000, 'active-ports');

    api.remove('pods', 'default', 'p2');
    await waitFor(() => watcher!.endpoints().length === 1, 5000, 'pod removed');

    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'other' }, [9000]));
    await waitFor(() => addrs(watcher!.endpoints()).join() === '10.0.0.9:9000', 5000, 'selector change restarts the pod watch');
    expect(api.requests.filter((r) => r.resource === 'inferencepools').every((r) => r.query.fieldSelector === 'metadata.name=pool')).toBe(true);
  });

  it('retries after list errors (e.g. missing RBAC) and recovers without a restart', async () => {
    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'llm' }, [8000]));
    api.upsert('pods', podObject('p1', '10.0.0.1', { app: 'llm' }));
    api.failNext('pods', 403, 1);
    watcher = new PoolWatcher(loadKubeConfig({ server: api.url }), { kind: 'pool', namespace: 'default', name: 'pool' }, silentLogger());
    watcher.start();
    await watcher.synced(10_000);
    expect(watcher.errorCount).toBeGreaterThanOrEqual(1);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.0.1:8000']);
  });

  it('re-watches when the server ends a watch', async () => {
    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'llm' }, [8000]));
    watcher = new PoolWatcher(loadKubeConfig({ server: api.url }), { kind: 'pool', namespace: 'default', name: 'pool' }, silentLogger());
    watcher.start();
    await watcher.synced(5000);
    await waitFor(() => api.openWatches('pods') === 1, 5000, 'pod watch open');
    api.dropWatches();
    await waitFor(() => api.openWatches('pods') === 1 && api.openWatches('inferencepools') === 1, 5000, 'watches re-opened');
    api.upsert('pods', podObject('late', '10.0.0.5', { app: 'llm' }));
    await waitFor(() => watcher!.endpoints().length === 1, 5000, 'event after re-watch');
  });

  it('selector mode works without the CRD', async () => {
    api.upsert('pods', podObject('d1', '10.0.1.1', { 'llm-d.ai/role': 'decode', app: 'x' }));
    watcher = new PoolWatcher(
      loadKubeConfig({ server: api.url }),
      { kind: 'selector', namespace: 'default', selector: 'app=x', ports: [8000, 8001] },
      silentLogger(),
    );
    watcher.start();
    await watcher.synced(5000);
    expect(addrs(watcher.endpoints())).toEqual(['10.0.1.1:8000', '10.0.1.1:8001']);
    expect(api.requests.some((r) => r.resource === 'inferencepools')).toBe(false);
  });

  it('a missing pool is synced with no endpoints, and endpoints appear when it is created', async () => {
    api.upsert('pods', podObject('p1', '10.0.0.1', { app: 'llm' }));
    watcher = new PoolWatcher(loadKubeConfig({ server: api.url }), { kind: 'pool', namespace: 'default', name: 'pool' }, silentLogger());
    watcher.start();
    await watcher.synced(5000);
    expect(watcher.endpoints()).toEqual([]);
    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'llm' }, [8000]));
    await waitFor(() => watcher!.endpoints().length === 1, 5000, 'pool created');
  });
});
