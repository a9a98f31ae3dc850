/** A Prometheus scrape config for a running local stack: every component's metrics, labelled with its role. */
import { stringify as toYaml } from 'yaml';
import type { DevStack } from './stack.js';

function target(url: string): string {
  return url.replace(/^https?:\/\//, '');
}

export function prometheusScrapeConfig(devStack: DevStack): string {
  const o = devStack.options;
  const job = (name: string, path: string, targets: Array<{ target: string; labels: Record<string, string> }>) => ({
    job_name: name,
    metrics_path: path,
    scrape_interval: '5s',
    static_configs: targets.map((value) => ({ targets: [value.target], labels: value.labels })),
  });
  return toYaml({
    global: { scrape_interval: '5s' },
    scrape_configs: [
      job('pd-router-gateway', '/gateway/metrics', [{ target: target(devStack.gateway.url), labels: { component: 'gateway' } }]),
      job('pd-router-epp', '/metrics', [{ target: `${o.host}:${devStack.epp.ports.metricsPort}`, labels: { component: 'epp' } }]),
      job('pd-router-sidecar', '/sidecar/metrics', devStack.decodes.map((decodeUnit) => ({ target: target(decodeUnit.sidecar.url), labels: { component: 'sidecar', pod: decodeUnit.name } }))),
      job('vllm', '/metrics', [
        ...devStack.prefills.map((params, i) => ({ target: target(params.url), labels: { component: 'vllm', role: 'prefill', pod: `prefill-${i}` } })),
        ...devStack.decodes.map((decodeUnit) => ({ target: target(decodeUnit.sim.url), labels: { component: 'vllm', role: 'decode', pod: decodeUnit.name } })),
      ]),
    ],
  });
}
