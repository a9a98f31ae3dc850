/**
 * The EPP scraping llm-d-inference-sim's /metrics (vllm:num_requests_waiting, vllm:num_requests_running,
 * vllm:kv_cache_usage_perc, vllm:cache_config_info) and choosing by those figures. Two identical upstream instances;
 * one is made busy with real requests (it runs one request at a time and takes 30s to the first token), the other
 * stays idle. One EPP scores by KV-cache utilization only, another by queue depth only, so each figure is shown to
 * steer the pick on its own. Decisions are asked over ext_proc; nothing is sent to the idle instance.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEpp, eppConfig, type EppHandle } from '../../src/epp/index.js';
import { ExtProcTestClient, body, headers, setHeadersOf } from '../epp/ext-proc-client.js';
import { metricsText, metricValue, waitFor } from '../helpers.js';
import { MODEL, skipInterop, startUpstreamSim, type UpstreamSim } from './upstream.js';

const scorerConfig = (scorer: string) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: ${scorer}
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: ${scorer}
`;

const SIM_ARGS = [
  '--model',
  MODEL,
  '--enable-kvcache',
  '--kv-cache-size',
  '64',
  '--block-size',
  '16',
  '--max-num-seqs',
  '1',
  '--time-to-first-token',
  '30s',
];

let busy: UpstreamSim;
let idle: UpstreamSim;
const epps: Record<'kv' | 'queue', { epp: EppHandle; client: ExtProcTestClient }> = {} as never;
const held = new AbortController();
const inflight: Array<Promise<unknown>> = [];

beforeAll(async () => {
  if (skipInterop()) return;
  // --enable-kvcache needs POD_IP (it names the KV-event topic); events go to the default loopback ZMQ endpoint.
  [busy, idle] = await Promise.all([
    startUpstreamSim(SIM_ARGS, { env: { POD_IP: '127.0.0.1' }, name: 'upstream busy' }),
    startUpstreamSim(SIM_ARGS, { env: { POD_IP: '127.0.0.1' }, name: 'upstream idle' }),
  ]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-interop-scrape-'));
  const endpointsFile = path.join(dir, 'endpoints.yaml');
  writeFileSync(
    endpointsFile,
    `endpoints:
- {name: busy, address: "127.0.0.1", port: "${busy.port}"}
- {name: idle, address: "127.0.0.1", port: "${idle.port}"}
`,
  );
  for (const [key, scorer] of [
    ['kv', 'kv-cache-utilization-scorer'],
    ['queue', 'queue-scorer'],
  ] as const) {
    const epp = await startEpp(
      eppConfig({
        host: '127.0.0.1',
        grpcPort: 0,
        grpcHealthPort: 0,
        metricsPort: 0,
        secureServing: false,
        endpointsFile,
        configText: scorerConfig(scorer),
      }),
    );
    epps[key] = { epp, client: new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`) };
  }
}, 60_000);

afterAll(async () => {
  held.abort();
  await Promise.allSettled(inflight);
  for (const { epp, client } of Object.values(epps)) {
    client.close();
    await epp.close(1000);
  }
  await Promise.all([busy?.close(), idle?.close()]);
});

const scraped = (key: 'kv' | 'queue', sim: UpstreamSim) =>
  epps[key].epp.store.all().find((endpoint) => endpoint.hostPort === sim.hostPort)!.metrics;

/** Asks the EPP for `n` decisions over ext_proc; returns the chosen destinations. */
async function picks(key: 'kv' | 'queue', count: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const call = epps[key].client.open();
    call.send(
      headers({ ':path': '/v1/completions', ':method': 'POST', 'x-request-id': `scrape-${key}-${i}` }),
      body(JSON.stringify({ model: MODEL, prompt: `question ${i}` }), true),
    );
    const [h] = await call.waitFor(2);
    out.push(
      setHeadersOf(h.request_headers!.response.header_mutation).find(
        ([k]) => k === 'x-gateway-destination-endpoint',
      )![1],
    );
    call.end();
  }
  return out;
}

/** Sends a request to the busy instance that stays in it (running or waiting) until the end of the file. */
function occupy(prompt: string): void {
  inflight.push(
    fetch(`${busy.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt, max_tokens: 2 }),
      signal: held.signal,
    }).catch(() => undefined),
  );
}

describe.skipIf(skipInterop())('the EPP scrapes llm-d-inference-sim and routes by its figures', () => {
  it("idle: the scraped figures are upstream's own (zeros, and cache_config_info's block size and block count)", async () => {
    for (const key of ['kv', 'queue'] as const) {
      await waitFor(
        () => [busy, idle].every((upstreamSim) => scraped(key, upstreamSim).updatedAt > 0),
        10_000,
        `EPP (${key}) scraped both`,
      );
      for (const sim of [busy, idle]) {
        expect(scraped(key, sim)).toMatchObject({
          waitingQueueSize: 0,
          runningRequests: 0,
          kvCacheUsage: 0,
          cacheBlockSize: 16,
          cacheNumBlocks: 64,
          stale: false,
        });
      }
    }
    const m = await metricsText(`http://127.0.0.1:${epps.queue.epp.metricsPort}`);
    expect(metricValue(m, 'llm_d_epp_ready_endpoints', { name: 'epp' })).toBe(2);
  });

  it('KV-cache utilization: a long prompt running on one instance -> the kv-cache-utilization scorer picks the other', async () => {
    // 600 words = 600 simulated tokens = 37 full blocks of 16 out of 64: vllm:kv_cache_usage_perc 0.578125 while it runs.
    occupy(Array.from({ length: 600 }, (_, i) => `k${i}`).join(' '));
    await waitFor(() => scraped('kv', busy).kvCacheUsage > 0.5, 10_000, "the EPP to see the busy instance's KV usage");
    const upstream = await metricsText(busy.url);
    expect(scraped('kv', busy).kvCacheUsage).toBe(
      metricValue(upstream, 'vllm:kv_cache_usage_perc', { model_name: MODEL }),
    );
    expect(scraped('kv', busy).kvCacheUsage).toBeCloseTo(37 / 64, 6);
    expect(scraped('kv', busy)).toMatchObject({ runningRequests: 1, waitingQueueSize: 0 });
    expect(scraped('kv', idle).kvCacheUsage).toBe(0);
    expect(new Set(await picks('kv', 8))).toEqual(new Set([idle.hostPort]));
  });

  it('queue depth: two more requests wait on the busy instance -> the queue scorer picks the other', async () => {
    occupy('short one');
    occupy('short two');
    await waitFor(() => scraped('queue', busy).waitingQueueSize === 2, 10_000, 'the EPP to see two waiting requests');
    expect(metricValue(await metricsText(busy.url), 'vllm:num_requests_waiting', { model_name: MODEL })).toBe(2);
    expect(scraped('queue', idle).waitingQueueSize).toBe(0);
    expect(new Set(await picks('queue', 8))).toEqual(new Set([idle.hostPort]));
    // The pool gauges carry the same figures.
    const m = await metricsText(`http://127.0.0.1:${epps.queue.epp.metricsPort}`);
    expect(metricValue(m, 'llm_d_epp_per_endpoint_queue_size', { name: 'epp', model_server_endpoint: 'busy' })).toBe(2);
    expect(metricValue(m, 'llm_d_epp_per_endpoint_queue_size', { name: 'epp', model_server_endpoint: 'idle' })).toBe(0);
    expect(metricValue(m, 'llm_d_epp_average_queue_size', { name: 'epp' })).toBe(1);
  });
});
