/**
 * What a sweep shows: per run, throughput per GPU against tokens per second per user (llm-d-benchmark's Pareto
 * view); per topology, the SLO goodput (the highest output-token rate among its runs meeting every SLO gate); and the
 * recommendation: the topology with the highest goodput per GPU within the GPU budget, its runner-up and the margin.
 */
import { meetsSlo, sloGoodput, type RunSummary, type SloTargets } from '../loadgen/index.js';
import { displayName, gpus, shapeName, type Topology } from './topology.js';

export interface SweepRun {
  topology: Topology;
  /** The load level as given (concurrency or rate). */
  load: number;
  loadKind: 'concurrency' | 'rate';
  summary: RunSummary;
}

export interface RunPoint {
  topology: string;
  load: number;
  gpus: number;
  outputTokensPerSec: number;
  outputTokensPerSecPerGpu: number;
  /** 1 / mean time per output token: the decode speed one user sees. */
  tokensPerSecPerUser: number;
  ttftP50: number;
  ttftP90: number;
  tpotP50: number;
  tpotP90: number;
  requestsPerSec: number;
  failures: number;
  meetsSlo: boolean;
}

export interface TopologyGoodput {
  topology: string;
  kind: Topology['kind'];
  gpus: number;
  goodput: number;
  goodputPerGpu: number;
  /** Load level of the run that gave the goodput. */
  atLoad?: number;
}

export interface Recommendation {
  best?: TopologyGoodput;
  runnerUp?: TopologyGoodput;
  /** (best − runner-up) / runner-up, per GPU. */
  margin?: number;
  excludedByBudget: string[];
  text: string;
}

export function runPoint(sweepRun: SweepRun, slo: SloTargets): RunPoint {
  const s = sweepRun.summary;
  const g = gpus(sweepRun.topology);
  const tpotMean = s.latency.timePerOutputToken.mean;
  return {
    topology: sweepRun.topology.name,
    load: sweepRun.load,
    gpus: g,
    outputTokensPerSec: s.throughput.outputTokensPerSec,
    outputTokensPerSecPerGpu: s.throughput.outputTokensPerSec / g,
    tokensPerSecPerUser: tpotMean > 0 ? 1 / tpotMean : 0,
    ttftP50: s.latency.timeToFirstToken.p50,
    ttftP90: s.latency.timeToFirstToken.p90,
    tpotP50: s.latency.timePerOutputToken.p50,
    tpotP90: s.latency.timePerOutputToken.p90,
    requestsPerSec: s.throughput.requestsPerSec,
    failures: s.requests.failures,
    meetsSlo: meetsSlo(s, slo),
  };
}

/** Points no other point beats on both throughput per GPU and tokens per second per user. */
export function paretoFront(points: readonly RunPoint[]): RunPoint[] {
  return points.filter(
    (runPoint) =>
      !points.some(
        (point) =>
          point !== runPoint &&
          point.outputTokensPerSecPerGpu >= runPoint.outputTokensPerSecPerGpu &&
          point.tokensPerSecPerUser >= runPoint.tokensPerSecPerUser &&
          (point.outputTokensPerSecPerGpu > runPoint.outputTokensPerSecPerGpu || point.tokensPerSecPerUser > runPoint.tokensPerSecPerUser),
      ),
  );
}

export function topologyGoodputs(runs: readonly SweepRun[], slo: SloTargets): TopologyGoodput[] {
  const byTopology = new Map<string, SweepRun[]>();
  for (const r of runs) byTopology.set(r.topology.name, [...(byTopology.get(r.topology.name) ?? []), r]);
  return [...byTopology.values()].map((rs) => {
    const t = rs[0]!.topology;
    const g = sloGoodput(
      rs.map((sweepRun) => sweepRun.summary),
      slo,
    );
    return {
      topology: t.name,
      kind: t.kind,
      gpus: gpus(t),
      goodput: g.outputTokensPerSec,
      goodputPerGpu: g.outputTokensPerSec / gpus(t),
      atLoad: g.bestRun === undefined ? undefined : rs[g.bestRun]!.load,
    };
  });
}

