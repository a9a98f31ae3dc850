/**
 * bench/peers: pd-router's sidecar and EPP side by side with llm-d's own programs on this machine, in one run:
 * llm-d-router at ebab687 (the newest upstream, the reference for every ratio) and llm-d-inference-scheduler v0.7.1.
 * The component under test is pinned to CPU 1, the simulators and load clients to CPU 0; the modes alternate in
 * rounds and each mode's latencies are pooled over them. Writes <out>/peers.md and <out>/peers.json.
 *
 *   npm run bench:peers -- [--smoke] [--only all|sidecar|epp] [--rounds 3] ... (--help lists every option)
 *
 * The upstream programs, etcd, kube-apiserver and GAIE's CRDs come from the interop suite's pinned artifacts
 * (test/interop/artifacts.ts), built into .cache/interop on first use (needs Go and the Go module proxy then); the Go
 * load client (bench/peers/extproc-load) is built there too. Every run, wait and buffer is bounded; every process
 * started is stopped at the end, on failure and on SIGINT/SIGTERM; traffic goes only to loopback.
 */
import { mkdirSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ClusterInfo } from '../../test/interop/control-plane.js';
import {
  MODES,
  REFERENCE,
  UPSTREAM_PINS,
  isOurs,
  loadClientBinary,
  setBaseline,
  type Mode,
  type UpstreamMode,
} from './build.js';
import { runEppBench } from './epp.js';
import { bool, number, numbers, parseOptions, type Option } from '../common/args.js';
import { hasTaskset, pinSelf } from '../common/processes.js';
import { stopAll, writeLogs } from './procs.js';
import { summariseProfile, type ProfileSummary } from './profile.js';
import { renderMarkdown, type LoadAverage, type PeersRecord } from './report.js';
import { runSidecarBench } from './sidecar.js';

const OPTIONS: Option[] = [
  { name: 'only', def: 'all', help: 'all, sidecar or epp' },
  {
    name: 'baseline',
    def: '',
    help: 'a built pd-router checkout (npm ci && npm run build there) that the pd-router-base mode runs, to compare two pd-router versions in one run',
  },
  {
    name: 'modes',
    def: MODES.filter((mode) => mode !== 'pd-router-base').join(','),
    help: `programs compared, run in this order each round (ratios are to ${REFERENCE}); pd-router-base with --baseline`,
  },
  {
    name: 'rounds',
    def: '3',
    smoke: '1',
    help: 'rounds; each runs every mode once per cell, latencies pooled over rounds',
  },
  { name: 'sidecar-concurrency', def: '1,64,256', smoke: '1,8', help: 'closed-loop connections' },
  { name: 'streaming', def: 'false,true', help: 'non-streamed and/or streamed client requests' },
  { name: 'sidecar-duration', def: '2', smoke: '0.5', help: 'seconds measured per sidecar run' },
  {
    name: 'sidecar-warmup',
    def: '1',
    smoke: '0.3',
    help: 'least seconds before the window opens (it also waits until every connection has answered, at most 15 s)',
  },
  {
    name: 'epp-pools',
    def: '3,64',
    smoke: '3',
    help: 'pods per pool (a quarter prefill); each size is its own InferencePool',
  },
  { name: 'epp-tokens', def: '1024,8192', smoke: '1024', help: 'prompt size in estimated tokens (4 bytes each)' },
  { name: 'epp-streams', def: '1,32', smoke: '1,4', help: 'concurrent ext_proc streams of the load client' },
  { name: 'epp-duration', def: '2', smoke: '0.5', help: 'seconds measured per EPP run' },
  { name: 'epp-warmup', def: '1', smoke: '0.3', help: 'seconds of requests before each EPP run, not counted' },
  {
    name: 'jit-warmup',
    def: '3',
    smoke: '0.5',
    help: 'seconds of uncounted traffic to each component right after it starts (V8 compiles the hot paths; the same for every program)',
  },
  {
    name: 'epp-idle',
    def: '3',
    smoke: '1',
    help: 'seconds each EPP is left without requests after its warm-up, to measure the CPU its discovery and scraping take',
  },
  {
    name: 'sidecar-node-args',
    def: '--max-old-space-size=96 --max-semi-space-size=8',
    help: "Node flags of pd-router's sidecar (the Kustomize component's NODE_OPTIONS)",
  },
  {
    name: 'epp-node-args',
    def: '--max-old-space-size=768 --max-semi-space-size=8',
    help: "Node flags of pd-router's EPP (the Kustomize base's NODE_OPTIONS)",
  },
  {
    name: 'base-sidecar-node-args',
    def: '',
    help: 'Node flags of the pd-router-base sidecar (default: --sidecar-node-args), to compare two settings of one build',
  },
  {
    name: 'base-epp-node-args',
    def: '',
    help: 'Node flags of the pd-router-base EPP (default: --epp-node-args), to compare two settings of one build',
  },
  {
    name: 'pin',
    def: hasTaskset() ? 'true' : 'false',
    help: 'pin with taskset: component under test on CPU 1, the rest on CPU 0',
  },
  {
    name: 'cpu-prof',
    def: 'false',
    help: "profile pd-router's sidecar and EPP (node --cpu-prof) and summarise the profiles in the results",
  },
  {
    name: 'time-limit',
    def: '1800',
    smoke: '600',
    help: 'seconds; past it no new run starts and the runs done are reported',
  },
  { name: 'out', def: 'bench/results', smoke: 'bench/results/tmp', help: 'directory for peers.md and peers.json' },
  {
    name: 'smoke',
    def: 'false',
    help: 'tiny counts (the smoke defaults above) to check that everything runs, in a few minutes',
  },
];

