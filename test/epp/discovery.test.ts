/**
 * Endpoint discovery without restarts: the endpoints file (hot reload). Kubernetes discovery (InferencePool or selector)
 * runs against a real kube-apiserver in test/interop/kube-discovery.test.ts.
 */
import { rmSync, writeFileSync, renameSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { parseEndpointsFile } from '../../src/epp/datalayer/endpoints-file.js';
import { metricValue, metricsText, waitFor } from '../helpers.js';
import { endpointsFile, endpointsYaml, spec } from './fixtures.js';

const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\n';
const NO_SCRAPE = `${HEAD}dataLayer: {injectDefaults: false}\n`;
const base = { host: '127.0.0.1', grpcPort: 0, grpcHealthPort: 0, metricsPort: 0, secureServing: false, configText: NO_SCRAPE };

let epp: EppHandle | undefined;
afterEach(async () => {
  await epp?.close(500);
  epp = undefined;
});

const ids = (eppHandle: EppHandle) => eppHandle.store.all().map((endpoint) => `${endpoint.id}@${endpoint.hostPort}[${endpoint.labels['llm-d.ai/role'] ?? ''}]`).sort();

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
