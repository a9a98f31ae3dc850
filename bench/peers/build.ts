/**
 * What bench/peers runs besides pd-router: the upstream EPPs and pd-sidecars, the control plane (etcd,
 * kube-apiserver, GAIE's CRDs) from the interop suite's pinned artifacts (test/interop/artifacts.ts: built from pinned
 * sources into .cache/interop on first use, cached after), and the Go load client in bench/peers/extproc-load (its own
 * go.mod on Envoy's generated API, built into .cache/interop/bin/extproc-load, rebuilt when its sources change).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runProcess } from '../../test/helpers.js';
import { artifact, ROUTER_COMMIT, SCHEDULER_MODULE, SCHEDULER_VERSION } from '../../test/interop/artifacts.js';
import { UPSTREAM, type UpstreamRelease } from '../../test/interop/llm-d.js';
import { BIN_DIR } from '../../test/interop/toolchain.js';

export const LOAD_CLIENT_DIR = path.join(ROOT, 'bench/peers/extproc-load');

/** The modes compared, in the order each round runs them; ratios are to REFERENCE. */
export const MODES = ['pd-router', 'llm-d-router', 'v0.7.1'] as const;
export type Mode = (typeof MODES)[number];
export const REFERENCE: Mode = 'llm-d-router';
export type UpstreamMode = Exclude<Mode, 'pd-router'>;
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
  return mode === 'pd-router' ? 'pd-router' : `${UPSTREAM_PINS[mode].program} ${UPSTREAM_PINS[mode].version}`;
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
