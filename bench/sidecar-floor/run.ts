/**
 * How low a P/D sidecar written in Node can go at one connection, against llm-d-router's Go sidecar in the same run.
 *
 * bench/peers measures the sidecars; this measures what limits them. Next to llm-d-router ebab687's pd-sidecar and
 * pd-router's sidecar it runs the reference proxy of bench/sidecar-overhead/minimal-proxy.ts (the three HTTP exchanges
 * and the JSON work, nothing else) on four HTTP stacks:
 *   http+undici  Node's HTTP server, undici for the legs (what the sidecar uses);
 *   http+http    Node's HTTP server, Node's http.request for the legs;
 *   http+raw     Node's HTTP server, the legs on TCP sockets with a hand-written Content-Length reader;
 *   raw+raw      both sides on TCP sockets (the floor: no HTTP library at all, not an HTTP implementation).
 * Everything else is as bench/peers' sidecar part: one zero-latency simulator and autocannon on CPU 0, the program
 * under test on CPU 1, a non-streamed chat completion (the hand-written reader frames Content-Length messages only),
 * closed loop, rounds alternating the direct client and each program, latencies pooled per program. Added latency is
 * the program's percentile minus the direct client's; CPU per operation from /proc.
 *
 * Usage: npm run bench:sidecar-floor -- [--rounds 6] [--duration 3] [--connections 1] [--out bench/results]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bool, number, orExit, parseOptions, type Option } from '../common/args.js';
import { percentile, pinSelf, table } from '../common/processes.js';
import { UPSTREAM_PINS, modeLabel } from '../peers/build.js';
import { closedLoop, type LoopResult, type LoopTiming } from '../peers/closed-loop.js';
import { startProc, stopAll, type Proc } from '../peers/procs.js';
import { ratios } from '../peers/report.js';
import { cell, simulatorUrl, startSidecar, startSimulator, type SidecarCell } from '../peers/sidecar.js';

const OPTIONS: Option[] = [
  { name: 'rounds', def: '6', smoke: '1', help: 'rounds; each runs the direct client and every program once' },
  { name: 'duration', def: '3', smoke: '0.5', help: 'seconds measured per run' },
  { name: 'connections', def: '1', help: 'closed-loop connections' },
  {
    name: 'jit-warmup',
    def: '3',
    smoke: '0.5',
    help: 'seconds of uncounted traffic (8 connections) to each program first',
  },
  {
    name: 'sidecar-node-args',
    def: '--max-old-space-size=96 --max-semi-space-size=8',
    help: "Node flags of pd-router's sidecar and of the reference proxies (the Kustomize component's NODE_OPTIONS)",
  },
  { name: 'pin', def: 'true', help: 'pin with taskset: program under test on CPU 1, the rest on CPU 0' },
  { name: 'out', def: 'bench/results', smoke: 'bench/results/tmp', help: 'directory for sidecar-floor.{md,json}' },
  { name: 'smoke', def: 'false', help: 'tiny counts (the smoke defaults above) to check that everything runs' },
];
const USAGE = [
  'Usage: npm run bench:sidecar-floor -- [options]   (or: node dist/bench/sidecar-floor/run.js [options])',
  '',
  'Options (default; smoke default):',
  ...OPTIONS.map(
    (option) =>
      `  --${option.name.padEnd(18)} ${option.help} (default "${option.def}"${option.smoke !== undefined ? `; --smoke: "${option.smoke}"` : ''})`,
  ),
].join('\n');

interface Program {
  key: string;
  label: string;
  proc: Proc;
  url: string;
}

/** A program's runs pooled (bench/peers' cell, with the added latencies and CPU per operation filled in). */
interface ProgramResult extends SidecarCell {
  key: string;
  label: string;
  addedP50: number;
  addedP99: number;
  cpuPerOpUs: number;
  /** Per round: this program's p50 minus the direct client's in the same round. */
  roundAddedP50: number[];
}

const REFERENCE_PROXIES = [
  { key: 'http+undici', server: 'http', client: 'undici' },
  { key: 'http+http', server: 'http', client: 'http' },
  { key: 'http+raw', server: 'http', client: 'raw' },
  { key: 'raw+raw', server: 'raw', client: 'raw' },
] as const;

const log = (line: string) => process.stderr.write(line + '\n');

