import { describe, expect, it } from 'vitest';
import { summarize, type RequestSample } from '../../src/loadgen/index.js';
import { gpus, niceTicks, paretoFront, parseTopology, recommend, renderLineChart, runPoint, scaleByTp, topologyGoodputs, type RunPoint, type SweepRun } from '../../src/tune/index.js';

describe('topologies', () => {
  it.each([
    ['2P1D', 'pd', 2, 1, 1, 1, 3],
    ['2P1D-tp1-2', 'pd', 2, 1, 1, 2, 4],
    ['ms-d1xTP8-p4xTP2', 'pd', 4, 2, 1, 8, 16],
    ['agg4', 'aggregated', 0, 1, 4, 1, 4],
    ['sa-d1xTP4', 'aggregated', 0, 1, 1, 4, 4],
  ])('%s', (name, kind, pr, ptp, dr, dtp, g) => {
    const t = parseTopology(name);
    expect(t).toMatchObject({ kind, prefill: { replicas: pr, tp: ptp }, decode: { replicas: dr, tp: dtp } });
    expect(gpus(t)).toBe(g);
  });

  it('rejects what it cannot read, with the accepted forms', () => {
    expect(() => parseTopology('two prefills')).toThrow(/expected e\.g\. 2P1D/);
    expect(() => parseTopology('2P1D-tp3-1')).toThrow(/tensor parallelism 3/);
  });

  it('TP scaling: prefill per-token time and ITL shrink, KV capacity grows', () => {
    const s = scaleByTp({ prefillTimePerToken: 1, interTokenLatency: 10, kvCacheSize: 1000, prefillOverhead: 30, kvCacheTransferTimePerToken: 0.003 }, 4);
    expect(s.prefillTimePerToken).toBeCloseTo(0.1 + 0.9 / 4, 9);
    expect(s.interTokenLatency).toBeCloseTo(10 * (0.3 + 0.7 / 4), 9);
    expect(s.kvCacheSize).toBe(4000);
    expect(s.prefillOverhead).toBe(30);
    expect(s.kvCacheTransferTimePerToken).toBe(0.003);
  });
});

/** A run summary from synthetic samples: n requests with fixed TTFT/TPOT, over `seconds`. */
function run(topology: string, load: number, ttftMs: number, tpotMs: number, outputTokens: number, n: number, seconds: number): SweepRun {
  const samples: RequestSample[] = Array.from({ length: n }, (_, i) => ({
    ok: true,
    status: 200,
    inputTokens: 100,
    outputTokens,
    startMs: i,
    ttftMs,
    e2eMs: ttftMs + tpotMs * (outputTokens - 1),
    itlMs: Array.from({ length: outputTokens - 1 }, () => tpotMs),
    tpotMs,
  }));
  return { topology: parseTopology(topology), load, loadKind: 'concurrency', summary: summarize(samples, seconds) };
}

describe('sweep analysis', () => {
  const slo = { ttftMs: 1000, tpotMs: 50, percentile: 90 as const };
  const runs = [
    run('agg2', 4, 500, 40, 101, 100, 100), // 101 tok/s, meets
    run('agg2', 16, 900, 80, 101, 200, 100), // 202 tok/s, TPOT fails
    run('2P1D', 4, 800, 12, 101, 120, 100), // 121.2 tok/s, meets (3 GPUs)
    run('2P1D', 16, 1200, 14, 101, 300, 100), // 303 tok/s, TTFT fails
    run('1P1D', 4, 700, 12, 101, 110, 100), // 111.1 tok/s, meets (2 GPUs)
  ];

  it('per-run points: throughput per GPU and tokens per second per user', () => {
    const p = runPoint(runs[0]!, slo);
    expect(p.gpus).toBe(2);
    expect(p.outputTokensPerSec).toBeCloseTo(101, 6);
    expect(p.outputTokensPerSecPerGpu).toBeCloseTo(50.5, 6);
    expect(p.tokensPerSecPerUser).toBeCloseTo(25, 6);
    expect(p.meetsSlo).toBe(true);
    expect(runPoint(runs[1]!, slo).meetsSlo).toBe(false);
  });

  it('Pareto front: no point is beaten on both axes by another', () => {
    const pts: RunPoint[] = [
      { outputTokensPerSecPerGpu: 10, tokensPerSecPerUser: 50 },
      { outputTokensPerSecPerGpu: 20, tokensPerSecPerUser: 40 },
      { outputTokensPerSecPerGpu: 15, tokensPerSecPerUser: 30 }, // dominated by the second
      { outputTokensPerSecPerGpu: 30, tokensPerSecPerUser: 10 },
      { outputTokensPerSecPerGpu: 30, tokensPerSecPerUser: 10 }, // equal points both stay
    ].map((x, i) => ({ ...x, topology: `t${i}` }) as RunPoint);
    expect(paretoFront(pts).map((p) => p.topology)).toEqual(['t0', 't1', 't3', 't4']);
  });

  it('goodput per topology is its best SLO-meeting run; the recommendation ranks per GPU within the budget', () => {
    const g = topologyGoodputs(runs, slo);
    const by = Object.fromEntries(g.map((x) => [x.topology, x]));
    expect(by['sa-d2xTP1']!.goodput).toBeCloseTo(101, 6);
    expect(by['sa-d2xTP1']!.atLoad).toBe(4);
    expect(by['ms-d1xTP1-p2xTP1']!.goodput).toBeCloseTo(121.2, 6);
    expect(by['ms-d1xTP1-p1xTP1']!.goodputPerGpu).toBeCloseTo(55.55, 2);
    const rec = recommend(g, 4, slo);
    expect(rec.best!.topology).toBe('ms-d1xTP1-p1xTP1');
    expect(rec.runnerUp!.topology).toBe('sa-d2xTP1');
    expect(rec.margin).toBeCloseTo(55.55 / 50.5 - 1, 3);
    expect(rec.text).toMatch(/^Recommended: ms-d1xTP1-p1xTP1 \(P\/D, 2 GPUs\): SLO goodput 111\.1 output tokens\/s, 55\.5 per GPU, under TTFT p90 ≤ 1000 ms and TPOT p90 ≤ 50 ms\. Runner-up: sa-d2xTP1 with 50\.5 per GPU; margin 10\.0%\./);
    expect(recommend(g, 2, slo).excludedByBudget).toEqual(['ms-d1xTP1-p2xTP1']);
    expect(recommend(g, 1, slo).text).toMatch(/^No topology within 1 GPUs met/);
  });
});

describe('SVG charts', () => {
  it('round ticks, labelled axes, one legend entry per series, highlighted points', () => {
    expect(niceTicks(0, 87)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 0.043)).toEqual([0, 0.01, 0.02, 0.03, 0.04, 0.05]);
    const svg = renderLineChart({
      title: 'T <1>',
      xLabel: 'X axis',
      yLabel: 'Y axis',
      series: [
        { name: 'agg2', points: [{ x: 1, y: 2 }, { x: 2, y: 3 }] },
        { name: '2P1D', points: [{ x: 3, y: 1 }] },
      ],
      highlight: [{ x: 2, y: 3 }],
      highlightLabel: 'Pareto front',
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    for (const s of ['T &lt;1&gt;', '>X axis<', '>Y axis<', '>agg2<', '>2P1D<', '>Pareto front<']) expect(svg).toContain(s);
    expect(svg.match(/<polyline/g)).toHaveLength(1);
    expect(svg.match(/r="9"/g)!.length).toBeGreaterThanOrEqual(1);
  });
});
