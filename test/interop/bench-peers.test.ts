/**
 * bench/peers in smoke mode: the whole side-by-side benchmark (pd-router's and both upstream releases' sidecars and
 * EPPs, the Go ext_proc load client, the pods on 127.0.0.x, the shared kube-apiserver) with tiny counts, checking
 * that it runs, that every program served every cell without errors, that the output files have their shape, and
 * that nothing it started outlives it. The bench runs as its own process group (as `npm run bench:peers` would), so a
 * run that overstays its bound is ended, with everything it started, by one signal to the group.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from '../helpers.js';
import { UPSTREAM, UPSTREAM_RELEASES } from './llm-d.js';
import { both, describeWith, need, needSharedControlPlane, sharedCluster } from './need.js';

const req = both(
  await needSharedControlPlane(),
  await need(
    'gaie-v1.5.0',
    ...UPSTREAM_RELEASES.flatMap((release) => [
      UPSTREAM[release].source,
      UPSTREAM[release].epp,
      UPSTREAM[release].sidecar,
    ]),
  ),
);

const MAIN = path.join(ROOT, 'dist/bench/peers/main.js');
const RUN_BOUND_MS = 420_000;
const out = mkdtempSync(path.join(os.tmpdir(), 'bench-peers-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** True while any process of the group is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function runSmoke(): Promise<{ code: number | null; output: string; pgid: number }> {
  const cluster = sharedCluster();
  const child = spawn(process.execPath, [MAIN, '--smoke', '--out', out, '--time-limit', '300'], {
    cwd: ROOT,
    detached: true,
    env: { ...process.env, PD_BENCH_CLUSTER: JSON.stringify(cluster.info) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pgid = child.pid!;
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-200_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`bench/peers --smoke did not finish within ${RUN_BOUND_MS} ms; output:\n${output.slice(-6000)}`),
          ),
        RUN_BOUND_MS,
      );
      child.once('exit', (exitCode) => {
        clearTimeout(timer);
        resolve(exitCode);
      });
    });
    return { code, output, pgid };
  } finally {
    if (groupAlive(pgid)) {
      process.kill(-pgid, 'SIGTERM');
      const deadline = Date.now() + 15_000;
      while (groupAlive(pgid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    }
    await cluster.close();
  }
}

const finite = (value: unknown) => typeof value === 'number' && Number.isFinite(value);

describeWith(req, 'bench/peers --smoke', () => {
  it(
    'runs pd-router and both upstream releases side by side and writes peers.md and peers.json in their shape',
    async () => {
      const { code, output, pgid } = await runSmoke();
      expect(code, output.slice(-6000)).toBe(0);
      // Everything the bench started has ended with it (its children are in its process group).
      expect(groupAlive(pgid)).toBe(false);
      const rec = JSON.parse(readFileSync(path.join(out, 'peers.json'), 'utf8'));
      expect(rec.schema).toBe('pd-router/bench-peers/v1');
      expect(rec.smoke).toBe(true);
      expect(rec.error).toBeUndefined();
      expect(rec.command).toBe(`npm run bench:peers -- --smoke --out ${out} --time-limit 300`);
      expect(rec.modes).toEqual(['pd-router', 'llm-d-router', 'v0.7.1']);
      expect(rec.reference).toBe('llm-d-router');
      expect(rec.upstream['llm-d-router']).toMatchObject({
        program: 'llm-d-router',
        version: 'ebab687',
        source: expect.stringMatching(/llm-d-router@ebab687[0-9a-f]{33}$/),
      });
      expect(rec.upstream['v0.7.1']).toMatchObject({ program: 'llm-d-inference-scheduler', version: 'v0.7.1' });
      expect(rec.loadAverage.start).toHaveLength(3);
      expect(rec.loadAverage.end).toHaveLength(3);
      expect(rec.loadAverage.samples).toBeGreaterThanOrEqual(2);

      // Sidecar: non-streamed and streamed × 1 and 8 connections, direct and every program, all served.
      expect(rec.sidecar.complete).toBe(true);
      expect(rec.sidecar.rows.map((row: any) => [row.stream, row.concurrency])).toEqual([
        [false, 1],
        [false, 8],
        [true, 1],
        [true, 8],
      ]);
      for (const row of rec.sidecar.rows) {
        expect(row.direct.ops).toBeGreaterThan(0);
        expect(row.direct.errors).toBe(0);
        for (const m of rec.modes) {
          const c = row.modes[m];
          expect(c.ops, `${m} ${JSON.stringify(row)}`).toBeGreaterThan(0);
          expect(c.errors, `${m}: ${c.errorSample}`).toBe(0);
          for (const k of ['p50', 'p99', 'addedP50', 'addedP99', 'opsPerSec', 'cpuPerOpUs'])
            expect(finite(c[k]), `${m}.${k}`).toBe(true);
          expect(c.addedP50).toBeCloseTo(c.p50 - row.direct.p50, 6);
        }
      }
      for (const m of rec.modes) expect(rec.sidecar.peakRssBytes[m]).toBeGreaterThan(1 << 20);

      // EPP: one 3-pod pool, ~1k-token prompts, 1 and 4 streams, every program decided every request.
      expect(rec.epp.complete).toBe(true);
      expect(rec.epp.unavailable).toEqual([]);
      expect(rec.epp.rows.map((row: any) => [row.endpoints, row.tokens, row.streams])).toEqual([
        [3, 1024, 1],
        [3, 1024, 4],
      ]);
      expect(rec.epp.goApi).toMatch(/^github\.com\/envoyproxy\/go-control-plane\/envoy@v/);
      for (const row of rec.epp.rows) {
        for (const m of rec.modes) {
          const c = row.modes[m];
          expect(c.requests, m).toBeGreaterThan(0);
          expect(c.errors, `${m}: ${c.errorSamples}`).toBe(0);
          for (const k of ['p50Ms', 'p99Ms', 'perSecond', 'cpuPerDecisionUs'])
            expect(finite(c[k]), `${m}.${k}`).toBe(true);
          // A quarter of 3 pods is one prefill pod; prompts of ~1k tokens, three quarters shared: every decision is P/D.
          expect(c.prefillShare, m).toBe(1);
        }
      }
      for (const m of rec.modes) {
        expect(rec.epp.peakRssBytes['3'][m]).toBeGreaterThan(1 << 20);
        expect(finite(rec.epp.idleCpu['3'][m])).toBe(true);
      }

      const md = readFileSync(path.join(out, 'peers.md'), 'utf8');
      expect(md).toContain('`github.com/llm-d/llm-d-router@ebab687');
      expect(md).toContain('`github.com/llm-d/llm-d-inference-scheduler@v0.7.1`');
      expect(md).toContain(`Command: \`npm run bench:peers -- --smoke --out ${out} --time-limit 300\``);
      expect(md).toMatch(/load average [\d.]+ \/ [\d.]+ \/ [\d.]+ at the start/);
      expect(md).toContain('|  | pd-router | llm-d-router ebab687 (reference) | llm-d-inference-scheduler v0.7.1 |');
      for (const heading of ['## Sidecar', '## Endpoint Picker']) expect(md).toContain(heading);
      expect(md.match(/^\| sidecar added p50 \/ p99/gm)).toHaveLength(4);
      expect(md.match(/^\| EPP decision p50 \/ p99, 1 stream/gm)).toHaveLength(1);
    },
    RUN_BOUND_MS + 60_000,
  );
});
