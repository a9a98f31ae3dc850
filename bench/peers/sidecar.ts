/**
 * The sidecar half of bench/peers: pd-router's sidecar and llm-d's pd-sidecars (llm-d-router ebab687,
 * llm-d-inference-scheduler v0.7.1), each its own process on CPU 1, in front of one zero-latency pd-router simulator
 * (prefiller and decoder both) on CPU 0, with autocannon in this process on CPU 0.
 *
 * For every round, streamed and non-streamed, and every concurrency, the modes run one after another in a fixed order
 * (direct, then each sidecar); each mode's latencies are pooled over the rounds, so a slow spell of the shared machine
 * falls on every mode. Added latency at a percentile = the sidecar's pooled percentile − the direct client's.
 */
import { freePortRange } from '../../test/helpers.js';
import { CLI, percentile } from '../common/processes.js';
import { isOurs, modeLabel, ourCli, upstreamBinary, type Mode } from './build.js';
import { closedLoop, MODEL, type LoopResult, type LoopTiming } from './closed-loop.js';
import { accepts, startProc, type Proc } from './procs.js';

export interface SidecarOptions {
  modes: readonly Mode[];
  rounds: number;
  levels: number[];
  streams: boolean[];
  timing: LoopTiming;
  /** Seconds of uncounted traffic to each sidecar after it starts (each body kind, 8 connections). */
  jitWarmupS: number;
  pin: boolean;
  /** Node flags of pd-router's sidecar (the Kustomize component's NODE_OPTIONS by default). */
  nodeArgs: string[];
  /** Node flags of the pd-router-base mode. */
  baseNodeArgs: string[];
  log: (line: string) => void;
  /** Stop before starting another run past this time (ms since the epoch). */
  deadline: number;
}

export interface SidecarCell {
  ops: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  /** Fewest connections up when a run's window opened (the window waits for all, at most warmupMaxS). */
  connectionsUpMin: number;
  /** CPU of the sidecar process per operation it served (µs), over its runs. */
  cpuPerOpUs?: number;
  addedP50?: number;
  addedP99?: number;
  errorSample?: string;
}

export interface SidecarRow {
  stream: boolean;
  concurrency: number;
  direct: SidecarCell;
  modes: Partial<Record<Mode, SidecarCell>>;
}

export interface SidecarResult {
  rows: SidecarRow[];
  /** VmHWM of each sidecar process at the end (bytes). */
  peakRssBytes: Partial<Record<Mode, number>>;
  rounds: number;
  complete: boolean;
}

/** A sidecar of `mode` in front of the simulator on `simPort`, on CPU 1, once it accepts connections. */
export async function startSidecar(
  mode: Mode,
  simPort: number,
  opts: Pick<SidecarOptions, 'pin' | 'nodeArgs' | 'baseNodeArgs' | 'log'>,
): Promise<{ proc: Proc; url: string }> {
  const port = await freePortRange(1);
  const cpus = opts.pin ? '1' : undefined;
  const proc = isOurs(mode)
    ? startProc(
        `${modeLabel(mode)} sidecar`,
        process.execPath,
        // Upstream talks to the model server on localhost; so does pd-router by default.
        [
          ...(mode === 'pd-router-base' ? opts.baseNodeArgs : opts.nodeArgs),
          ourCli(mode),
          'sidecar',
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--secure-proxy=false',
          '--model-server-port',
          String(simPort),
        ],
        { cpus },
      )
    : startProc(
        `${modeLabel(mode)} pd-sidecar`,
        await upstreamBinary(mode, 'sidecar', opts.log),
        // Upstream's sidecar has no bind-address flag: it listens on every interface; the bench talks to it over 127.0.0.1.
        [`--port=${port}`, `--vllm-port=${simPort}`, '--kv-connector=nixlv2', '--secure-proxy=false'],
        { cpus },
      );
  await proc.waitUntil(`listening on port ${port}`, () => accepts(port), 60_000);
  return { proc, url: `http://127.0.0.1:${port}` };
}

/** One program's runs of a cell, latencies pooled. */
export function cell(runs: LoopResult[], durationS: number): SidecarCell {
  const latencies = runs.flatMap((run) => run.latencies).sort((left, right) => left - right);
  return {
    ops: latencies.length,
    opsPerSec: latencies.length / (durationS * runs.length),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    connectionsUpMin: Math.min(...runs.map((run) => run.connectionsUp)),
    errorSample: runs.find((run) => run.errorSample)?.errorSample,
  };
}

/** The zero-latency simulator both legs go to (prefiller and decoder), on CPU 0; wait for its URL with simulatorUrl(). */
export function startSimulator(pin: boolean): Proc {
  return startProc(
    'simulator',
    process.execPath,
    [
      CLI,
      'sim',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--model',
      MODEL,
      '--max-num-seqs',
      '4096',
      '--max-waiting-queue-length',
      '100000',
      '--kv-cache-size',
      '1000000',
      '--max-model-len',
      '100000',
      '--record-requests',
      '0',
      '--seed',
      '1',
    ],
    { cpus: pin ? '0' : undefined },
  );
}