export function recommend(goodputs: readonly TopologyGoodput[], gpuBudget: number, slo: SloTargets): Recommendation {
  const within = goodputs.filter((goodput) => goodput.gpus <= gpuBudget);
  const excludedByBudget = goodputs.filter((goodput) => goodput.gpus > gpuBudget).map((goodput) => goodput.topology);
  const ranked = [...within].sort((left, right) => right.goodputPerGpu - left.goodputPerGpu || right.goodput - left.goodput);
  const sloText = [slo.ttftMs !== undefined ? `TTFT p${slo.percentile} ≤ ${slo.ttftMs} ms` : '', slo.tpotMs !== undefined ? `TPOT p${slo.percentile} ≤ ${slo.tpotMs} ms` : '']
    .filter(Boolean)
    .join(' and ');
  const best = ranked[0];
  if (!best || best.goodput <= 0) {
    return {
      excludedByBudget,
      text: `No topology within ${gpuBudget} GPUs met ${sloText || 'the SLOs'} at any load level; relax the SLOs or add GPUs.`,
    };
  }
  const runnerUp = ranked[1];
  const margin = runnerUp && runnerUp.goodputPerGpu > 0 ? (best.goodputPerGpu - runnerUp.goodputPerGpu) / runnerUp.goodputPerGpu : undefined;
  const f = (count: number) => count.toFixed(1);
  const kind = `${best.kind === 'pd' ? 'P/D' : 'aggregated'}, ${best.gpus} GPUs`;
  const shape = shapeName(best.topology);
  let text = `Recommended: ${shape ? `${shape} (${best.topology}; ${kind})` : `${best.topology} (${kind})`}: SLO goodput ${f(best.goodput)} output tokens/s, ${f(best.goodputPerGpu)} per GPU, under ${sloText}.`;
  if (runnerUp) {
    text += ` Runner-up: ${displayName(runnerUp.topology)} with ${f(runnerUp.goodputPerGpu)} per GPU`;
    text += margin === undefined ? ' (it meets the SLOs at no load level).' : `; margin ${(margin * 100).toFixed(1)}%.`;
  }
  if (excludedByBudget.length) text += ` Over the ${gpuBudget}-GPU budget and not considered: ${excludedByBudget.map(displayName).join(', ')}.`;
  return { best, runnerUp, margin, excludedByBudget, text };
}

const n1 = (count: number) => (Number.isFinite(count) ? count.toFixed(1) : 'n/a');
const ms = (seconds: number) => (Number.isFinite(seconds) ? (seconds * 1000).toFixed(1) : 'n/a');

export function resultsTable(points: readonly RunPoint[], loadKind: SweepRun['loadKind']): string {
  const lines = [
    `| topology | GPUs | ${loadKind} | req/s | output tok/s | tok/s/GPU | tok/s/user | TTFT p50 ms | TTFT p90 ms | TPOT p50 ms | TPOT p90 ms | failures | meets SLO |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|',
  ];
  for (const p of points) {
    lines.push(
      `| ${displayName(p.topology)} | ${p.gpus} | ${p.load} | ${p.requestsPerSec.toFixed(2)} | ${n1(p.outputTokensPerSec)} | ${n1(p.outputTokensPerSecPerGpu)} | ${n1(p.tokensPerSecPerUser)} | ${ms(p.ttftP50)} | ${ms(p.ttftP90)} | ${ms(p.tpotP50)} | ${ms(p.tpotP90)} | ${p.failures} | ${p.meetsSlo ? 'yes' : 'no'} |`,
    );
  }
  return lines.join('\n');
}

export function goodputTable(goodputs: readonly TopologyGoodput[]): string {
  const lines = ['| topology | kind | GPUs | SLO goodput (tok/s) | per GPU | at load |', '|---|---|---:|---:|---:|---:|'];
  for (const g of [...goodputs].sort((left, right) => right.goodputPerGpu - left.goodputPerGpu)) {
    lines.push(`| ${displayName(g.topology)} | ${g.kind === 'pd' ? 'P/D' : 'aggregated'} | ${g.gpus} | ${n1(g.goodput)} | ${n1(g.goodputPerGpu)} | ${g.atLoad ?? '—'} |`);
  }
  return lines.join('\n');
}
