/**
 * What bench/peers runs besides pd-router: the upstream EPPs and pd-sidecars, the control plane (etcd,
 * kube-apiserver, GAIE's CRDs) from the interop suite's pinned artifacts (test/interop/artifacts.ts: built from pinned
 * sources into .cache/interop on first use, cached after), and the Go load client in bench/peers/extproc-load (its own
 * go.mod on Envoy's generated API, built into .cache/interop/bin/extproc-load, rebuilt when its sources change).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runProcess } from '../../test/helpers.js';
import { CLI } from '../common/processes.js';
import { artifact, ROUTER_COMMIT, SCHEDULER_MODULE, SCHEDULER_VERSION } from '../../test/interop/artifacts.js';
import { UPSTREAM, type UpstreamRelease } from '../../test/interop/llm-d.js';
import { BIN_DIR } from '../../test/interop/toolchain.js';

export const LOAD_CLIENT_DIR = path.join(ROOT, 'bench/peers/extproc-load');

/** The modes compared, in the order each round runs them; ratios are to REFERENCE. */
export const MODES = ['pd-router', 'pd-router-base', 'llm-d-router', 'v0.7.1'] as const;
export type Mode = (typeof MODES)[number];
export const REFERENCE: Mode = 'llm-d-router';
/** pd-router from this checkout, or from another built checkout (--baseline) to compare two of its versions. */
export type OurMode = 'pd-router' | 'pd-router-base';
export type UpstreamMode = Exclude<Mode, OurMode>;

/** Whether a mode runs pd-router (this checkout's or the baseline's). */
export function isOurs(mode: Mode): mode is OurMode {
  return mode === 'pd-router' || mode === 'pd-router-base';
}

let baselineDir: string | undefined;
/** The built pd-router checkout the `pd-router-base` mode runs (its dist/src/cli.js). */
export function setBaseline(dir: string): void {
  const cli = path.join(dir, 'dist/src/cli.js');
  if (!existsSync(cli)) throw new Error(`--baseline: ${cli} is missing (run npm ci && npm run build in ${dir})`);
  baselineDir = dir;
}

/** The CLI a pd-router mode runs. */
export function ourCli(mode: OurMode): string {
  if (mode === 'pd-router') return CLI;
  if (!baselineDir) throw new Error('the pd-router-base mode needs --baseline <a built pd-router checkout>');
  return path.join(baselineDir, 'dist/src/cli.js');
}

/**
 * The arguments a pd-router mode's component accepts: the baseline may predate a flag this checkout passes
 * (`--metrics-endpoint-auth`: a baseline without it serves /metrics without auth anyway), so flags its `--help` does
 * not list are left out for it.
 */
export function ourArgs(mode: OurMode, component: 'epp' | 'sidecar', args: string[]): string[] {
  if (mode === 'pd-router') return args;
  const help = spawnSync(process.execPath, [ourCli(mode), component, '--help'], { encoding: 'utf8' }).stdout;
  return args.filter((arg) => !arg.startsWith('--') || help.includes(arg.split('=')[0] + ' '));
}

function baselineLabel(): string {
  const head = baselineDir
    ? spawnSync('git', ['-C', baselineDir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim()
    : '';
  return `pd-router ${head || 'baseline'}`;
}
export const RELEASE_OF: Record<UpstreamMode, UpstreamRelease> = { 'llm-d-router': 'ebab687', 'v0.7.1': 'v0.7.1' };

/** What each upstream mode is, pinned: named next to every figure. */
export const UPSTREAM_PINS: Record<UpstreamMode, { program: string; version: string; source: string }> = {
  'llm-d-router': {
    program: 'llm-d-router',
    version: ROUTER_COMMIT.slice(0, 7),
    source: `github.com/llm-d/llm-d-router@${ROUTER_COMMIT}`,
  },
  'v0.7.1': {
    program: 'llm-d-inference-scheduler',
    version: SCHEDULER_VERSION,
    source: `${SCHEDULER_MODULE}@${SCHEDULER_VERSION}`,
  },
};

export function modeLabel(mode: Mode): string {
  if (mode === 'pd-router') return 'pd-router';
  if (mode === 'pd-router-base') return baselineLabel();
  return `${UPSTREAM_PINS[mode].program} ${UPSTREAM_PINS[mode].version}`;
}

type Log = (line: string) => void;

/** An upstream binary (EPP or pd-sidecar) of a mode, built on first use. */
export async function upstreamBinary(mode: UpstreamMode, kind: 'epp' | 'sidecar', log: Log): Promise<string> {
  return (await artifact(UPSTREAM[RELEASE_OF[mode]][kind], log)).path;
}

/** llm-d's P/D sample EndpointPickerConfig of an upstream release (deploy/config/pd-epp-config.yaml). */
export async function upstreamPdConfig(mode: UpstreamMode, log: Log): Promise<string> {
  const src = (await artifact(UPSTREAM[RELEASE_OF[mode]].source, log)).path;
  const file = path.join(src, 'deploy/config/pd-epp-config.yaml');
  if (!existsSync(file)) throw new Error(`${file} is missing from ${UPSTREAM_PINS[mode].source}`);
  return file;
}

/** Builds bench/peers/extproc-load unless its sources are unchanged (stamp: their digest). */
export async function loadClientBinary(log: Log): Promise<string> {
  mkdirSync(BIN_DIR, { recursive: true });
  const binary = path.join(BIN_DIR, 'extproc-load');
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) hash.update(f).update(readFileSync(path.join(LOAD_CLIENT_DIR, f)));
  const digest = hash.digest('hex');
  const stamp = `${binary}.stamp`;
  if (existsSync(binary) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest) return binary;
  log('[bench/peers] building the ext_proc load client (bench/peers/extproc-load, Envoy go-control-plane)...');
  const tmp = `${binary}.tmp-${process.pid}`;
  const r = await runProcess('go', ['build', '-mod=readonly', '-buildvcs=false', '-o', tmp, '.'], {
    cwd: LOAD_CLIENT_DIR,
    env: { CGO_ENABLED: '0' },
    timeoutMs: 20 * 60_000,
    maxOutput: 100_000,
  });
  if (r.code !== 0 || !existsSync(tmp))
    throw new Error(
      `go build of bench/peers/extproc-load failed (exit ${r.code}); is Go >= 1.24 on the PATH?\n${r.output.slice(-4000)}`,
    );
  renameSync(tmp, binary);
  writeFileSync(stamp, digest + '\n');
  return binary;
}
