/**
 * The design-of-experiments loop: for each topology (setup treatment) stand up a local stack on simulators, run every
 * load level (run treatment) through the gateway, tear the stack down; or, against a real deployment, run the load
 * levels only. Every run's report is written as it finishes, so an interrupted sweep keeps what it measured.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { Logger } from '../common/index.js';
import { startDevStack } from '../dev/stack.js';
import { LATENCY_PROFILES, type ProfileName } from '../dev/profiles.js';
import { inferencePerfReport, runLoad, type WorkloadProfile } from '../loadgen/index.js';
import type { SweepRun } from './analysis.js';
import { gpus, scaleByTp, type Topology } from './topology.js';

export interface SweepOptions {
  topologies: Topology[];
  loads: number[];
  requestsPerConcurrency: number;
  workload: WorkloadProfile;
  profile: ProfileName;
  timeScale: number;
  model: string;
  seed: number;
  outDir: string;
  /** Against a real deployment: its URL; the topology list then holds one entry describing it. */
  endpoint?: string;
  logger: Logger;
  progress: (line: string) => void;
  signal?: AbortSignal;
}

function runDir(sweepOptions: SweepOptions, topology: Topology): string {
  const d = path.join(sweepOptions.outDir, 'runs', topology.name);
  mkdirSync(d, { recursive: true });
  return d;
}

async function runLevels(sweepOptions: SweepOptions, value: Topology, baseUrl: string, out: SweepRun[]): Promise<void> {
  for (const c of sweepOptions.loads) {
    if (sweepOptions.signal?.aborted) return;
    const started = Date.now();
    const result = await runLoad({
      baseUrl,
      model: sweepOptions.model,
      profile: sweepOptions.workload,
      arrival: { kind: 'concurrency', concurrency: c },
      requests: Math.max(c, sweepOptions.requestsPerConcurrency * c),
      timeScale: sweepOptions.endpoint ? 1 : sweepOptions.timeScale,
      seed: sweepOptions.seed,
      progress: false,
      signal: sweepOptions.signal,
    });
    const s = result.summary;
    out.push({ topology: value, load: c, loadKind: 'concurrency', summary: s });
    const report = inferencePerfReport(result, {
      load: { type: 'concurrent', concurrency: c, num_prompts: result.samples.length },
      server: { topology: value.name, gpus: gpus(value), endpoint: sweepOptions.endpoint ?? 'simulators', timeScale: sweepOptions.endpoint ? 1 : sweepOptions.timeScale },
    });
    const dir = runDir(sweepOptions, value);
    writeFileSync(path.join(dir, `concurrency-${c}.yaml`), toYaml(report));
    writeFileSync(path.join(dir, `concurrency-${c}.json`), JSON.stringify(report, null, 2) + '\n');
    sweepOptions.progress(
      `  ${value.name} concurrency ${c}: ${s.requests.total - s.requests.failures}/${s.requests.total} ok, ${s.throughput.outputTokensPerSec.toFixed(0)} tok/s, TTFT p90 ${(s.latency.timeToFirstToken.p90 * 1000).toFixed(0)} ms, TPOT p90 ${(s.latency.timePerOutputToken.p90 * 1000).toFixed(1)} ms (${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
  }
}

export async function runSweep(sweepOptions: SweepOptions): Promise<SweepRun[]> {
  const runs: SweepRun[] = [];
  if (sweepOptions.endpoint) {
    const t = sweepOptions.topologies[0]!;
    sweepOptions.progress(`${t.name} at ${sweepOptions.endpoint}`);
    await runLevels(sweepOptions, t, sweepOptions.endpoint, runs);
    return runs;
  }
  const base = LATENCY_PROFILES[sweepOptions.profile].sim;
  for (const [i, t] of sweepOptions.topologies.entries()) {
    if (sweepOptions.signal?.aborted) break;
    sweepOptions.progress(`[${i + 1}/${sweepOptions.topologies.length}] ${t.name} (${t.kind === 'pd' ? `${t.prefill.replicas}P×TP${t.prefill.tp} + ${t.decode.replicas}D×TP${t.decode.tp}` : `${t.decode.replicas}×TP${t.decode.tp} aggregated`}, ${gpus(t)} GPUs)`);
    const stack = await startDevStack({
      prefill: t.kind === 'pd' ? t.prefill.replicas : 0,
      decode: t.decode.replicas,
      profile: sweepOptions.profile,
      model: sweepOptions.model,
      basePort: 0,
      gatewayPort: 0,
      decider: t.kind === 'pd' ? 'always' : 'never',
      mode: 'processes',
      timeScale: sweepOptions.timeScale,
      seed: sweepOptions.seed,
      prefillSim: { ...scaleByTp(base, t.prefill.tp), engineModel: 'step', recordRequests: 0 },
      decodeSim: { ...scaleByTp(base, t.decode.tp), engineModel: 'step', recordRequests: 0 },
      // The EPP need not see response bodies during a sweep; sparing that hop leaves the CPU to the simulation.
      gateway: { responseBodyMode: 'none' },
      logger: sweepOptions.logger,
    });
    try {
      await runLevels(sweepOptions, t, stack.gateway.url, runs);
    } finally {
      await stack.close(2_000);
    }
  }
  return runs;
}
