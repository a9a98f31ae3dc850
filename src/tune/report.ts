/** Writes a sweep's results: JSON, a Markdown report with the tables and the recommendation, and SVG plots. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SloTargets } from '../loadgen/index.js';
import { goodputTable, paretoFront, recommend, resultsTable, runPoint, topologyGoodputs, type Recommendation, type SweepRun } from './analysis.js';
import { renderLineChart, type ChartSeries, type MarkedPoint, type ReferenceLine } from './svg-chart.js';
import { displayName, shapeName } from './topology.js';

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
  const points = runs.map((sweepRun) => runPoint(sweepRun, slo));
  const front = paretoFront(points);
  const goodputs = topologyGoodputs(runs, slo);
  const rec = recommend(goodputs, gpuBudget, slo);
  const topologies = [...new Set(points.map((runPoint) => runPoint.topology))];
  type Point = (typeof points)[number];
  // Latency plots show the percentile the SLO gates on, so the SLO line and the points are comparable.
  const pkey = `p${slo.percentile}` as 'p50' | 'p90' | 'p95' | 'p99';
  const atSlo = (runPoint: Point, metric: 'timeToFirstToken' | 'timePerOutputToken') => runs[points.indexOf(runPoint)]!.summary.latency[metric][pkey];
  const unit = runs[0]?.loadKind === 'rate' ? 'rate' : 'c';
  // Each point is one load level; where the x axis is not the load, the point says which it is.
  const series = (fn: (runPoint: Point) => number, item: (runPoint: Point) => number, labelled = false): ChartSeries[] =>
    topologies.map((text) => ({
      name: displayName(text),
      points: points.filter((runPoint) => runPoint.topology === text).map((runPoint) => ({ x: fn(runPoint), y: item(runPoint), label: labelled ? `${unit}=${runPoint.load}` : undefined })),
    }));
  // The recommended shape at the load level that gave its goodput, drawn as a star on every plot.
  const chosen = rec.best && points.find((runPoint) => runPoint.topology === rec.best!.topology && runPoint.load === rec.best!.atLoad);
  const marked = (fn: (runPoint: Point) => number, item: (runPoint: Point) => number): MarkedPoint | undefined =>
    chosen && { x: fn(chosen), y: item(chosen), label: `recommended: ${shapeName(chosen.topology) ?? chosen.topology} at ${unit === 'c' ? 'concurrency' : 'rate'} ${chosen.load}` };
  const sloLine = (target: number | undefined, scale: number, what: string): ReferenceLine[] =>
    target === undefined ? [] : [{ y: target * scale, label: `SLO: ${what} p${slo.percentile} ≤ ${target} ms` }];

  writeFileSync(
    path.join(outDir, PLOT_FILES.pareto),
    renderLineChart({
      title: 'Throughput per GPU vs interactivity (one point per concurrency level)',
      xLabel: 'Tokens per second per user (1 / mean TPOT)',
      yLabel: 'Output tokens per second per GPU',
      series: series((runPoint) => runPoint.tokensPerSecPerUser, (runPoint) => runPoint.outputTokensPerSecPerGpu, true),
      highlight: front.map((runPoint) => ({ x: runPoint.tokensPerSecPerUser, y: runPoint.outputTokensPerSecPerGpu })),
      highlightLabel: 'Pareto front',
      marked: marked((runPoint) => runPoint.tokensPerSecPerUser, (runPoint) => runPoint.outputTokensPerSecPerGpu),
    }),
  );
  writeFileSync(
    path.join(outDir, PLOT_FILES.ttft),
    renderLineChart({
      title: `Time to first token (p${slo.percentile}) vs load`,
      xLabel: 'Concurrency (requests in flight)',
      yLabel: `TTFT p${slo.percentile} (s)`,
      series: series((runPoint) => runPoint.load, (runPoint) => atSlo(runPoint, 'timeToFirstToken')),
      referenceLines: sloLine(slo.ttftMs, 1 / 1000, 'TTFT'),
      marked: marked((runPoint) => runPoint.load, (runPoint) => atSlo(runPoint, 'timeToFirstToken')),
    }),
  );
  writeFileSync(
    path.join(outDir, PLOT_FILES.tpot),
    renderLineChart({
      title: `Time per output token (p${slo.percentile}) vs load`,
      xLabel: 'Concurrency (requests in flight)',
      yLabel: `TPOT p${slo.percentile} (ms)`,
      series: series((runPoint) => runPoint.load, (runPoint) => atSlo(runPoint, 'timePerOutputToken') * 1000),
      referenceLines: sloLine(slo.tpotMs, 1, 'TPOT'),
      marked: marked((runPoint) => runPoint.load, (runPoint) => atSlo(runPoint, 'timePerOutputToken') * 1000),
    }),
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
    '- Names: `ms-d<decode replicas>xTP<TP>-p<prefill replicas>xTP<TP>` is the xPyD shape <prefill>P<decode>D (`ms-d1xTP1-p2xTP1` = 2P1D), `sa-d<replicas>xTP<TP>` is aggregated (`sa-d2xTP1` = agg2); tables show both.',
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
    ...front.map((runPoint) => `- ${displayName(runPoint.topology)} at concurrency ${runPoint.load}: ${runPoint.outputTokensPerSecPerGpu.toFixed(1)} tok/s/GPU, ${runPoint.tokensPerSecPerUser.toFixed(1)} tok/s/user`),
    '',
    '## Plots',
    '',
    `![throughput per GPU vs tokens per user](${PLOT_FILES.pareto})`,
    '',
    `![TTFT p${slo.percentile} vs concurrency](${PLOT_FILES.ttft})`,
    '',
    `![TPOT p${slo.percentile} vs concurrency](${PLOT_FILES.tpot})`,
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'results.md'), md);
  writeFileSync(path.join(outDir, 'results.json'), JSON.stringify({ meta, slo, gpuBudget, recommendation: rec, goodputs, points, pareto: front, runs }, null, 2) + '\n');
  return rec;
}
