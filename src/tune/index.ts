/** xPyD ratio tuning: `pd-router tune`. */
import path from 'node:path';
import type { Logger } from '../common/index.js';
import type { OptionValues } from '../common/index.js';
import type { ProfileName } from '../dev/profiles.js';
import type { Recommendation } from './analysis.js';
import type { tuneOptions } from './options.js';
import { TUNE_PRESETS } from './presets.js';
import { writeSweepOutputs } from './report.js';
import { runSweep } from './runner.js';
import { parseTopology, type Topology } from './topology.js';

export { tuneCommand, tuneOptions } from './options.js';
export { TUNE_PRESETS, type TunePreset } from './presets.js';
export { parseTopology, scaleByTp, gpus, shapeName, displayName, type Topology } from './topology.js';
export { paretoFront, recommend, topologyGoodputs, runPoint, type SweepRun, type RunPoint } from './analysis.js';
export { renderLineChart, niceTicks } from './svg-chart.js';
export { writeSweepOutputs } from './report.js';
export { runSweep } from './runner.js';

export async function runTune(v: OptionValues<typeof tuneOptions>, logger: Logger, signal?: AbortSignal): Promise<Recommendation> {
  const preset = TUNE_PRESETS[v.preset]!;
  const endpoint = v.endpoint || undefined;
  const topologies: Topology[] = endpoint
    ? [{ ...parseTopology(`agg${v.gpus}`), name: v.label }]
    : (v.topologies.length > 0 ? v.topologies : preset.topologies).map(parseTopology);
  const loads = v.concurrency.length > 0 ? v.concurrency.map(Number) : preset.loads;
  const slo = {
    ttftMs: v.sloTtft > 0 ? v.sloTtft : preset.slo.ttftMs,
    tpotMs: v.sloTpot > 0 ? v.sloTpot : preset.slo.tpotMs,
    percentile: Number(v.sloPercentile) as 50 | 90 | 95 | 99,
  };
  const timeScale = v.timeScale > 0 ? v.timeScale : preset.timeScale;
  const started = Date.now();
  const runs = await runSweep({
    topologies,
    loads,
    requestsPerConcurrency: v.requestsPerConcurrency > 0 ? v.requestsPerConcurrency : preset.requestsPerConcurrency,
    workload: preset.workload,
    profile: (v.profile || preset.profile) as ProfileName,
    timeScale,
    model: v.model,
    seed: v.seed,
    outDir: path.resolve(v.out),
    endpoint,
    logger,
    progress: (line) => process.stderr.write(`${line}\n`),
    signal,
  });
  return writeSweepOutputs(path.resolve(v.out), runs, slo, endpoint ? v.gpus : v.gpuBudget > 0 ? v.gpuBudget : preset.gpuBudget, {
    title: endpoint ? `Load sweep of ${v.label}` : `xPyD tuning: ${v.preset}`,
    command: `pd-router tune ${process.argv.slice(3).join(' ')}`.trim(),
    description: endpoint ? `Load levels against ${endpoint}.` : preset.description,
    workload: `${preset.workload.name}: ${preset.workload.description}`,
    simulated: !endpoint,
    timeScale,
    wallSeconds: (Date.now() - started) / 1000,
  });
}
