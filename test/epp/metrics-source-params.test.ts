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
import { selfSignedCertificate } from '../../src/common/index.js';
import { emptyMetrics, loadEndpointPickerConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { ENGINES, extractEngineMetrics } from '../../src/epp/datalayer/engine-metrics.js';
import { scrapeCadence } from '../../src/epp/datalayer/endpoint-poller.js';
import { metricValue, metricsText, waitFor } from '../helpers.js';
import { loadError, loopbackEppConfig, spec } from './fixtures.js';

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
    loopbackEppConfig(configText, [spec('m0', '127.0.0.1', 'decode', labels, port)], {
      refreshMetricsInterval: 20,
      metricsScrapeTimeout: 10_000,
    }),
  );
  return epp;
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

  it(
    'a configured engine, selected by engineLabelKey or as defaultEngine, is what the scraper reads',
    async () => {
      const port = await serve(
        http.createServer(),
        'my_requests{state="running"} 3\nmy_requests{state="waiting"} 7\nmy_kv 0.25\nmy_block_tokens 32\nvllm:num_requests_waiting 99\n',
      );
      for (const labels of [{}, { 'example.com/engine': 'mine' }, { 'example.com/engine': 'unknown-engine' }] as Array<
        Record<string, string>
      >) {
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
    },
    TEST_MS,
  );

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
    expect(m).toMatchObject({
      waitingQueueSize: 2,
      runningRequests: 4,
      kvCacheUsage: 0.5,
      cacheBlockSize: 64,
      cacheNumBlocks: 1000,
    });
  });

  it('loraSpec: the newest series of the LoRA info gauge (its value is its creation time); absent is not missing', () => {
    const m = emptyMetrics();
    const text = [
      'vllm:num_requests_waiting 0',
      'vllm:num_requests_running 1',
      'vllm:kv_cache_usage_perc 0',
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters=""} 1700000002.5',
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1700000001',
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="b",waiting_lora_adapters="c"} 1700000002',
    ].join('\n');
    expect(extractEngineMetrics(text, ENGINES.vllm, m)).toEqual([]);
    expect(m.lora).toEqual({ running: ['a', 'b'], waiting: [], maxLoras: 2 });
    // vLLM emits the family only once an adapter was loaded: its absence keeps what was read and is no error.
    expect(
      extractEngineMetrics(
        'vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0',
        ENGINES.vllm,
        m,
      ),
    ).toEqual([]);
    expect(m.lora).toEqual({ running: ['a', 'b'], waiting: [], maxLoras: 2 });
    // A malformed max_lora keeps the previous value, as upstream.
    extractEngineMetrics(
      'vllm:lora_requests_info{max_lora="x",running_lora_adapters="",waiting_lora_adapters="z"} 1700000003',
      ENGINES.vllm,
      m,
    );
    expect(m.lora).toEqual({ running: [], waiting: ['z'], maxLoras: 2 });
  });

  it('engineConfigs: loraSpec and customMetrics are read; a missing custom metric keeps its value and is reported', () => {
    const c = loadEndpointPickerConfig(
      `${LLMD}plugins:\n- type: queue-scorer\n- type: metrics-data-source\n- type: core-metrics-extractor\n  parameters:\n    engineConfigs:\n    - name: x\n      queuedRequestsSpec: q\n      loraSpec: "lora_info{engine=x}"\n      customMetrics:\n      - {attributeKey: gpu, metricSpec: 'gpu_util{device="0"}'}\n      - {attributeKey: temp, metricSpec: temperature}\ndataLayer:\n  sources:\n  - pluginRef: metrics-data-source\n    extractors: [{pluginRef: core-metrics-extractor}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`,
    );
    expect(c.warnings).toEqual([]);
    const engine = c.metricsEngines.engines.x;
    const m = emptyMetrics();
    const text = [
      'q 3',
      'gpu_util{device="1"} 0.9',
      'gpu_util{device="0"} 0.4',
      'temperature 71',
      'lora_info{engine="y",max_lora="9",running_lora_adapters="no"} 5',
      'lora_info{engine="x",max_lora="1",running_lora_adapters="yes"} 4',
    ].join('\n');
    expect(extractEngineMetrics(text, engine, m)).toEqual([]);
    expect(m).toMatchObject({
      waitingQueueSize: 3,
      custom: { gpu: 0.4, temp: 71 },
      lora: { running: ['yes'], waiting: [], maxLoras: 1 },
    });
    expect(extractEngineMetrics('q 3\ntemperature 70', engine, m)).toEqual(['gpu_util{device="0"}']);
    expect(m.custom).toEqual({ gpu: 0.4, temp: 70 });
  });

  it('bad specs, unknown default engines and reserved names fail naming the key', () => {
    const base = `${LLMD}plugins: [{type: queue-scorer}, {type: core-metrics-extractor, parameters: PARAMS}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;
    const load = (path: string) => base.replace('PARAMS', path);
    expect(loadError(load('{engineConfigs: [{name: x, queuedRequestsSpec: "bad name{"}]}'))).toMatch(
      /parameter "engineConfigs.0.queuedRequestsSpec": not a valid metric specification/,
    );
    expect(loadError(load('{engineConfigs: [{name: x, kvUsageSpec: "kv{1a=b}"}]}'))).toMatch(
      /parameter "engineConfigs.0.kvUsageSpec": invalid label pair "1a=b"/,
    );
    expect(loadError(load('{defaultEngine: nope}'))).toMatch(
      /parameter "defaultEngine": "nope" is not a built-in engine or one of engineConfigs/,
    );
    expect(loadError(load('{engineConfigs: [{name: default}]}'))).toMatch(/engine config name cannot be "default"/);
    expect(loadError(load('{engineConfigs: [{name: x, surprise: 1}]}'))).toMatch(
      /unknown parameter "engineConfigs.0.surprise"/,
    );
    expect(
      loadError(
        load(
          '{engineConfigs: [{name: x, customMetrics: [{attributeKey: gpu, metricSpec: g}, {attributeKey: gpu, metricSpec: h}]}]}',
        ),
      ),
    ).toMatch(
      /parameter "engineConfigs.0.customMetrics.1.attributeKey": custom metric attributeKey "gpu" is duplicated/,
    );
    expect(
      loadError(load('{engineConfigs: [{name: x, customMetrics: [{attributeKey: gpu, metricSpec: ""}]}]}')),
    ).toMatch(/custom metric "gpu" spec cannot be empty/);
    expect(
      loadError(load('{engineConfigs: [{name: x, customMetrics: [{attributeKey: gpu, metricSpec: g, unit: pct}]}]}')),
    ).toMatch(/unknown parameter "engineConfigs.0.customMetrics.0.unit"/);
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

  it(
    'caCertPath verifies the server and clientCertPath/clientKeyPath authenticate the scraper (mTLS)',
    async () => {
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
      const tls = https.createServer({
        key: server.key,
        cert: server.cert,
        ca: [client.cert],
        requestCert: true,
        rejectUnauthorized: true,
      });
      const port = await serve(
        tls,
        'vllm:num_requests_waiting 5\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.1\n',
      );
      const config = (params: string) =>
        `${LLMD}plugins: [{type: queue-scorer}, {name: src, type: metrics-data-source, parameters: ${params}}, {type: core-metrics-extractor}]
dataLayer: {sources: [{pluginRef: src, extractors: [{pluginRef: core-metrics-extractor}]}]}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;

      const e = await start(
        config(
          `{scheme: https, insecureSkipVerify: false, caCertPath: ${ca}, clientCertPath: ${cert}, clientKeyPath: ${key}}`,
        ),
        port,
      );
      await waitFor(() => e.store.all()[0].metrics.updatedAt > 0, WAIT_MS, 'an mTLS scrape');
      expect(e.store.all()[0].metrics.waitingQueueSize).toBe(5);
      await e.close(500);
      epp = undefined;

      // Without the client certificate the server refuses the scrape, which is counted.
      const noClient = await start(config(`{scheme: https, insecureSkipVerify: false, caCertPath: ${ca}}`), port);
      await waitFor(
        async () =>
          (metricValue(
            await metricsText(`http://127.0.0.1:${noClient.metricsPort}`),
            'llm_d_epp_datalayer_poll_errors_total',
            { source_type: 'metrics-data-source' },
          ) ?? 0) >= 1,
        WAIT_MS,
        'a refused scrape',
      );
      expect(noClient.store.all()[0].metrics.updatedAt).toBe(0);
    },
    TEST_MS,
  );

  it('mismatched or unreadable files fail naming the parameter; caCertPath under insecureSkipVerify warns', async () => {
    const src = (params: string) =>
      `${LLMD}plugins: [{type: queue-scorer}, {type: metrics-data-source, parameters: ${params}}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;
    expect(loadError(src('{clientCertPath: /x.pem}'))).toMatch(
      /parameter "clientCertPath": clientCertPath and clientKeyPath must be set together/,
    );
    expect(loadError(src('{insecureSkipVerify: false, caCertPath: /nonexistent/ca.pem}'))).toMatch(
      /plugin "metrics-data-source" \(type metrics-data-source\): parameter "caCertPath": cannot read \/nonexistent\/ca\.pem: ENOENT/,
    );
    const { cert } = await selfSignedCertificate();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-metrics-ca-'));
    writeFileSync(path.join(dir, 'ca.pem'), cert);
    expect(loadEndpointPickerConfig(src(`{caCertPath: ${path.join(dir, 'ca.pem')}}`)).warnings).toEqual([
      'plugin "metrics-data-source" (type metrics-data-source): parameter "caCertPath" has no effect while insecureSkipVerify is true (its default); set insecureSkipVerify: false to verify',
    ]);
  });
});
