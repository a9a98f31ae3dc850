/** Writes a sweep's results: JSON, a Markdown report with the tables and the recommendation, and SVG plots. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SloTargets } from '../loadgen/index.js';
import { goodputTable, paretoFront, recommend, resultsTable, runPoint, topologyGoodputs, type Recommendation, type SweepRun } from './analysis.js';
import { renderLineChart, type ChartSeries } from './svg-chart.js';

export interface SweepMeta {
  title: string;
  command: string;
  description: string;
  workload: string;
  simulated: boolean;
  timeScale: number;
  wallSeconds: number;
}

export const PLOT_FILES = {
  pareto: 'throughput-per-gpu-vs-tokens-per-user.svg',
  ttft: 'ttft-p90-vs-concurrency.svg',
  tpot: 'tpot-p90-vs-concurrency.svg',
};

export function writeSweepOutputs(outDir: string, runs: readonly SweepRun[], slo: SloTargets, gpuBudget: number, meta: SweepMeta): Recommendation {
  mkdirSync(outDir, { recursive: true });
  const points = runs.map((r) => runPoint(r, slo));
  const front = paretoFront(points);
  const goodputs = topologyGoodputs(runs, slo);
  const rec = recommend(goodputs, gpuBudget, slo);
  const topologies = [...new Set(points.map((p) => p.topology))];
  const series = (x: (p: (typeof points)[number]) => number, y: (p: (typeof points)[number]) => number): ChartSeries[] =>
    topologies.map((t) => ({ name: t, points: points.filter((p) => p.topology === t).map((p) => ({ x: x(p), y: y(p) })) }));

  writeFileSync(
    path.join(outDir, PLOT_FILES.pareto),
    renderLineChart({
      title: 'Throughput per GPU vs interactivity (one point per concurrency level)',
      xLabel: 'Tokens per second per user (1 / mean TPOT)',
      yLabel: 'Output tokens per second per GPU',
      series: series((p) => p.tokensPerSecPerUser, (p) => p.outputTokensPerSecPerGpu),
      highlight: front.map((p) => ({ x: p.tokensPerSecPerUser, y: p.outputTokensPerSecPerGpu })),
      highlightLabel: 'Pareto front',
    }),
  );
  writeFileSync(
    path.join(outDir, PLOT_FILES.ttft),
    renderLineChart({ title: 'Time to first token (p90) vs load', xLabel: 'Concurrency (requests in flight)', yLabel: 'TTFT p90 (s)', series: series((p) => p.load, (p) => p.ttftP90) }),
  );
  writeFileSync(
    path.join(outDir, PLOT_FILES.tpot),
    renderLineChart({ title: 'Time per output token (p90) vs load', xLabel: 'Concurrency (requests in flight)', yLabel: 'TPOT p90 (ms)', series: series((p) => p.load, (p) => p.tpotP90 * 1000) }),
  );

  const sloText = `${slo.ttftMs !== undefined ? `TTFT p${slo.percentile} ≤ ${slo.ttftMs} ms` : ''}${slo.ttftMs !== undefined && slo.tpotMs !== undefined ? ', ' : ''}${slo.tpotMs !== undefined ? `TPOT p${slo.percentile} ≤ ${slo.tpotMs} ms` : ''}`;
  const md = [
    `# ${meta.title}`,
    '',
    meta.description,
    '',
    `- Command: \`${meta.command}\``,
    `- Workload: ${meta.workload}`,
    `- SLOs: ${sloText}; GPU budget ${gpuBudget}`,
    meta.simulated
      ? `- Simulated: pd-router simulators (step engine), time scale ${meta.timeScale}; all times and rates are simulated, the sweep took ${meta.wallSeconds.toFixed(0)} s of wall time.`
      : `- Measured against a real deployment in ${meta.wallSeconds.toFixed(0)} s.`,
    '',
    '## Recommendation',
    '',
    rec.text,
    '',
    '## SLO goodput by topology (ranked per GPU)',
    '',
    goodputTable(goodputs),
    '',
    '## Runs',
    '',
    resultsTable(points, 'concurrency'),
    '',
    '## Pareto front (throughput per GPU vs tokens per second per user)',
    '',
    ...front.map((p) => `- ${p.topology} at concurrency ${p.load}: ${p.outputTokensPerSecPerGpu.toFixed(1)} tok/s/GPU, ${p.tokensPerSecPerUser.toFixed(1)} tok/s/user`),
    '',
    '## Plots',
    '',
    `![throughput per GPU vs tokens per user](${PLOT_FILES.pareto})`,
    '',
    `![TTFT p90 vs concurrency](${PLOT_FILES.ttft})`,
    '',
    `![TPOT p90 vs concurrency](${PLOT_FILES.tpot})`,
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'results.md'), md);
  writeFileSync(path.join(outDir, 'results.json'), JSON.stringify({ meta, slo, gpuBudget, recommendation: rec, goodputs, points, pareto: front, runs }, null, 2) + '\n');
  return rec;
}