/** The simulator's URL once it listens. */
export async function simulatorUrl(sim: Proc): Promise<string> {
  return (await sim.waitForOutput(/"url":"(http:[^"]+)".*simulator listening/, 60_000))[1];
}

export async function runSidecarBench(opts: SidecarOptions): Promise<SidecarResult> {
  const sim = startSimulator(opts.pin);
  const sidecars = new Map<Mode, { proc: Proc; url: string }>();
  try {
    const simUrl = await simulatorUrl(sim);
    const simPort = Number(new URL(simUrl).port);
    for (const mode of opts.modes) {
      const sc = await startSidecar(mode, simPort, opts);
      sidecars.set(mode, sc);
      if (opts.jitWarmupS > 0) {
        for (const stream of opts.streams)
          await closedLoop({ kind: 'sidecar', url: sc.url }, simUrl, stream, 8, {
            durationS: opts.jitWarmupS / opts.streams.length,
            warmupS: 0.1,
            warmupMaxS: 15,
            cooldownS: 0,
          });
      }
    }
    if (opts.jitWarmupS > 0)
      for (const stream of opts.streams)
        await closedLoop({ kind: 'direct' }, simUrl, stream, 8, {
          durationS: opts.jitWarmupS / opts.streams.length,
          warmupS: 0.1,
          warmupMaxS: 15,
          cooldownS: 0,
        });
    const key = (stream: boolean, connections: number, mode: string) => `${stream}/${connections}/${mode}`;
    const runs = new Map<string, LoopResult[]>();
    const cpu = new Map<string, number>();
    let roundsDone = 0;
    let complete = true;
    outer: for (let round = 0; round < opts.rounds; round++) {
      for (const stream of opts.streams) {
        for (const c of opts.levels) {
          for (const m of ['direct', ...opts.modes] as const) {
            if (Date.now() > opts.deadline) {
              opts.log(`[bench/peers] sidecar: time limit reached in round ${round + 1}; reporting the runs done`);
              complete = false;
              break outer;
            }
            const sc = m === 'direct' ? undefined : sidecars.get(m)!;
            const cpuBefore = sc?.proc.cpuSeconds() ?? NaN;
            const r = await closedLoop(
              sc ? { kind: 'sidecar', url: sc.url } : { kind: 'direct' },
              simUrl,
              stream,
              c,
              opts.timing,
            );
            if (sc) {
              if (!sc.proc.running) throw new Error(sc.proc.describeExit());
              cpu.set(
                key(stream, c, m),
                (cpu.get(key(stream, c, m)) ?? 0) + ((sc.proc.cpuSeconds() ?? NaN) - cpuBefore) / Math.max(1, r.allOps),
              );
            }
            if (!sim.running) throw new Error(sim.describeExit());
            const list = runs.get(key(stream, c, m)) ?? [];
            list.push(r);
            runs.set(key(stream, c, m), list);
            opts.log(
              `[bench/peers] sidecar round ${round + 1}/${opts.rounds} ${stream ? 'streamed' : 'non-streamed'} c=${c} ${m}: p50 ${percentile(r.latencies, 50).toFixed(2)} ms, p99 ${percentile(r.latencies, 99).toFixed(2)} ms, ${(r.latencies.length / opts.timing.durationS).toFixed(0)} ops/s, ${r.errors} errors`,
            );
          }
        }
      }
      roundsDone = round + 1;
    }
    const rows: SidecarRow[] = [];
    for (const stream of opts.streams) {
      for (const c of opts.levels) {
        const directRuns = runs.get(key(stream, c, 'direct'));
        if (!directRuns) continue;
        const direct = cell(directRuns, opts.timing.durationS);
        const row: SidecarRow = { stream, concurrency: c, direct, modes: {} };
        for (const m of opts.modes) {
          const rs = runs.get(key(stream, c, m));
          if (!rs) continue;
          const x = cell(rs, opts.timing.durationS);
          x.cpuPerOpUs = ((cpu.get(key(stream, c, m)) ?? NaN) / rs.length) * 1e6;
          x.addedP50 = x.p50 - direct.p50;
          x.addedP99 = x.p99 - direct.p99;
          row.modes[m] = x;
        }
        rows.push(row);
      }
    }
    const peakRssBytes: Partial<Record<Mode, number>> = {};
    for (const [m, s] of sidecars) peakRssBytes[m] = s.proc.peakRssBytes();
    return { rows, peakRssBytes, rounds: roundsDone, complete };
  } finally {
    for (const s of sidecars.values()) await s.proc.stop();
    await sim.stop();
  }
}