async function main(): Promise<void> {
  const o = orExit(() => parseOptions(process.argv.slice(2), OPTIONS, USAGE));
  const rounds = orExit(() => number('rounds', o.rounds, 1, 100));
  const duration = orExit(() => number('duration', o.duration, 0.2, 60));
  const connections = orExit(() => number('connections', o.connections, 1, 512));
  const jitWarmup = orExit(() => number('jit-warmup', o['jit-warmup'], 0, 60));
  const pin = orExit(() => bool('pin', o.pin));
  const nodeArgs = o['sidecar-node-args'].split(' ').filter(Boolean);
  const cpus = (cpu: string) => (pin ? cpu : undefined);
  const args = process.argv.slice(2);
  const command = `npm run bench:sidecar-floor${args.length ? ` -- ${args.join(' ')}` : ''}`;
  const started = new Date();
  const loadStart = os.loadavg();
  if (pin && !pinSelf('0')) log('[bench/sidecar-floor] could not pin this process to CPU 0 (taskset -a -p failed)');
  log(`[bench/sidecar-floor] ${command}; load average ${loadStart.map((load) => load.toFixed(2)).join(' ')}`);

  const sim = startSimulator(pin);
  const simUrl = await simulatorUrl(sim);
  const simPort = new URL(simUrl).port;

  // The two sidecars as bench/peers starts them (pd-router's with the Kustomize component's Node flags).
  const programs: Program[] = [];
  const sidecarOpts = { pin, nodeArgs, baseNodeArgs: nodeArgs, log };
  for (const mode of ['llm-d-router', 'pd-router'] as const) {
    const sidecar = await startSidecar(mode, Number(simPort), sidecarOpts);
    programs.push({ key: mode, label: `${modeLabel(mode)} sidecar`, ...sidecar });
  }
  const proxyScript = fileURLToPath(new URL('../sidecar-overhead/minimal-proxy.js', import.meta.url));
  for (const ref of REFERENCE_PROXIES) {
    const proc = startProc(
      `minimal proxy ${ref.key}`,
      process.execPath,
      [...nodeArgs, proxyScript, '--upstream', `127.0.0.1:${simPort}`, '--server', ref.server, '--client', ref.client],
      { cpus: cpus('1') },
    );
    const url = (await proc.waitForOutput(/"url":"(http:[^"]+)".*minimal proxy listening/, 60_000))[1];
    programs.push({ key: ref.key, label: `minimal proxy, ${ref.key}`, proc, url });
  }

  const timing: LoopTiming = { durationS: duration, warmupS: 0.3, warmupMaxS: 15, cooldownS: 0 };
  if (jitWarmup > 0) {
    const warm: LoopTiming = { durationS: jitWarmup, warmupS: 0.1, warmupMaxS: 15, cooldownS: 0 };
    await closedLoop({ kind: 'direct' }, simUrl, false, 8, warm);
    for (const p of programs) await closedLoop({ kind: 'sidecar', url: p.url }, simUrl, false, 8, warm);
  }
  const direct: LoopResult[] = [];
  const runs = new Map<string, LoopResult[]>(programs.map((program) => [program.key, []]));
  const cpu = new Map<string, { seconds: number; ops: number }>(
    programs.map((program) => [program.key, { seconds: 0, ops: 0 }]),
  );
  for (let round = 0; round < rounds; round++) {
    const d = await closedLoop({ kind: 'direct' }, simUrl, false, connections, timing);
    direct.push(d);
    const parts = [`direct p50 ${percentile(d.latencies, 50).toFixed(3)} ms`];
    for (const p of programs) {
      const before = p.proc.cpuSeconds() ?? NaN;
      const r = await closedLoop({ kind: 'sidecar', url: p.url }, simUrl, false, connections, timing);
      if (!p.proc.running) throw new Error(p.proc.describeExit());
      const c = cpu.get(p.key)!;
      c.seconds += (p.proc.cpuSeconds() ?? NaN) - before;
      c.ops += r.allOps;
      runs.get(p.key)!.push(r);
      const added = percentile(r.latencies, 50) - percentile(d.latencies, 50);
      parts.push(`${p.key} +${added.toFixed(3)}${r.errors ? ` (${r.errors} errors)` : ''}`);
    }
    if (!sim.running) throw new Error(sim.describeExit());
    log(`[bench/sidecar-floor] round ${round + 1}/${rounds}: ${parts.join(', ')}`);
  }

  const directCell = cell(direct, duration);
  const results: ProgramResult[] = programs.map((program) => {
    const programRuns = runs.get(program.key)!;
    const pooled = cell(programRuns, duration);
    const used = cpu.get(program.key)!;
    return {
      key: program.key,
      label: program.label,
      ...pooled,
      addedP50: pooled.p50 - directCell.p50,
      addedP99: pooled.p99 - directCell.p99,
      cpuPerOpUs: (used.seconds / Math.max(1, used.ops)) * 1e6,
      roundAddedP50: programRuns.map(
        (run, round) => percentile(run.latencies, 50) - percentile(direct[round].latencies, 50),
      ),
    };
  });
  const record = {
    schema: 'pd-router/bench-sidecar-floor/v1',
    startedAt: started.toISOString(),
    wallSeconds: (Date.now() - started.getTime()) / 1000,
    command,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '?', node: process.version, pinned: pin },
    loadAverage: { start: loadStart, end: os.loadavg() },
    options: { rounds, duration, connections, jitWarmup, nodeArgs },
    upstream: UPSTREAM_PINS['llm-d-router'],
    direct: { ops: directCell.ops, p50: directCell.p50, p99: directCell.p99 },
    programs: results,
  };
  const outDir = o.out;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'sidecar-floor.json'), JSON.stringify(record, null, 2) + '\n');
  const md = render(record);
  writeFileSync(path.join(outDir, 'sidecar-floor.md'), md);
  process.stdout.write(md);
}

