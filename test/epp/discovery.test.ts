/** Endpoint discovery without restarts: the endpoints file (hot reload) and Kubernetes (InferencePool or selector). */
import { rmSync, writeFileSync, renameSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { parseEndpointsFile } from '../../src/epp/datalayer/endpoints-file.js';
import { FakeKubeApiServer, inferencePoolObject, podObject } from '../fakes/kube-apiserver.js';
import { metricValue, metricsText, waitFor } from '../helpers.js';
import { endpointsFile, endpointsYaml, spec } from './fixtures.js';

const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\n';
const NO_SCRAPE = `${HEAD}dataLayer: {injectDefaults: false}\n`;
const base = { host: '127.0.0.1', grpcPort: 0, grpcHealthPort: 0, metricsPort: 0, secureServing: false, configText: NO_SCRAPE };

let epp: EppHandle | undefined;
let api: FakeKubeApiServer | undefined;
afterEach(async () => {
  await epp?.close(500);
  await api?.close();
  epp = undefined;
  api = undefined;
});

const ids = (e: EppHandle) => e.store.all().map((x) => `${x.id}@${x.hostPort}[${x.labels['llm-d.ai/role'] ?? ''}]`).sort();

describe('endpoints file', () => {
  it('parses the upstream format: namespace defaults to "default", ports as strings or numbers', () => {
    const specs = parseEndpointsFile(
      `endpoints:
- {name: a, address: 10.0.0.1, port: "8000", labels: {llm-d.ai/role: prefill}}
- {name: a, namespace: other, address: 10.0.0.9, port: 8001}
- {name: b, namespace: ns, address: "fd00::1", port: "8000"}
`,
      'f',
    );
    expect(specs).toEqual([
      { name: 'a', namespace: 'default', address: '10.0.0.1', port: 8000, labels: { 'llm-d.ai/role': 'prefill' } },
      { name: 'a', namespace: 'other', address: '10.0.0.9', port: 8001, labels: {} },
      { name: 'b', namespace: 'ns', address: 'fd00::1', port: 8000, labels: {} },
    ]);
    expect(() => parseEndpointsFile('endpoints: [{name: a, address: my-host, port: "80"}]', 'f')).toThrow(/endpoints.0.address: address must be an IP address/);
    expect(() => parseEndpointsFile('endpoints: [{name: a, address: 10.0.0.1, port: "0"}]', 'f')).toThrow(/port must be between 1 and 65535/);
    expect(() => parseEndpointsFile('x'.repeat(1024 * 1024 + 1), 'f')).toThrow(/larger than 1 MiB/);
  });

  it('duplicate endpoint names are refused, naming the duplicate: at start (flag or config plugin) and on reload', async () => {
    const dup = 'endpoints:\n- {name: d, address: 10.0.0.1, port: 8000}\n- {name: e, address: 10.0.0.2, port: 8000}\n- {name: d, namespace: default, address: 10.0.0.3, port: 8000}\n';
    const message = 'endpoints.2: duplicate endpoint name "d" in namespace "default" (also endpoints.0)';
    expect(() => parseEndpointsFile(dup, 'f')).toThrow(`f: ${message}`);
    const file = endpointsFile(dup);
    await expect(startEpp(eppConfig({ ...base, endpointsFile: file }))).rejects.toThrow(`${file}: ${message}`);
    const configText = `${HEAD}plugins: [{type: file-discovery, parameters: {path: ${file}}}]\ndataLayer: {injectDefaults: false, discovery: {pluginRef: file-discovery}}\n`;
    await expect(startEpp(eppConfig({ ...base, configText }))).rejects.toThrow(`${file}: ${message}`);
    // A reload with a duplicate keeps the endpoints it had.
    writeFileSync(file, endpointsYaml([spec('d', '10.0.0.1')]));
    epp = await startEpp(eppConfig({ ...base, endpointsFile: file }));
    writeFileSync(file, dup);
    const text = () => metricsText(`http://127.0.0.1:${epp!.metricsPort}`);
    await waitFor(async () => (metricValue(await text(), 'llm_d_epp_datalayer_poll_errors_total', { source_type: 'file-discovery' }) ?? 0) >= 1, 5000, 'reload error counted');
    expect(ids(epp)).toEqual(['default/d@10.0.0.1:8000[]']);
  });

  it('reloads on change: add, remove, a bad file keeps the last good state, then recovers; metrics survive', async () => {
    const file = endpointsFile(endpointsYaml([spec('a', '10.0.0.1', 'prefill')]));
    epp = await startEpp(eppConfig({ ...base, endpointsFile: file }));
    expect(ids(epp)).toEqual(['default/a@10.0.0.1:8000[prefill]']);
    epp.store.get('default/a')!.metrics.waitingQueueSize = 7;

    writeFileSync(file, endpointsYaml([spec('a', '10.0.0.1', 'prefill'), spec('b', '10.0.0.2', 'decode')]));
    await waitFor(() => epp!.store.size === 2, 5000, 'endpoint added');
    expect(ids(epp)).toEqual(['default/a@10.0.0.1:8000[prefill]', 'default/b@10.0.0.2:8000[decode]']);
    expect(epp.store.get('default/a')!.metrics.waitingQueueSize).toBe(7);

    writeFileSync(file, 'endpoints: [{name: broken, address: not-an-ip, port: "1"}]\n');
    const text = () => metricsText(`http://127.0.0.1:${epp!.metricsPort}`);
    await waitFor(async () => (metricValue(await text(), 'llm_d_epp_datalayer_poll_errors_total', { source_type: 'file-discovery' }) ?? 0) >= 1, 5000, 'reload error counted');
    expect(epp.store.size).toBe(2);

    // Replaced by rename, as a ConfigMap update does.
    writeFileSync(`${file}.tmp`, endpointsYaml([spec('b', '10.0.0.2', 'both')]));
    renameSync(`${file}.tmp`, file);
    await waitFor(() => ids(epp!).join() === 'default/b@10.0.0.2:8000[both]', 5000, 'endpoint removed and relabelled');
  });

  it('a missing or invalid file at start is a startup error naming the file', async () => {
    const file = endpointsFile('endpoints: [{name: a}]');
    await expect(startEpp(eppConfig({ ...base, endpointsFile: file }))).rejects.toThrow(/endpoints file .*endpoints.0.address/);
    rmSync(file);
    await expect(startEpp(eppConfig({ ...base, endpointsFile: file }))).rejects.toThrow(/endpoints file .*ENOENT/);
  });

  it('the config\'s file-discovery plugin works without the flag; giving both is an error', async () => {
    const file = endpointsFile(endpointsYaml([spec('a', '10.0.0.1')]));
    const configText = `${HEAD}plugins: [{type: file-discovery, parameters: {path: ${file}}}]\ndataLayer: {injectDefaults: false, discovery: {pluginRef: file-discovery}}\n`;
    epp = await startEpp(eppConfig({ ...base, configText }));
    expect(ids(epp)).toEqual(['default/a@10.0.0.1:8000[]']);
    await expect(startEpp(eppConfig({ ...base, configText, endpointsFile: file, grpcPort: 0 }))).rejects.toThrow(/dataLayer.discovery and --endpoints-file both choose the endpoints/);
  });
});

describe('Kubernetes discovery against a fake API server', () => {
  it('InferencePool: Ready pods matching the selector, one endpoint per target port; pods come and go; readiness follows the sync', async () => {
    api = await new FakeKubeApiServer().start();
    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'vllm' }, [8000]));
    api.upsert('pods', podObject('p0', '10.2.0.1', { app: 'vllm', 'llm-d.ai/role': 'prefill' }));
    api.upsert('pods', podObject('d0', '10.2.0.2', { app: 'vllm', 'llm-d.ai/role': 'decode' }));
    api.upsert('pods', podObject('other', '10.2.0.9', { app: 'other' }));
    api.upsert('pods', podObject('starting', '10.2.0.3', { app: 'vllm' }, { ready: false }));
    epp = await startEpp(eppConfig({ ...base, poolName: 'pool', poolNamespace: 'default', kubeApiServer: api.url }));
    await waitFor(() => epp!.ready(), 5000, 'pool synced');
    // The fake API server does not replay events from a resourceVersion: wait until the watches are open.
    await waitFor(() => api!.openWatches('pods') === 1 && api!.openWatches('inferencepools') === 1, 5000, 'watches open');
    expect(ids(epp)).toEqual(['default/d0-rank-0@10.2.0.2:8000[decode]', 'default/p0-rank-0@10.2.0.1:8000[prefill]']);

    api.upsert('pods', podObject('starting', '10.2.0.3', { app: 'vllm', 'llm-d.ai/role': 'decode' }));
    await waitFor(() => epp!.store.size === 3, 5000, 'pod became ready');
    api.remove('pods', 'default', 'p0');
    await waitFor(() => !ids(epp!).some((i) => i.includes('p0')), 5000, 'pod removed');
    api.upsert('inferencepools', inferencePoolObject('pool', { app: 'vllm' }, [8000, 8001]));
    await waitFor(() => epp!.store.size === 4, 5000, 'second target port');
    expect(ids(epp)).toContain('default/d0-rank-1@10.2.0.2:8001[decode]');
  });

  it('selector mode (--endpoint-selector, --endpoint-target-ports) needs no InferencePool', async () => {
    api = await new FakeKubeApiServer().start();
    api.upsert('pods', podObject('d0', '10.3.0.2', { app: 'x' }));
    epp = await startEpp(eppConfig({ ...base, endpointSelector: 'app=x', endpointTargetPorts: ['8000', '8200'], poolNamespace: 'default', kubeApiServer: api.url }));
    await waitFor(() => epp!.store.size === 2, 5000, 'selector endpoints');
    expect(ids(epp)).toEqual(['default/d0-rank-0@10.3.0.2:8000[]', 'default/d0-rank-1@10.3.0.2:8200[]']);
    expect(api.requests.some((r) => r.resource === 'inferencepools')).toBe(false);
  });
});
