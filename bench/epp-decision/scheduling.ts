/**
 * Scheduling latency per decision, in-process: parse the body (JSON, prompt extraction, token estimate) and schedule
 * it (prefix hashing and matching, both profiles' filters/scorers/pickers, the decider, PreRequest with the index
 * update), on a synthetic pool whose metrics change as if scraped.
 */
import { silentLogger } from '../../src/common/index.js';
import { RequestDirector } from '../../src/epp/director.js';
import { EndpointStore, loadEndpointPickerConfig } from '../../src/epp/index.js';
import { BENCH_CONFIG, RequestBodies, percentiles, poolSpecs, rng, type Percentiles } from './workload.js';

export interface SchedulingResult {
  endpoints: number;
  tokens: number;
  decisions: number;
  /** µs: parse + schedule */
  total: Percentiles;
  /** µs: schedule only */
  schedule: Percentiles;
  prefillShare: number;
  /**
   * µs of process CPU (user + system) per decision over the measured loop, the index update between decisions and
   * GC included. Unlike the latencies it does not grow when other processes compete for the cores.
   */
  cpuPerDecision: number;
}

export async function runSchedulingBench(
  endpoints: number,
  tokens: number,
  opts: { iterations: number; maxMs: number; warmup: number },
): Promise<SchedulingResult> {
  const random = rng(7);
  const config = loadEndpointPickerConfig(BENCH_CONFIG, { random });
  const store = new EndpointStore();
  store.replaceAll(poolSpecs(endpoints));
  const mutate = () => {
    for (const e of store.all())
      Object.assign(e.metrics, {
        waitingQueueSize: Math.floor(random() * 8),
        kvCacheUsage: random(),
        updatedAt: Date.now(),
        stale: false,
      });
  };
  mutate();
  const director = new RequestDirector(config, store, config.metrics, silentLogger());
  const bodies = new RequestBodies(tokens);
  const headers = (i: number): Record<string, string> => ({ ':path': '/v1/completions', 'x-request-id': `bench-${i}` });
  const one = (i: number): [number, number, boolean] => {
    const body = bodies.next();
    const t0 = performance.now();
    const parsed = director.parse(`bench-${i}`, headers(i), body);
    const t1 = performance.now();
    const s = director.schedule(parsed.request, undefined);
    const t2 = performance.now();
    director.complete(s);
    return [(t2 - t0) * 1000, (t2 - t1) * 1000, s.ctx.decision?.type === 'prefill-decode'];
  };
  // As in the server, the event loop turns between decisions: the prefix-index update of each pick runs there
  // (off the decision path, as upstream), and its cost shows in the throughput benchmark.
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  for (let i = 0; i < opts.warmup; i++) {
    one(i);
    await turn();
  }
  const total: number[] = [];
  const schedule: number[] = [];
  let prefill = 0;
  const deadline = performance.now() + opts.maxMs;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < opts.iterations && performance.now() < deadline; i++) {
    if (i % 50 === 0) mutate(); // a scrape landed
    const [t, s, p] = one(opts.warmup + i);
    await turn();
    total.push(t);
    schedule.push(s);
    if (p) prefill++;
  }
  const cpu = process.cpuUsage(cpu0);
  const n = Math.max(1, total.length);
  return {
    endpoints,
    tokens,
    decisions: total.length,
    total: percentiles(total),
    schedule: percentiles(schedule),
    prefillShare: prefill / n,
    cpuPerDecision: (cpu.user + cpu.system) / n,
  };
}
