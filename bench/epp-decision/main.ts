/**
 * EPP decision benchmark: scheduling latency per decision (in-process) and ext_proc request throughput (real gRPC
 * over loopback), for 8, 64 and 256 endpoints with 1k- and 8k-token prompts. Bounded in count and time.
 *
 *   npm run build && node dist/bench/epp-decision/main.js [--iterations 20000] [--duration-ms 4000] [--concurrency 32] [--only scheduling|throughput|metrics]
 *
 * Target: p99 ≤ 1 ms per decision for 64 endpoints and 8k-token prompts.
 */
import { METRICS_FAMILIES } from '../../src/epp/metrics.js';
import { runMetricsCostBench } from './metrics-cost.js';
import { runSchedulingBench } from './scheduling.js';
import { runThroughputBench } from './throughput.js';

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const only = (() => {
  const i = process.argv.indexOf('--only');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();

const ENDPOINTS = [8, 64, 256];
const TOKENS = [1024, 8192];
const iterations = Math.min(flag('iterations', 20_000), 200_000);
const durationMs = Math.min(flag('duration-ms', 4_000), 60_000);
const concurrency = Math.min(flag('concurrency', 32), 512);
const f = (count: number, delta = 1) => count.toFixed(delta);

const os = await import('node:os');
console.log(
  `node ${process.version}, ${process.platform}/${process.arch}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')}`,
);
if (only === undefined || only === 'metrics') {
  console.log(`\nMetric recording per ext_proc request (CPU ns; everything one request records), by --metrics-family`);
  console.log('| family | CPU per request |');
  console.log('|---|---:|');
  for (const family of METRICS_FAMILIES)
    console.log(`| ${family} | ${f(runMetricsCostBench(family, 200_000), 0)} ns |`);
}
if (only === undefined || only === 'scheduling') {
  console.log(
    `\nScheduling latency per decision (µs; parse = JSON + prompt + token estimate; schedule = producers, profiles, decider, PreRequest), ${iterations} decisions max, 10 s max per row`,
  );
  console.log(
    '| endpoints | prompt tokens | decisions | schedule p50 | schedule p99 | parse+schedule p50 | parse+schedule p99 | CPU per decision | P/D share |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of ENDPOINTS) {
    for (const t of TOKENS) {
      const r = await runSchedulingBench(n, t, { iterations, maxMs: 10_000, warmup: 2_000 });
      console.log(
        `| ${n} | ${t} | ${r.decisions} | ${f(r.schedule.p50)} | ${f(r.schedule.p99)} | ${f(r.total.p50)} | ${f(r.total.p99)} | ${f(r.cpuPerDecision)} | ${f(r.prefillShare * 100, 0)}% |`,
      );
    }
  }
}
if (only === undefined || only === 'throughput') {
  console.log(
    `\next_proc throughput over loopback gRPC (plain text), ${concurrency} concurrent streams, ${durationMs} ms per row`,
  );
  console.log(
    'EPP thread = event-loop utilization of the EPP during the row (the load generator is a worker thread on the same 2 cores).',
  );
  console.log(
    '| endpoints | prompt tokens | requests | errors | requests/s | latency p50 (ms) | latency p99 (ms) | EPP thread busy | requests/s per busy EPP core |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of ENDPOINTS) {
    for (const t of TOKENS) {
      const r = await runThroughputBench(n, t, { durationMs, concurrency, maxRequests: 1_000_000 });
      console.log(
        `| ${n} | ${t} | ${r.requests} | ${r.errors} | ${f(r.requestsPerSecond, 0)} | ${f(r.latency.p50, 2)} | ${f(r.latency.p99, 2)} | ${f(r.serverUtilization * 100, 0)}% | ${f(r.requestsPerSecond / Math.max(0.01, r.serverUtilization), 0)} |`,
      );
    }
  }
}
