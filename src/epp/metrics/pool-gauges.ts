/**
 * The pool gauges, computed from the endpoint store when Prometheus scrapes (nothing on the request path).
 *
 * Both upstreams compute them from the endpoints whose metrics are fresh, and when none is fresh they set only the
 * ready count and leave the averages at their last values (and emit no average before the first one). They differ in
 * the arithmetic, which is kept per family:
 * - GAIE v1.4.0 (`datalayer/logger.refreshPrometheusMetrics`): mean KV use; the queue average is an integer
 *   division (Go `int / int`); `inference_pool_per_pod_queue_size` lists every endpoint by name.
 * - llm-d-router (`calculateSummary`): means and sample standard deviations (n − 1, at least 1), rounded to two
 *   decimals; `llm_d_epp_per_endpoint_queue_size` lists every endpoint by name.
 */
import { Gauge, type Registry } from 'prom-client';

export interface PoolEndpoint {
  /** Endpoint name (`<pod>-rank-<i>` for an InferencePool, the file's name otherwise). */
  name: string;
  waiting: number;
  running: number;
  kv: number;
  /** Metrics younger than the staleness threshold. */
  fresh: boolean;
}

export type PoolSnapshot = () => readonly PoolEndpoint[];

const round2 = (value: number) => Math.round(value * 100) / 100;

function summary(fresh: readonly PoolEndpoint[], pick: (poolEndpoint: PoolEndpoint) => number): { mean: number; std: number } {
  const n = fresh.length;
  let sum = 0;
  for (const e of fresh) sum += pick(e);
  const mean = sum / n;
  let ss = 0;
  for (const e of fresh) ss += (pick(e) - mean) ** 2;
  return { mean: round2(mean), std: round2(Math.sqrt(ss / Math.max(1, n - 1))) };
}

/** A `{name}` gauge whose value is computed at scrape; `undefined` leaves the last value (none yet: no series). */
function poolGauge(registry: Registry, poolName: string, name: string, help: string, value: () => number | undefined): void {
  new Gauge({
    name,
    help,
    labelNames: ['name'],
    registers: [registry],
    collect() {
      const v = value();
      if (v !== undefined) this.set({ name: poolName }, v);
    },
  });
}

function perEndpointGauge(registry: Registry, poolName: string, name: string, help: string, endpointLabel: string, snapshot: PoolSnapshot): void {
  new Gauge({
    name,
    help,
    labelNames: ['name', endpointLabel],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of snapshot()) this.set({ name: poolName, [endpointLabel]: e.name }, e.waiting);
    },
  });
}

const freshOf = (snapshot: PoolSnapshot) => () => snapshot().filter((poolEndpoint) => poolEndpoint.fresh);

export function registerGaiePoolGauges(registry: Registry, poolName: string, snapshot: PoolSnapshot): void {
  const fresh = freshOf(snapshot);
  const mean = (pick: (poolEndpoint: PoolEndpoint) => number, integer: boolean) => () => {
    const f = fresh();
    if (f.length === 0) return undefined;
    const total = f.reduce((acc, poolEndpoint) => acc + pick(poolEndpoint), 0);
    return integer ? Math.trunc(total / f.length) : total / f.length;
  };
  poolGauge(registry, poolName, 'inference_pool_average_kv_cache_utilization', '[ALPHA] The average kv cache utilization for an inference server pool.', mean((poolEndpoint) => poolEndpoint.kv, false));
  poolGauge(registry, poolName, 'inference_pool_average_queue_size', '[ALPHA] The average number of requests pending in the model server queue.', mean((poolEndpoint) => poolEndpoint.waiting, true));
  poolGauge(registry, poolName, 'inference_pool_ready_pods', '[ALPHA] The number of ready pods in the inference server pool.', () => fresh().length);
  perEndpointGauge(registry, poolName, 'inference_pool_per_pod_queue_size', '[ALPHA] The total number of requests pending in the model server queue for each underlying pod.', 'model_server_pod', snapshot);
}

export function registerLlmdPoolGauges(registry: Registry, poolName: string, snapshot: PoolSnapshot): void {
  const fresh = freshOf(snapshot);
  const stat = (pick: (poolEndpoint: PoolEndpoint) => number, which: 'mean' | 'std') => () => {
    const f = fresh();
    return f.length === 0 ? undefined : summary(f, pick)[which];
  };
  const P = 'llm_d_epp_';
  poolGauge(registry, poolName, `${P}average_kv_cache_utilization`, '[ALPHA] The average kv cache utilization for an inference server pool.', stat((poolEndpoint) => poolEndpoint.kv, 'mean'));
  poolGauge(registry, poolName, `${P}average_queue_size`, '[ALPHA] The average number of requests pending in the model server queue.', stat((poolEndpoint) => poolEndpoint.waiting, 'mean'));
  poolGauge(registry, poolName, `${P}average_running_requests`, '[ALPHA] The average number of running requests across model servers in the pool.', stat((poolEndpoint) => poolEndpoint.running, 'mean'));
  poolGauge(registry, poolName, `${P}std_dev_kv_cache_utilization`, '[ALPHA] The standard deviation kv cache utilization for an inference server pool.', stat((poolEndpoint) => poolEndpoint.kv, 'std'));
  poolGauge(registry, poolName, `${P}std_dev_queue_size`, '[ALPHA] The standard deviation number of requests pending in the model server queue.', stat((poolEndpoint) => poolEndpoint.waiting, 'std'));
  poolGauge(registry, poolName, `${P}std_dev_running_requests`, '[ALPHA] The standard deviation number of running requests across model servers in the pool.', stat((poolEndpoint) => poolEndpoint.running, 'std'));
  poolGauge(registry, poolName, `${P}ready_endpoints`, '[ALPHA] The number of ready endpoints in the inference server pool.', () => fresh().length);
  perEndpointGauge(registry, poolName, `${P}per_endpoint_queue_size`, '[ALPHA] The total number of requests pending in the model server queue for each underlying endpoint.', 'model_server_endpoint', snapshot);
}