/** The middle value (the mean of the two middle ones for an even count). */
function median(list: readonly number[]): number {
  const sorted = [...list].sort((left, right) => left - right);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function render(record: {
  startedAt: string;
  wallSeconds: number;
  command: string;
  machine: { cpus: number; cpuModel: string; node: string; pinned: boolean };
  loadAverage: { start: number[]; end: number[] };
  options: { rounds: number; duration: number; connections: number; nodeArgs: string[] };
  upstream: { source: string };
  direct: { ops: number; p50: number; p99: number };
  programs: ProgramResult[];
}): string {
  const ref = record.programs.find((program) => program.key === 'llm-d-router')!;
  const ms = (value: number) => value.toFixed(3);
  const rows = record.programs.map((program) => [
    program.label,
    ms(program.addedP50),
    `${ms(median(program.roundAddedP50))} (${ms(Math.min(...program.roundAddedP50))}–${ms(Math.max(...program.roundAddedP50))})`,
    ms(program.addedP99),
    program.cpuPerOpUs.toFixed(0),
    program === ref
      ? 'reference'
      : ratios(
          [program.addedP50, ref.addedP50],
          [median(program.roundAddedP50), median(ref.roundAddedP50)],
          [program.cpuPerOpUs, ref.cpuPerOpUs],
        ),
    String(program.errors),
  ]);
  const load = (list: number[]) => list.map((value) => value.toFixed(2)).join(' / ');
  return [
    '# The floor of a Node P/D sidecar at one connection (bench/sidecar-floor)',
    '',
    `Measured ${record.startedAt} (${record.wallSeconds.toFixed(0)} s) against ${record.upstream.source}.`,
    '',
    `Command: \`${record.command}\``,
    '',
    `Machine: ${record.machine.cpus} × ${record.machine.cpuModel}, Node ${record.machine.node}; ${record.machine.pinned ? 'program under test pinned to CPU 1, simulator and autocannon to CPU 0' : 'no CPU pinning'}; load average ${load(record.loadAverage.start)} at the start, ${load(record.loadAverage.end)} at the end (1 / 5 / 15 min).`,
    '',
    `Closed loop, ${record.options.connections} connection(s), non-streamed chat completion (200-word prompt, 16 output tokens) to one zero-latency simulator; ${record.options.rounds} rounds of ${record.options.duration} s per program, alternating the direct client (both legs itself: p50 ${ms(record.direct.p50)} ms, p99 ${ms(record.direct.p99)} ms over ${record.direct.ops} operations) and each program. Added = the program's percentile − the direct client's, pooled over the rounds; the per-round column is each round's p50 minus that round's direct p50 (median, and the range over rounds). Node programs run with \`${record.options.nodeArgs.join(' ')}\`. The minimal proxies are bench/sidecar-overhead/minimal-proxy.ts: the three exchanges and the JSON work, no deadlines, header handling, metrics or error mapping; "raw" is TCP sockets with a hand-written Content-Length reader, not an HTTP implementation.`,
    '',
    table(
      [
        'program',
        'added p50 ms',
        'added p50 per round ms',
        'added p99 ms',
        'CPU/op µs',
        '× llm-d-router: added p50 / per-round / CPU',
        'errors',
      ],
      rows,
    ),
    '',
  ].join('\n');
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench/sidecar-floor: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 2;
  })
  .finally(() => stopAll());