function usage(): string {
  const lines = [
    'Usage: npm run bench:peers -- [options]   (or: node dist/bench/peers/main.js [options])',
    '',
    'Options (default; smoke default):',
  ];
  for (const o of OPTIONS)
    lines.push(
      `  --${o.name.padEnd(20)} ${o.help} (default ${JSON.stringify(o.def)}${o.smoke ? `; --smoke: ${JSON.stringify(o.smoke)}` : ''})`,
    );
  lines.push(
    '',
    'Environment: PD_BENCH_CLUSTER = JSON {server, caPem, adminToken} of a running kube-apiserver with GAIE v1.5.0 CRDs to use instead of starting one.',
  );
  return lines.join('\n');
}

/** 1-minute load average every 5 s from now until stop(). */
function loadSampler(): { stop(): LoadAverage } {
  const start = os.loadavg();
  const samples = [start[0]];
  const timer = setInterval(() => samples.push(os.loadavg()[0]), 5_000);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      const end = os.loadavg();
      samples.push(end[0]);
      return {
        start,
        end,
        min: Math.min(...samples),
        max: Math.max(...samples),
        mean: samples.reduce((sum, sample) => sum + sample, 0) / samples.length,
        samples: samples.length,
      };
    },
  };
}

function profilesIn(dir: string): ProfileSummary[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((file) => file.endsWith('.cpuprofile'))
    .map((file) => summariseProfile(path.join(dir, file)));
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2), OPTIONS, usage());
  const only = o.only;
  if (!['all', 'sidecar', 'epp'].includes(only)) throw new Error(`--only must be all, sidecar or epp, not ${only}`);
  const modes = o.modes.split(',').filter(Boolean) as Mode[];
  for (const m of modes)
    if (!MODES.includes(m)) throw new Error(`--modes: unknown mode ${m} (known: ${MODES.join(', ')})`);
  if (o.baseline) setBaseline(path.resolve(o.baseline));
  else if (modes.includes('pd-router-base')) throw new Error('--modes pd-router-base needs --baseline <checkout>');
  if (new Set(modes).size !== modes.length || modes.length === 0)
    throw new Error('--modes must list each mode at most once');
  const rounds = number('rounds', o.rounds, 1, 20);
  const pin = bool('pin', o.pin) && hasTaskset();
  const cpuProf = bool('cpu-prof', o['cpu-prof']);
  const smoke = bool('smoke', o.smoke);
  const timeLimitS = number('time-limit', o['time-limit'], 10, 4 * 3600);
  const deadline = Date.now() + timeLimitS * 1000;
  const outDir = path.resolve(o.out);
  const streaming = o.streaming
    .split(',')
    .filter(Boolean)
    .map((value) => bool('streaming', value));
  const flags = (text: string) => text.split(' ').filter(Boolean);
  const sidecarNodeArgs = flags(o['sidecar-node-args']);
  const eppNodeArgs = flags(o['epp-node-args']);
  const baseSidecarNodeArgs = o['base-sidecar-node-args'] ? flags(o['base-sidecar-node-args']) : sidecarNodeArgs;
  const baseEppNodeArgs = o['base-epp-node-args'] ? flags(o['base-epp-node-args']) : eppNodeArgs;
  /** Per-run scratch (logs, profiles): the gitignored bench/results/tmp for the default --out, else beside the results. */
  const scratchParent = outDir === path.resolve('bench/results') ? path.resolve('bench/results/tmp') : outDir;
  const tmpDir = path.join(scratchParent, `peers-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const profDir = path.join(tmpDir, 'profiles');
  const profArgs = (sub: string) => (cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(profDir, sub)}`] : []);
  const log = (line: string) => process.stderr.write(line + '\n');
  const options = {
    only,
    rounds,
    sidecarConcurrency: numbers('sidecar-concurrency', o['sidecar-concurrency'], 1, 1024),
    streaming,
    sidecarDuration: number('sidecar-duration', o['sidecar-duration'], 0.2, 120),
    sidecarWarmup: number('sidecar-warmup', o['sidecar-warmup'], 0.1, 15),
    eppPools: numbers('epp-pools', o['epp-pools'], 2, 254),
    eppTokens: numbers('epp-tokens', o['epp-tokens'], 16, 131072),
    eppStreams: numbers('epp-streams', o['epp-streams'], 1, 1024),
    eppDuration: number('epp-duration', o['epp-duration'], 0.2, 120),
    eppWarmup: number('epp-warmup', o['epp-warmup'], 0, 30),
    jitWarmup: number('jit-warmup', o['jit-warmup'], 0, 60),
    eppIdle: number('epp-idle', o['epp-idle'], 0.5, 60),
    pin,
    cpuProf,
    timeLimitSeconds: timeLimitS,
  };
  const args = process.argv.slice(2);
  const command = `npm run bench:peers${args.length ? ` -- ${args.join(' ')}` : ''}`;
  const started = new Date();
  const overall = loadSampler();
  if (pin && !pinSelf('0')) log('[bench/peers] could not pin this process to CPU 0 (taskset -a -p failed); continuing');
  const record: PeersRecord = {
    schema: 'pd-router/bench-peers/v1',
    startedAt: started.toISOString(),
    finishedAt: '',
    wallSeconds: 0,
    command,
    smoke,
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? '?',
      node: process.version,
      platform: `${process.platform}/${process.arch} ${os.release()}`,
      pinned: pin,
    },
    loadAverage: { start: os.loadavg(), end: [], min: NaN, max: NaN, mean: NaN, samples: 0 },
    reference: REFERENCE,
    modes,
    upstream: Object.fromEntries(
      modes.filter((mode): mode is UpstreamMode => !isOurs(mode)).map((mode) => [mode, UPSTREAM_PINS[mode]]),
    ),
    options,
  };
  log(
    `[bench/peers] ${command}; load average ${os
      .loadavg()
      .map((load) => load.toFixed(2))
      .join(' ')}; results to ${outDir}`,
  );
  try {
    if (only !== 'epp') {
      const l = loadSampler();
      const r = await runSidecarBench({
        modes,
        rounds,
        levels: options.sidecarConcurrency,
        streams: streaming,
        jitWarmupS: options.jitWarmup,
        timing: { durationS: options.sidecarDuration, warmupS: options.sidecarWarmup, warmupMaxS: 15, cooldownS: 0.5 },
        pin,
        nodeArgs: [...sidecarNodeArgs, ...profArgs('sidecar')],
        baseNodeArgs: [...baseSidecarNodeArgs, ...profArgs('sidecar')],
        log,
        deadline,
      });
      record.sidecar = { ...r, loadAverage: l.stop(), nodeArgs: sidecarNodeArgs, baseNodeArgs: baseSidecarNodeArgs };
    }
    if (only !== 'sidecar') {
      const loadClient = await loadClientBinary(log);
      const l = loadSampler();
      const cluster = process.env.PD_BENCH_CLUSTER
        ? (JSON.parse(process.env.PD_BENCH_CLUSTER) as ClusterInfo)
        : undefined;
      const r = await runEppBench({
        modes,
        rounds,
        pools: options.eppPools,
        tokens: options.eppTokens,
        streams: options.eppStreams,
        durationS: options.eppDuration,
        warmupS: options.eppWarmup,
        jitWarmupS: options.jitWarmup,
        idleS: options.eppIdle,
        pin,
        nodeArgs: eppNodeArgs,
        baseNodeArgs: baseEppNodeArgs,
        profArgs: (pods) => profArgs(`epp-${pods}pods`),
        loadClient,
        cluster,
        log,
        deadline,
        stopGraceMs: cpuProf ? 40_000 : 10_000,
      });
      record.epp = { ...r, loadAverage: l.stop(), nodeArgs: eppNodeArgs, baseNodeArgs: baseEppNodeArgs };
    }
  } catch (e) {
    record.error = (e as Error).stack ?? String(e);
    process.exitCode = 1;
  } finally {
    await stopAll();
    const logs = writeLogs(path.join(tmpDir, 'logs'), /^extproc-load$/);
    log(
      `[bench/peers] the components' logs (tails): ${path.relative(process.cwd(), path.join(tmpDir, 'logs'))}/ (${logs.length} files)`,
    );
    if (cpuProf) {
      record.profiles = {};
      for (const sub of existsSync(profDir) ? readdirSync(profDir) : [])
        record.profiles[sub] = profilesIn(path.join(profDir, sub));
    }
    record.loadAverage = overall.stop();
    record.finishedAt = new Date().toISOString();
    record.wallSeconds = (Date.now() - started.getTime()) / 1000;
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'peers.json'), JSON.stringify(record, null, 2) + '\n');
    const md = renderMarkdown(record);
    writeFileSync(path.join(outDir, 'peers.md'), md);
    process.stdout.write(md);
    if (record.error) log(`[bench/peers] failed: ${record.error}`);
  }
}

main().catch(async (error: unknown) => {
  process.stderr.write(`bench/peers: ${(error as Error).message}\n`);
  await stopAll();
  process.exitCode = 2;
});
