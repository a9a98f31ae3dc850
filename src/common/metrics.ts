/**
 * Prometheus metrics. Each component instance owns a Registry, so several components (or several simulators) can run
 * in one process, as the dev stack and the tests do, without their series colliding. Process metrics (CPU, memory,
 * event loop lag) are collected once per process and merged into every /metrics answer.
 */
import client, { Registry } from 'prom-client';

export { Registry } from 'prom-client';

let processRegistry: Registry | undefined;

/** The process-wide registry with prom-client's default process metrics. */
export function processMetricsRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    client.collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** A fresh registry for one component instance. */
export function createRegistry(): Registry {
  return new Registry();
}

/** Renders the given registries plus the process metrics in the Prometheus text format. */
export async function renderMetrics(registries: readonly Registry[], includeProcess = true): Promise<{ contentType: string; body: string }> {
  const all = includeProcess ? [...registries, processMetricsRegistry()] : [...registries];
  const parts = await Promise.all(all.map((registry) => registry.metrics()));
  return { contentType: client.register.contentType, body: parts.filter((path) => path.length > 0).join('\n') };
}

/** Histogram buckets for request latencies in seconds, from 1 ms to 10 minutes. */
export const LATENCY_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
];

/** Buckets for a router's own overhead in seconds, from 50 µs to 1 s. */
export const OVERHEAD_BUCKETS_SECONDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
