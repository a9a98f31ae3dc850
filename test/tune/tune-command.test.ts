/**
 * `pd-router tune` end to end: a two-topology sweep (aggregated and 1P1D) on zero-latency simulators through the
 * compiled CLI, checking the artefacts a user reads (results.md, results.json, plots, per-run inference-perf
 * reports), plus flag validation and --help.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers.js';

const out = mkdtempSync(path.join(tmpdir(), 'pd-tune-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('pd-router tune', () => {
  it('sweeps agg1 and 1P1D at two load levels and writes the recommendation, tables, plots and per-run reports', async () => {
    const r = await runCli(
      ['tune', '--topologies', 'agg1,1P1D', '--concurrency', '1,2', '--requests-per-concurrency', '2', '--profile', 'zero', '--out', out, '--log-level', 'warn'],
      { timeoutMs: 170_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Recommended: (agg1 \(sa-d1xTP1|1P1D \(ms-d1xTP1-p1xTP1)/);
    // Progress goes to stderr, one line per run.
    expect(r.stderr.match(/concurrency \d+: \d+\/\d+ ok/g)).toHaveLength(4);

    const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(results.runs).toHaveLength(4);
    for (const run of results.runs) {
      expect(run.summary.requests.failures).toBe(0);
      expect(run.summary.requests.total).toBe(run.load * 2);
      expect(run.summary.throughput.outputTokensPerSec).toBeGreaterThan(0);
    }
    expect(results.runs.map((reason: any) => reason.topology.name).sort()).toEqual(['ms-d1xTP1-p1xTP1', 'ms-d1xTP1-p1xTP1', 'sa-d1xTP1', 'sa-d1xTP1']);
    expect(results.recommendation.best).toBeDefined();
    expect(results.slo).toMatchObject({ ttftMs: 4000, tpotMs: 40, percentile: 90 });

    const md = readFileSync(path.join(out, 'results.md'), 'utf8');
    expect(md).toContain('sa-d1xTP1');
    expect(md).toContain('ms-d1xTP1-p1xTP1');
    expect(md).toMatch(/pd-router tune /);

    const files = readdirSync(out);
    const svgs = files.filter((field) => field.endsWith('.svg'));
    expect(svgs.length).toBeGreaterThanOrEqual(3);
    for (const f of svgs) {
      const svg = readFileSync(path.join(out, f), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg).toContain('sa-d1xTP1');
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    }

    const report = parseYaml(readFileSync(path.join(out, 'runs', 'ms-d1xTP1-p1xTP1', 'concurrency-2.yaml'), 'utf8'));
    expect(report.scenario.load).toMatchObject({ type: 'concurrent', concurrency: 2, num_prompts: 4 });
    expect(report.scenario.data).toMatchObject({ type: 'random', profile: 'prefill-heavy-small' });
    expect(report.scenario.server).toMatchObject({ topology: 'ms-d1xTP1-p1xTP1', gpus: 2, endpoint: 'simulators' });
  }, 120_000);

  it('rejects bad topologies and load levels with exit code 2 and names each problem', async () => {
    const r = await runCli(['tune', '--topologies', '0P1D,2X', '--concurrency', '0,a', '--out', out], { timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"0P1D": a topology needs at least one decode replica');
    expect(r.stderr).toContain('"2X": invalid topology');
    expect(r.stderr).toContain('--concurrency: "0" is not a positive whole number');
    expect(r.stderr).toContain('--concurrency: "a" is not a positive whole number');
  }, 180_000);

  it('rejects an --endpoint that is not an http(s) URL', async () => {
    const r = await runCli(['tune', '--endpoint', 'ftp://127.0.0.1/x', '--out', out], { timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not an http(s) URL');
  }, 180_000);

  it('--help lists every flag with its default and the presets', async () => {
    const r = await runCli(['tune', '--help'], { timeoutMs: 15_000 });
    expect(r.code).toBe(0);
    for (const flag of ['--preset', '--out', '--topologies', '--concurrency', '--requests-per-concurrency', '--slo-ttft', '--slo-tpot', '--slo-percentile', '--gpu-budget', '--profile', '--time-scale', '--endpoint', '--gpus']) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain('pd-disaggregation-small');
    expect(r.stdout).toContain('decode-heavy-small');
    expect(r.stdout).toContain('(default tune-results)');
  }, 180_000);
});
