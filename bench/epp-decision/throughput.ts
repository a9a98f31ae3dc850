/**
 * ext_proc request throughput against the real gRPC server over loopback: an EPP started in-process (plain gRPC, file
 * discovery, injected metrics) and a load-generating worker thread.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { eppConfig, startEpp } from '../../src/epp/index.js';
import { BENCH_CONFIG, RequestBodies, percentiles, poolSpecs, type Percentiles } from './workload.js';

export interface ThroughputResult {
  endpoints: number;
  tokens: number;
  requests: number;
  errors: number;
  requestsPerSecond: number;
  /** ms, client-observed: stream open to last body chunk */
  latency: Percentiles;
  /** Event-loop utilization of the EPP's thread during the run (0..1); the client runs in another thread. */
  serverUtilization: number;
}

export async function runThroughputBench(
  endpoints: number,
  tokens: number,
  opts: { durationMs: number; concurrency: number; maxRequests: number },
): Promise<ThroughputResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'epp-bench-'));
  const file = path.join(dir, 'endpoints.yaml');
  const specs = poolSpecs(endpoints);
  writeFileSync(
    file,
    JSON.stringify({ endpoints: specs.map((endpointSpec) => ({ ...endpointSpec, port: String(endpointSpec.port) })) }),
  );
  const epp = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      endpointsFile: file,
      configText: BENCH_CONFIG,
    }),
  );
  let i = 0;
  for (const e of epp.store.all())
    Object.assign(e.metrics, { waitingQueueSize: i++ % 5, kvCacheUsage: 0.3, updatedAt: Date.now(), stale: false });
  try {
    // Distinct requests (repeats would make every decision a cache hit); the worker cycles through them.
    const source = new RequestBodies(tokens);
    const bodies = Array.from({ length: 4096 }, () => source.next());
    const load = (durationMs: number) =>
      new Promise<{ latencies: number[]; errors: number; elapsedMs: number }>((resolve, reject) => {
        const worker = new Worker(new URL('./load-worker.js', import.meta.url), {
          workerData: {
            address: `127.0.0.1:${epp.grpcPort}`,
            bodies,
            concurrency: opts.concurrency,
            durationMs,
            maxRequests: opts.maxRequests,
          },
        });
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    await load(Math.min(1000, opts.durationMs)); // warm-up (JIT, connections), not counted
    const elu0 = performance.eventLoopUtilization();
    const result = await load(opts.durationMs);
    const elu = performance.eventLoopUtilization(elu0);
    return {
      serverUtilization: elu.utilization,
      endpoints,
      tokens,
      requests: result.latencies.length,
      errors: result.errors,
      requestsPerSecond: (result.latencies.length / result.elapsedMs) * 1000,
      latency: percentiles(result.latencies),
    };
  } finally {
    await epp.close(1000);
  }
}
