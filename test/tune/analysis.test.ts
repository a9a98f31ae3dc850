import { describe, expect, it } from 'vitest';
import { summarize, type RequestSample } from '../../src/loadgen/index.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { displayName, gpus, niceTicks, paretoFront, parseTopology, recommend, renderLineChart, runPoint, scaleByTp, shapeName, topologyGoodputs, writeSweepOutputs, type RunPoint, type SweepRun } from '../../src/tune/index.js';
import { PLOT_FILES } from '../../src/tune/report.js';

describe('topologies', () => {
  it.each([
    ['2P1D', 'pd', 2, 1, 1, 1, 3],
    ['2P1D-tp1-2', 'pd', 2, 1, 1, 2, 4],
    ['ms-d1xTP8-p4xTP2', 'pd', 4, 2, 1, 8, 16],
    ['agg4', 'aggregated', 0, 1, 4, 1, 4],
    ['sa-d1xTP4', 'aggregated', 0, 1, 1, 4, 4],
  ])('%s', (name, kind, pr, ptp, dr, dtp, value) => {
    const t = parseTopology(name);
    expect(t).toMatchObject({ kind, prefill: { replicas: pr, tp: ptp }, decode: { replicas: dr, tp: dtp } });
    expect(gpus(t)).toBe(value);
  });

  it.each([
    ['ms-d1xTP1-p2xTP1', '2P1D'],
    ['ms-d2xTP1-p2xTP1', '2P2D'],
    ['ms-d1xTP8-p4xTP2', '4P1D-tp2-8'],
    ['sa-d2xTP1', 'agg2'],
    ['sa-d1xTP4', 'agg1-tp4'],
  ])('%s is the shape %s, which parses back to the same topology', (name, shape) => {
    expect(shapeName(name)).toBe(shape);
    expect(displayName(name)).toBe(`${shape} (${name})`);
    const { name: _a, ...fromShape } = parseTopology(shape);
    const { name: _b, ...fromName } = parseTopology(name);
    expect(fromShape).toEqual(fromName);
  });

  it('a name that is not an llm-d-benchmark name (a real deployment\'s --label) is shown as given', () => {
    expect(shapeName('4P2D-h100')).toBeUndefined();
    expect(displayName('4P2D-h100')).toBe('4P2D-h100');
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
function run(topology: string, load: number, ttftMs: number, tpotMs: number, outputTokens: number, count: number, seconds: number): SweepRun {
  const samples: RequestSample[] = Array.from({ length: count }, (_, i) => ({
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
    ].map((item, i) => ({ ...item, topology: `t${i}` }) as RunPoint);
    expect(paretoFront(pts).map((runPoint) => runPoint.topology)).toEqual(['t0', 't1', 't3', 't4']);
  });

  it('goodput per topology is its best SLO-meeting run; the recommendation ranks per GPU within the budget', () => {
    const g = topologyGoodputs(runs, slo);
    const by = Object.fromEntries(g.map((goodput) => [goodput.topology, goodput]));
    expect(by['sa-d2xTP1']!.goodput).toBeCloseTo(101, 6);
    expect(by['sa-d2xTP1']!.atLoad).toBe(4);
    expect(by['ms-d1xTP1-p2xTP1']!.goodput).toBeCloseTo(121.2, 6);
    expect(by['ms-d1xTP1-p1xTP1']!.goodputPerGpu).toBeCloseTo(55.55, 2);
    const rec = recommend(g, 4, slo);
    expect(rec.best!.topology).toBe('ms-d1xTP1-p1xTP1');
    expect(rec.runnerUp!.topology).toBe('sa-d2xTP1');
    expect(rec.margin).toBeCloseTo(55.55 / 50.5 - 1, 3);
    expect(rec.text).toMatch(
      /^Recommended: 1P1D \(ms-d1xTP1-p1xTP1; P\/D, 2 GPUs\): SLO goodput 111\.1 output tokens\/s, 55\.5 per GPU, under TTFT p90 ≤ 1000 ms and TPOT p90 ≤ 50 ms\. Runner-up: agg2 \(sa-d2xTP1\) with 50\.5 per GPU; margin 10\.0%\./,
    );
    expect(recommend(g, 2, slo).excludedByBudget).toEqual(['ms-d1xTP1-p2xTP1']);
    expect(recommend(g, 2, slo).text).toContain('not considered: 2P1D (ms-d1xTP1-p2xTP1).');
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

  it('point labels, a dashed reference line inside the y range, and a starred point with its legend entry', () => {
    const svg = renderLineChart({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      series: [{ name: 's', points: [{ x: 1, y: 2, label: 'c=4' }, { x: 2, y: 3, label: 'c=8' }] }],
      referenceLines: [{ y: 10, label: 'SLO: TTFT p90 ≤ 10 ms' }],
      marked: { x: 2, y: 3, label: 'recommended: 2P1D at concurrency 8' },
    });
    expect(svg.match(/<text class="point-label"[^>]*>c=(4|8)</g)).toHaveLength(2);
    // The line is drawn at y = 10 although no point comes near: the axis reaches it (ticks 0..10).
    expect(svg).toMatch(/<line class="reference-line" [^>]*stroke-dasharray/);
    expect(svg).toContain('>10<');
    expect(svg.match(/>SLO: TTFT p90 ≤ 10 ms</g)).toHaveLength(2); // on the line and in the legend
    expect(svg.match(/<polygon class="marked-point"/g)).toHaveLength(1);
    expect(svg).toContain('>recommended: 2P1D at concurrency 8<');
  });
});

describe('sweep outputs', () => {
  it('plots: points labelled with their concurrency, SLO lines, the recommended shape starred where it had its goodput; names mapped to xPyD', () => {
    const slo = { ttftMs: 1000, tpotMs: 50, percentile: 90 as const };
    const runs = [run('agg2', 4, 500, 40, 101, 100, 100), run('agg2', 16, 900, 80, 101, 200, 100), run('2P1D', 4, 800, 12, 101, 120, 100), run('2P1D', 16, 950, 14, 101, 300, 100)];
    const out = mkdtempSync(path.join(tmpdir(), 'pd-tune-report-'));
    try {
      const rec = writeSweepOutputs(out, runs, slo, 4, { title: 't', command: 'c', description: 'd', workload: 'w', simulated: true, timeScale: 1, wallSeconds: 1 });
      expect(rec.best).toMatchObject({ topology: 'ms-d1xTP1-p2xTP1', atLoad: 16 });
      const svg = (field: string) => readFileSync(path.join(out, field), 'utf8');
      const pareto = svg(PLOT_FILES.pareto);
      for (const c of ['c=4', 'c=16']) expect(pareto.match(new RegExp(`class="point-label"[^>]*>${c}<`, 'g'))).toHaveLength(2);
      for (const f of Object.values(PLOT_FILES)) {
        expect(svg(f), f).toContain('>recommended: 2P1D at concurrency 16<');
        expect(svg(f), f).toContain('>2P1D (ms-d1xTP1-p2xTP1)<');
        expect(svg(f), f).toContain('>agg2 (sa-d2xTP1)<');
      }
      expect(svg(PLOT_FILES.ttft)).toContain('>SLO: TTFT p90 ≤ 1000 ms<');
      expect(svg(PLOT_FILES.tpot)).toContain('>SLO: TPOT p90 ≤ 50 ms<');
      // The star sits on 2P1D's concurrency-16 point of the TPOT plot (TPOT 14 ms): same centre as that point's dot.
      const tpot = svg(PLOT_FILES.tpot);
      const star = /<polygon class="marked-point" points="([\d.]+),([\d.]+)/.exec(tpot)!;
      const dots = [...tpot.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)" r="4"/g)].map((match) => [Number(match[1]), Number(match[2])]);
      const top = [Number(star[1]), Number(star[2]) + 13]; // the first vertex is the star's top, 13 px above its centre
      expect(dots.some(([x, y]) => Math.abs(x! - top[0]!) < 0.2 && Math.abs(y! - top[1]!) < 0.2)).toBe(true);
      const md = readFileSync(path.join(out, 'results.md'), 'utf8');
      expect(md).toContain('Recommended: 2P1D (ms-d1xTP1-p2xTP1; P/D, 3 GPUs)');
      expect(md).toContain('| 2P1D (ms-d1xTP1-p2xTP1) | P/D | 3 |');
      expect(md).toContain('`ms-d1xTP1-p2xTP1` = 2P1D');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
