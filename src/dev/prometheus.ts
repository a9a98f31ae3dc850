/** A Prometheus scrape config for a running local stack: every component's metrics, labelled with its role. */
import { stringify as toYaml } from 'yaml';
import type { DevStack } from './stack.js';

function target(url: string): string {
  return url.replace(/^https?:\/\//, '');
}

export function prometheusScrapeConfig(s: DevStack): string {
  const o = s.options;
  const job = (name: string, path: string, targets: Array<{ target: string; labels: Record<string, string> }>) => ({
    job_name: name,
    metrics_path: path,
    scrape_interval: '5s',
    static_configs: targets.map((t) => ({ targets: [t.target], labels: t.labels })),
  });
  return toYaml({
    global: { scrape_interval: '5s' },
    scrape_configs: [
      job('pd-router-gateway', '/gateway/metrics', [{ target: target(s.gateway.url), labels: { component: 'gateway' } }]),
      job('pd-router-epp', '/metrics', [{ target: `${o.host}:${s.epp.ports.metricsPort}`, labels: { component: 'epp' } }]),
      job('pd-router-sidecar', '/sidecar/metrics', s.decodes.map((d) => ({ target: target(d.sidecar.url), labels: { component: 'sidecar', pod: d.name } }))),
      job('vllm', '/metrics', [
        ...s.prefills.map((p, i) => ({ target: target(p.url), labels: { component: 'vllm', role: 'prefill', pod: `prefill-${i}` } })),
        ...s.decodes.map((d) => ({ target: target(d.sim.url), labels: { component: 'vllm', role: 'decode', pod: d.name } })),
      ]),
    ],
  });
}
