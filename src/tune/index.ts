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

export async function runTune(optionValues: OptionValues<typeof tuneOptions>, logger: Logger, signal?: AbortSignal): Promise<Recommendation> {
  const preset = TUNE_PRESETS[optionValues.preset]!;
  const endpoint = optionValues.endpoint || undefined;
  const topologies: Topology[] = endpoint
    ? [{ ...parseTopology(`agg${optionValues.gpus}`), name: optionValues.label }]
    : (optionValues.topologies.length > 0 ? optionValues.topologies : preset.topologies).map(parseTopology);
  const loads = optionValues.concurrency.length > 0 ? optionValues.concurrency.map(Number) : preset.loads;
  const slo = {
    ttftMs: optionValues.sloTtft > 0 ? optionValues.sloTtft : preset.slo.ttftMs,
    tpotMs: optionValues.sloTpot > 0 ? optionValues.sloTpot : preset.slo.tpotMs,
    percentile: Number(optionValues.sloPercentile) as 50 | 90 | 95 | 99,
  };
  const timeScale = optionValues.timeScale > 0 ? optionValues.timeScale : preset.timeScale;
  const started = Date.now();
  const runs = await runSweep({
    topologies,
    loads,
    requestsPerConcurrency: optionValues.requestsPerConcurrency > 0 ? optionValues.requestsPerConcurrency : preset.requestsPerConcurrency,
    workload: preset.workload,
    profile: (optionValues.profile || preset.profile) as ProfileName,
    timeScale,
    model: optionValues.model,
    seed: optionValues.seed,
    outDir: path.resolve(optionValues.out),
    endpoint,
    logger,
    progress: (line) => process.stderr.write(`${line}\n`),
    signal,
  });
  return writeSweepOutputs(path.resolve(optionValues.out), runs, slo, endpoint ? optionValues.gpus : optionValues.gpuBudget > 0 ? optionValues.gpuBudget : preset.gpuBudget, {
    title: endpoint ? `Load sweep of ${optionValues.label}` : `xPyD tuning: ${optionValues.preset}`,
    command: `pd-router tune ${process.argv.slice(3).join(' ')}`.trim(),
    description: endpoint ? `Load levels against ${endpoint}.` : preset.description,
    workload: `${preset.workload.name}: ${preset.workload.description}`,
    simulated: !endpoint,
    timeScale,
    wallSeconds: (Date.now() - started) / 1000,
  });
}
