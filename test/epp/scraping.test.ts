/** Model-server metrics scraping against real simulators (and misbehaving servers), over loopback. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { emptyMetrics, eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { ENGINES, extractEngineMetrics, lastSample } from '../../src/epp/datalayer/engine-metrics.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { metricValue, metricsText, postJson, waitFor } from '../helpers.js';
import { ExtProcTestClient, body, headers, setHeadersOf } from './ext-proc-client.js';
import { loopbackEppConfig, spec } from './fixtures.js';

const CONFIG = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: queue-scorer}, {type: decode-filter}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}]}]
`;

let sims: SimulatorHandle[] = [];
let epp: EppHandle | undefined;
const servers: http.Server[] = [];
afterEach(async () => {
  await epp?.close(500);
  epp = undefined;
  await Promise.all(sims.map((handle) => handle.close(500)));
  sims = [];
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function start(specs: ReturnType<typeof spec>[], overrides: Parameters<typeof eppConfig>[0] = {}) {
  epp = await startEpp(
    loopbackEppConfig(CONFIG, specs, {
      refreshMetricsInterval: 20,
      // Far above any stall of a loaded CI machine: a scrape that timed out or went stale by accident would count
      // poll errors and change scheduling. Tests about timeouts and staleness set their own.
      metricsScrapeTimeout: 30_000,
      metricsStalenessThreshold: 60_000,
      ...overrides,
    }),
  );
  return epp;
}

describe('scraping vLLM metrics from simulators', () => {
  it('reads queue, running, KV usage, cache config, histograms and prefix counters; scheduling follows the queues', async () => {
    // Slow decode engines with one slot, so queued requests show up in vllm:num_requests_waiting.
    const slow = { host: '127.0.0.1', port: 0, maxNumSeqs: 1, timeToFirstToken: 700, interTokenLatency: 0, seed: 1 };
    sims = [await startSimulator(simConfig(slow)), await startSimulator(simConfig(slow))];
    const e = await start([
      spec('d0', '127.0.0.1', 'decode', {}, sims[0].port),
      spec('d1', '127.0.0.1', 'decode', {}, sims[1].port),
    ]);
    const d0 = e.store.get('default/d0')!;
    await waitFor(() => d0.metrics.updatedAt > 0 && !d0.metrics.stale, 5000, 'first scrape');
    expect(d0.metrics).toMatchObject({
      waitingQueueSize: 0,
      runningRequests: 0,
      kvCacheUsage: 0,
      cacheBlockSize: 16,
      cacheNumBlocks: 1024,
    });

    // Three requests on d0: one runs, two wait.
    const pending = [1, 2, 3].map(() =>
      postJson(
        `${sims[0].url}/v1/completions`,
        { model: 'sim-model', prompt: 'hello there', max_tokens: 1 },
        {},
        15_000,
      ).catch(() => undefined),
    );
    await waitFor(() => d0.metrics.waitingQueueSize === 2 && d0.metrics.runningRequests === 1, 5000, 'queue visible');
    const client = new ExtProcTestClient(`127.0.0.1:${e.grpcPort}`);
    try {
      const call = client.open();
      call.send(
        headers({ ':path': '/v1/completions' }),
        body(JSON.stringify({ model: 'sim-model', prompt: 'hi' }), true),
      );
      const [r] = await call.waitFor(1);
      expect(setHeadersOf(r.request_headers!.response.header_mutation)[0][1]).toBe(`127.0.0.1:${sims[1].port}`);
      call.end();
    } finally {
      client.close();
    }
    // Finished requests fill the histograms the deciders read.
    await Promise.all(pending);
    await waitFor(
      () => (d0.metrics.timeToFirstToken?.count ?? 0) >= 3 && (d0.metrics.prefillTime?.count ?? 0) >= 3,
      10_000,
      'histograms',
    );
    expect(d0.metrics.promptTokens!.sum).toBeGreaterThan(0);
    expect(d0.metrics.prefixCacheQueries).toBeGreaterThan(0);
    // A 2-token prompt never fills a block, so nothing can hit; the counter is read all the same.
    expect(d0.metrics.prefixCacheHits).toBe(0);

    const text = await metricsText(`http://127.0.0.1:${e.metricsPort}`);
    expect(metricValue(text, 'llm_d_epp_ready_endpoints', { name: 'epp' })).toBe(2);
    // Endpoints by name, in both families (llm-d-router's per_endpoint and GAIE's per_pod gauges).
    expect(metricValue(text, 'llm_d_epp_per_endpoint_queue_size', { name: 'epp', model_server_endpoint: 'd1' })).toBe(
      0,
    );
    expect(metricValue(text, 'inference_pool_per_pod_queue_size', { name: 'epp', model_server_pod: 'd1' })).toBe(0);
    expect(metricValue(text, 'inference_pool_ready_pods', { name: 'epp' })).toBe(2);
    expect(
      metricValue(text, 'llm_d_epp_datalayer_poll_errors_total', { source_type: 'metrics-data-source' }) ?? 0,
    ).toBe(0);
  });

  it('a server that goes away marks its endpoint stale and is counted; the EPP keeps serving with the rest', async () => {
    sims = [
      await startSimulator(simConfig({ host: '127.0.0.1', port: 0 })),
      await startSimulator(simConfig({ host: '127.0.0.1', port: 0 })),
    ];
    // Leaving the pool gauges is by age: a's last good scrape must get older than the threshold.
    const e = await start(
      [spec('a', '127.0.0.1', 'decode', {}, sims[0].port), spec('b', '127.0.0.1', 'decode', {}, sims[1].port)],
      { metricsStalenessThreshold: 500 },
    );
    const [a, b] = [e.store.get('default/a')!, e.store.get('default/b')!];
    await waitFor(() => !a.metrics.stale && !b.metrics.stale, 5000, 'both scraped');
    await sims[0].close(500);
    await waitFor(() => a.metrics.stale, 5000, 'a stale');
    const text = await metricsText(`http://127.0.0.1:${e.metricsPort}`);
    expect(
      metricValue(text, 'llm_d_epp_datalayer_poll_errors_total', { source_type: 'metrics-data-source' }),
    ).toBeGreaterThanOrEqual(1);
    await waitFor(
      async () =>
        metricValue(await metricsText(`http://127.0.0.1:${e.metricsPort}`), 'llm_d_epp_ready_endpoints', {
          name: 'epp',
        }) === 1,
      5000,
      'a left the pool gauges',
    );
    // b is still scraped (a stall of the machine may age it past 500 ms for a moment; its next scrape refreshes it).
    await waitFor(() => !b.metrics.stale && b.metrics.updatedAt > 0, 30_000, 'b scraped');
    expect(a.metrics.stale).toBe(true);
    expect(a.metrics.cacheNumBlocks).toBe(1024); // last values are kept
  });

  it('a scrape of a server that never answers ends at --metrics-scrape-timeout, is counted, and the next scrape follows', async () => {
    let scrapes = 0;
    const hang = http.createServer(() => {
      scrapes++;
    });
    servers.push(hang);
    await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
    const e = await start([spec('hang', '127.0.0.1', 'decode', {}, (hang.address() as AddressInfo).port)], {
      metricsScrapeTimeout: 100,
    });
    const url = `http://127.0.0.1:${e.metricsPort}`;
    // Without the deadline the first scrape would hang forever: no error counted, and no second scrape.
    await waitFor(() => scrapes >= 3, 5000, 'three scrapes of the hung server');
    expect(
      metricValue(await metricsText(url), 'llm_d_epp_datalayer_poll_errors_total', {
        source_type: 'metrics-data-source',
      }),
    ).toBeGreaterThanOrEqual(2);
    expect(e.store.get('default/hang')!.metrics.stale).toBe(true);
  });

  it('a server that never answers times out (bounded) and bad or oversized answers are failures, not crashes', async () => {
    const hang = http.createServer(() => undefined);
    const huge = http.createServer((_req, res) => res.end('x'.repeat(4096)));
    const partial = http.createServer((_req, res) => res.end('vllm:num_requests_waiting{model_name="m"} 3\n'));
    for (const s of [hang, huge, partial]) {
      servers.push(s);
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    }
    const port = (server: http.Server) => (server.address() as AddressInfo).port;
    const e = await start(
      [
        spec('hang', '127.0.0.1', 'decode', {}, port(hang)),
        spec('huge', '127.0.0.1', 'decode', {}, port(huge)),
        spec('partial', '127.0.0.1', 'decode', {}, port(partial)),
      ],
      {
        maxMetricsResponseSize: 1024,
      },
    );
    const url = `http://127.0.0.1:${e.metricsPort}`;
    await waitFor(
      async () =>
        (metricValue(await metricsText(url), 'llm_d_epp_datalayer_poll_errors_total', {
          source_type: 'metrics-data-source',
        }) ?? 0) >= 3,
      5000,
      'timeouts and size errors counted',
    );
    await waitFor(
      async () =>
        (metricValue(await metricsText(url), 'llm_d_epp_datalayer_extract_errors_total', {
          source_type: 'metrics-data-source',
          extractor_type: 'core-metrics-extractor',
        }) ?? 0) >= 1,
      5000,
      'missing metrics counted',
    );
    expect(e.store.get('default/hang')!.metrics.stale).toBe(true);
    expect(e.store.get('default/huge')!.metrics.stale).toBe(true);
    expect(e.store.get('default/partial')!.metrics.waitingQueueSize).toBe(3);
  });
});

describe('engine metric extraction', () => {
  it('the last series of a family wins; labels with braces and escapes are handled', () => {
    const text =
      'vllm:num_requests_waiting{model_name="a"} 1\nvllm:num_requests_waiting_extra 9\nvllm:num_requests_waiting{model_name="b}\\"x"} 4 1700000000\n';
    expect(lastSample(text, 'vllm:num_requests_waiting')).toEqual({ labels: 'model_name="b}\\"x"', value: 4 });
    expect(lastSample(text, 'vllm:num_requests')).toBeUndefined();
  });

  it('sglang names map to the same fields; missing required metrics are reported', () => {
    const m = emptyMetrics();
    const missing = extractEngineMetrics(
      'sglang:num_queue_reqs 2\nsglang:num_running_reqs 5\nsglang:cache_config_info{page_size="32",num_pages="900"} 1\n',
      ENGINES.sglang,
      m,
    );
    expect(missing).toEqual(['sglang:token_usage']);
    expect(m).toMatchObject({ waitingQueueSize: 2, runningRequests: 5, cacheBlockSize: 32, cacheNumBlocks: 900 });
    const v = emptyMetrics();
    extractEngineMetrics('vllm:gpu_cache_usage_perc 0.5\n', ENGINES.vllm, v);
    expect(v.kvCacheUsage).toBe(0.5);
  });
});
