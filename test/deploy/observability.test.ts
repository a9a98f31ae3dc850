import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prometheusScrapeConfig } from '../../src/dev/prometheus.js';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { ROOT, metricsText, postJson } from '../helpers.js';

let stack: DevStack;
const exposed = new Set<string>();

beforeAll(async () => {
  stack = await startDevStack({ mode: 'in-process', basePort: 0, gatewayPort: 0, profile: 'zero', nonCachedTokens: 16 });
  // Some traffic, disaggregated and not, so every series exists.
  for (const content of ['short', 'long '.repeat(200)]) {
    await postJson(`${stack.gateway.url}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content }], max_tokens: 3, ignore_eos: true });
  }
  const texts = await Promise.all([
    metricsText(stack.gateway.url, '/gateway/metrics'),
    metricsText(`http://127.0.0.1:${stack.epp.ports.metricsPort}`),
    metricsText(stack.decodes[0]!.sidecar.url, '/sidecar/metrics'),
    metricsText(stack.decodes[0]!.sim.url),
    metricsText(stack.prefills[0]!.url),
  ]);
  for (const t of texts) for (const m of t.matchAll(/^# (?:HELP|TYPE) (\S+)/gm)) exposed.add(m[1]!);
}, 180_000);
afterAll(() => stack?.close());

/** Metric names in a PromQL expression (ours and vLLM's), histogram suffixes removed. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:vllm:|llm_d_|pd_router_)[a-zA-Z0-9_:]+)/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, ''));
}

describe('Grafana dashboard', () => {
  const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/pd-router-dashboard.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };

  it('queries only metrics that pd-router components and the simulator expose', () => {
    const missing: string[] = [];
    for (const p of dash.panels) for (const t of p.targets) for (const name of metricNames(t.expr)) if (!exposed.has(name)) missing.push(`${p.title}: ${name}`);
    expect(missing).toEqual([]);
  });

  it('covers decisions by type and reason, the TTFT split, queues and KV usage', () => {
    const all = dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    for (const m of ['llm_d_epp_disagg_decision_total', 'llm_d_epp_disagg_decision_reason_total', 'pd_router_sidecar_prefill_duration_seconds', 'vllm:nixl_xfer_time_seconds', 'pd_router_sidecar_decode_ttfb_seconds', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc']) {
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
