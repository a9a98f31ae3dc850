import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prometheusScrapeConfig } from '../../src/dev/prometheus.js';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { eppConfig, startEpp } from '../../src/epp/index.js';
import { ROOT, metricsText, postJson } from '../helpers.js';
import { dashboardQueries, metricNames, orVariants } from './grafana-queries.js';

type Mode = 'both' | 'llm-d' | 'gaie';
const MODES: Mode[] = ['both', 'llm-d', 'gaie'];

let stack: DevStack;
/** Names every component but the EPP exposes, and the EPP's names per --metrics-family. */
const others = new Set<string>();
const epp: Record<Mode, Set<string>> = { both: new Set(), 'llm-d': new Set(), gaie: new Set() };
const namesIn = (text: string, into: Set<string>) => {
  for (const m of text.matchAll(/^# (?:HELP|TYPE) (\S+)/gm)) into.add(m[1]!);
};
const exposed = (mode: Mode) => new Set([...others, ...epp[mode]]);

beforeAll(async () => {
  stack = await startDevStack({ mode: 'in-process', basePort: 0, gatewayPort: 0, profile: 'zero', nonCachedTokens: 16 });
  // Some traffic, disaggregated and not, so every series exists.
  for (const content of ['short', 'long '.repeat(200)]) {
    await postJson(`${stack.gateway.url}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content }], max_tokens: 3, ignore_eos: true });
  }
  const texts = await Promise.all([
    metricsText(stack.gateway.url, '/gateway/metrics'),
    metricsText(stack.decodes[0]!.sidecar.url, '/sidecar/metrics'),
    metricsText(stack.decodes[0]!.sim.url),
    metricsText(stack.prefills[0]!.url),
  ]);
  for (const t of texts) namesIn(t, others);
  namesIn(await metricsText(`http://127.0.0.1:${stack.epp.ports.metricsPort}`), epp.both);
  // The same EPP (endpoints, config) with each single family.
  for (const family of ['llm-d', 'gaie'] as const) {
    const e = await startEpp(eppConfig({ host: '127.0.0.1', grpcPort: 0, grpcHealthPort: 0, metricsPort: 0, secureServing: false, endpointsFile: stack.endpointsFile, configFile: stack.eppConfigFile, metricsFamily: family }));
    try {
      namesIn(await metricsText(`http://127.0.0.1:${e.metricsPort}`), epp[family]);
    } finally {
      await e.close(1000);
    }
  }
}, 180_000);
afterAll(() => stack?.close());

describe('Grafana dashboard', () => {
  const queries = dashboardQueries(path.join(ROOT, 'deploy/grafana/pd-router-dashboard.json'));

  it('every query can be answered with each --metrics-family: one side of each `or` uses only exposed metrics', () => {
    const unanswerable: string[] = [];
    for (const mode of MODES) {
      const names = exposed(mode);
      for (const q of queries) {
        if (!orVariants(q.expr).some((value) => metricNames(value).every((count) => names.has(count)))) unanswerable.push(`${mode}: ${q.panel} ${q.refId}: ${q.expr}`);
      }
    }
    expect(unanswerable).toEqual([]);
  });

  it('names only metrics some mode exposes (no typo hides behind an `or`)', () => {
    const all = new Set(MODES.flatMap((message) => [...exposed(message)]));
    const unknown = queries.flatMap((query) => metricNames(query.expr).filter((count) => !all.has(count)).map((count) => `${query.panel}: ${count}`));
    expect(unknown).toEqual([]);
    // The families really differ, so the test above checks something.
    expect(epp.gaie.has('llm_d_epp_disagg_decision_total')).toBe(false);
    expect(epp['llm-d'].has('llm_d_inference_scheduler_disagg_decision_total')).toBe(false);
  });

  it('covers decisions by type and reason, EPP requests, the TTFT split, queues and KV usage', () => {
    const all = queries.map((query) => query.expr).join('\n');
    for (const m of ['llm_d_epp_disagg_decision_total', 'llm_d_inference_scheduler_disagg_decision_total', 'llm_d_epp_disagg_decision_reason_total', 'inference_objective_request_total', 'pd_router_sidecar_prefill_duration_seconds', 'vllm:nixl_xfer_time_seconds', 'pd_router_sidecar_decode_ttfb_seconds', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc']) {
      expect(all).toContain(m);
    }
  });
});

describe('Prometheus scrape configs', () => {
  it('the dev stack config names every component\'s metrics endpoint', () => {
    const cfg = parse(prometheusScrapeConfig(stack)) as { scrape_configs: Array<{ job_name: string; metrics_path: string; static_configs: Array<{ targets: string[] }> }> };
    const jobs = Object.fromEntries(cfg.scrape_configs.map((j) => [j.job_name, j]));
    expect(jobs['pd-router-gateway']!.metrics_path).toBe('/gateway/metrics');
    expect(jobs['pd-router-sidecar']!.metrics_path).toBe('/sidecar/metrics');
    expect(jobs.vllm!.static_configs).toHaveLength(2);
  });

  it('the Kubernetes config parses and scrapes the sidecar path', () => {
    const k8s = parse(readFileSync(path.join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as { scrape_configs: Array<{ job_name: string; metrics_path?: string }> };
    expect(k8s.scrape_configs.map((j) => j.job_name)).toEqual(['pd-router-epp', 'pd-router-sidecar', 'vllm']);
    expect(k8s.scrape_configs[1]!.metrics_path).toBe('/sidecar/metrics');
  });
});
