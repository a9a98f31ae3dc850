/**
 * Data-layer plugin parameters, against real servers on loopback: core-metrics-extractor's engine configurations
 * (engineLabelKey, defaultEngine, engineConfigs with label-matching specs) drive what the scraper reads, and
 * metrics-data-source's caCertPath / clientCertPath / clientKeyPath make it scrape an mTLS server.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, selfSignedCertificate } from '../../src/common/index.js';
import { emptyMetrics, eppConfig, loadEndpointPickerConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { ENGINES, extractEngineMetrics } from '../../src/epp/datalayer/engine-metrics.js';
import { scrapeCadence } from '../../src/epp/datalayer/metrics-scraper.js';
import { metricValue, metricsText, waitFor } from '../helpers.js';
import { endpointsFile, endpointsYaml, spec } from './fixtures.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
/** Scrapes take milliseconds on an idle machine; the bounds are for a loaded CI host (the waits end on the event). */
const WAIT_MS = 30_000;
const TEST_MS = 90_000;

let epp: EppHandle | undefined;
const servers: http.Server[] = [];
afterEach(async () => {
  await epp?.close(500);
  epp = undefined;
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function serve(server: http.Server, exposition: string): Promise<number> {
  server.on('request', (req, res) => {
    res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(exposition);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function start(configText: string, port: number, labels: Record<string, string> = {}) {
  epp = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      configText,
      endpointsFile: endpointsFile(endpointsYaml([spec('m0', '127.0.0.1', 'decode', labels, port)])),
      refreshMetricsInterval: 20,
      metricsScrapeTimeout: 10_000,
    }),
  );
  return epp;
}

function loadError(yaml: string): string {
  try {
    loadEndpointPickerConfig(yaml);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('core-metrics-extractor parameters', () => {
  const EXTRACTOR = `${LLMD}plugins:
- {type: queue-scorer}
- {type: metrics-data-source}
- type: core-metrics-extractor
  parameters:
    engineLabelKey: example.com/engine
    defaultEngine: mine
    engineConfigs:
    - name: mine
      queuedRequestsSpec: my_requests{state=waiting}
      runningRequestsSpec: 'my_requests{state="running"}'
      kvUsageSpec: my_kv
      cacheBlockSizeSpec: my_block_tokens
dataLayer: {sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: core-metrics-extractor}]}]}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
`;

  it('a configured engine, selected by engineLabelKey or as defaultEngine, is what the scraper reads', async () => {
    const port = await serve(http.createServer(), 'my_requests{state="running"} 3\nmy_requests{state="waiting"} 7\nmy_kv 0.25\nmy_block_tokens 32\nvllm:num_requests_waiting 99\n');
    for (const labels of [{}, { 'example.com/engine': 'mine' }, { 'example.com/engine': 'unknown-engine' }] as Array<Record<string, string>>) {
      const e = await start(EXTRACTOR, port, labels);
      const m = e.store.all()[0].metrics;
      await waitFor(() => m.updatedAt > 0, WAIT_MS, 'a scrape');
      expect(m).toMatchObject({ waitingQueueSize: 7, runningRequests: 3, kvCacheUsage: 0.25, cacheBlockSize: 32 });
      await e.close(500);
      epp = undefined;
    }
    // With the engine label on the built-in key only, the default engine applies: engineLabelKey replaced it.
    const e = await start(EXTRACTOR, port, { 'llm-d.ai/engine-type': 'vllm' });
    await waitFor(() => e.store.all()[0].metrics.updatedAt > 0, WAIT_MS, 'a scrape');
    expect(e.store.all()[0].metrics.waitingQueueSize).toBe(7);
  }, TEST_MS);

  it('built-in engines include triton-tensorrt-llm, whose specs match on labels', () => {
    const m = emptyMetrics();
    const text = [
      'nv_trt_llm_request_metrics{request_type="scheduled"} 4',
      'nv_trt_llm_request_metrics{request_type="waiting"} 2',
      'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"} 0.5',
      'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per"} 64',
      'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max"} 1000',
    ].join('\n');
    expect(extractEngineMetrics(text, ENGINES['triton-tensorrt-llm'], m)).toEqual([]);
    expect(m).toMatchObject({ waitingQueueSize: 2, runningRequests: 4, kvCacheUsage: 0.5, cacheBlockSize: 64, cacheNumBlocks: 1000 });
  });

  it('bad specs, unknown default engines and reserved names fail naming the key; inert keys warn', () => {
    const base = `${LLMD}plugins: [{type: queue-scorer}, {type: core-metrics-extractor, parameters: PARAMS}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;
    const load = (path: string) => base.replace('PARAMS', path);
    expect(loadError(load('{engineConfigs: [{name: x, queuedRequestsSpec: "bad name{"}]}'))).toMatch(/parameter "engineConfigs.0.queuedRequestsSpec": not a valid metric specification/);
    expect(loadError(load('{engineConfigs: [{name: x, kvUsageSpec: "kv{1a=b}"}]}'))).toMatch(/parameter "engineConfigs.0.kvUsageSpec": invalid label pair "1a=b"/);
    expect(loadError(load('{defaultEngine: nope}'))).toMatch(/parameter "defaultEngine": "nope" is not a built-in engine or one of engineConfigs/);
    expect(loadError(load('{engineConfigs: [{name: default}]}'))).toMatch(/engine config name cannot be "default"/);
    expect(loadError(load('{engineConfigs: [{name: x, surprise: 1}]}'))).toMatch(/unknown parameter "engineConfigs.0.surprise"/);
    expect(loadEndpointPickerConfig(load('{engineConfigs: [{name: x, loraSpec: vllm:lora_requests_info, customMetrics: [{attributeKey: gpu, metricSpec: g}]}]}')).warnings).toEqual([
      'plugin "core-metrics-extractor" (type core-metrics-extractor): engineConfigs "x": loraSpec is not read (pd-router has no LoRA scheduling)',
      'plugin "core-metrics-extractor" (type core-metrics-extractor): engineConfigs "x": customMetrics gpu are not read (no pd-router plugin consumes endpoint attributes)',
    ]);
  });
});

describe('metrics-data-source interval', () => {
  it('is rounded to the nearest multiple of the tick; a shorter one lowers the tick (not below 50 ms), as llm-d-router', () => {
    expect(scrapeCadence(50, undefined)).toEqual({ tickMs: 50, everyMs: 50 });
    expect(scrapeCadence(50, 120)).toEqual({ tickMs: 50, everyMs: 100 });
    expect(scrapeCadence(50, 130)).toEqual({ tickMs: 50, everyMs: 150 });
    expect(scrapeCadence(1000, 200)).toEqual({ tickMs: 200, everyMs: 200 });
    expect(scrapeCadence(1000, 10)).toEqual({ tickMs: 50, everyMs: 50 });
  });
});

describe('metrics-data-source TLS parameters', () => {
  /** A self-signed certificate for one role (server or client auth). */
  async function certificate(role: 'serverAuth' | 'clientAuth') {
    const { generate } = await import('selfsigned');
    const pems = await generate([{ name: 'commonName', value: `pd-router-test-${role}` }], {
      keyType: 'ec',
      curve: 'P-256',
      extensions: [
        { name: 'basicConstraints', cA: true },
        { name: 'keyUsage', digitalSignature: true, keyCertSign: true },
        { name: 'extKeyUsage', [role]: true },
        { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] },
      ],
    });
    return { key: pems.private, cert: pems.cert };
  }

  it('caCertPath verifies the server and clientCertPath/clientKeyPath authenticate the scraper (mTLS)', async () => {
    const server = await certificate('serverAuth');
    const client = await certificate('clientAuth');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-metrics-tls-'));
    const file = (name: string, text: string) => {
      const p = path.join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const ca = file('ca.pem', server.cert);
    const cert = file('client.pem', client.cert);
    const key = file('client-key.pem', client.key);
    const tls = https.createServer({ key: server.key, cert: server.cert, ca: [client.cert], requestCert: true, rejectUnauthorized: true });
    const port = await serve(tls, 'vllm:num_requests_waiting 5\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.1\n');
    const config = (params: string) =>
      `${LLMD}plugins: [{type: queue-scorer}, {name: src, type: metrics-data-source, parameters: ${params}}, {type: core-metrics-extractor}]
dataLayer: {sources: [{pluginRef: src, extractors: [{pluginRef: core-metrics-extractor}]}]}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;

    const e = await start(config(`{scheme: https, insecureSkipVerify: false, caCertPath: ${ca}, clientCertPath: ${cert}, clientKeyPath: ${key}}`), port);
    await waitFor(() => e.store.all()[0].metrics.updatedAt > 0, WAIT_MS, 'an mTLS scrape');
    expect(e.store.all()[0].metrics.waitingQueueSize).toBe(5);
    await e.close(500);
    epp = undefined;

    // Without the client certificate the server refuses the scrape, which is counted.
    const noClient = await start(config(`{scheme: https, insecureSkipVerify: false, caCertPath: ${ca}}`), port);
    await waitFor(async () => (metricValue(await metricsText(`http://127.0.0.1:${noClient.metricsPort}`), 'llm_d_epp_datalayer_poll_errors_total', { source_type: 'metrics-data-source' }) ?? 0) >= 1, WAIT_MS, 'a refused scrape');
    expect(noClient.store.all()[0].metrics.updatedAt).toBe(0);
  }, TEST_MS);

  it('mismatched or unreadable files fail naming the parameter; caCertPath under insecureSkipVerify warns', async () => {
    const src = (params: string) => `${LLMD}plugins: [{type: queue-scorer}, {type: metrics-data-source, parameters: ${params}}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;
    expect(loadError(src('{clientCertPath: /x.pem}'))).toMatch(/parameter "clientCertPath": clientCertPath and clientKeyPath must be set together/);
    expect(loadError(src('{insecureSkipVerify: false, caCertPath: /nonexistent/ca.pem}'))).toMatch(/plugin "metrics-data-source" \(type metrics-data-source\): parameter "caCertPath": cannot read \/nonexistent\/ca\.pem: ENOENT/);
    const { cert } = await selfSignedCertificate();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-metrics-ca-'));
    writeFileSync(path.join(dir, 'ca.pem'), cert);
    expect(loadEndpointPickerConfig(src(`{caCertPath: ${path.join(dir, 'ca.pem')}}`)).warnings).toEqual([
      'plugin "metrics-data-source" (type metrics-data-source): parameter "caCertPath" has no effect while insecureSkipVerify is true (its default); set insecureSkipVerify: false to verify',
    ]);
  });
});
