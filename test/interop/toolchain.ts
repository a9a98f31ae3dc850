/**
 * The interop suite's Go side: finds the Go toolchain, installs the pinned upstream simulator
 * (github.com/llm-d/llm-d-inference-sim) with `go install` from the Go module proxy, and builds the Envoy ext_proc
 * client in test/interop/extproc-client. Both land in the repo-local, gitignored `.cache/interop/bin` and are reused
 * while their pins (and sources) are unchanged, so only the first run pays for the build.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runProcess, type RunResult } from '../helpers.js';

/** The upstream simulator, pinned. v0.10.2 is the image llm-d's own router e2e tests run (ghcr.io/llm-d/llm-d-inference-sim:v0.10.2). */
export const SIM_MODULE = 'github.com/llm-d/llm-d-inference-sim';
export const SIM_VERSION = 'v0.10.2';
export const SIM_PACKAGE = `${SIM_MODULE}/cmd/llm-d-inference-sim`;

export const CACHE_DIR = path.join(ROOT, '.cache/interop');
export const BIN_DIR = path.join(CACHE_DIR, 'bin');
export const EXTPROC_CLIENT_DIR = path.join(ROOT, 'test/interop/extproc-client');
export const UPSTREAM_METRICS_DIR = path.join(ROOT, 'test/interop/upstream-metrics');

export const GO_MISSING_MESSAGE =
  'interop suite skipped: the Go toolchain (`go`) is not on PATH. Install Go >= 1.26 (https://go.dev/dl/, or your package manager) ' +
  'to run it; it builds the pinned upstream simulator, a Kubernetes control plane and the upstream llm-d programs from the Go module proxy.';

export interface InteropEnv {
  available: boolean;
  /** Why the suite is skipped (when not available). */
  reason?: string;
  goVersion?: string;
  simModule: string;
  simVersion: string;
  simBinary?: string;
  simCached?: boolean;
  simInstallSeconds?: number;
  /** How `go install` reached the module (see installSim). */
  simInstallNote?: string;
  extProcClient?: string;
  extProcClientCached?: boolean;
  /** The pinned go-control-plane module, from extproc-client/go.mod. */
  goControlPlane?: string;
  /** Prints GAIE v1.4.0's and llm-d-inference-scheduler v0.7.1's EPP metric families (test/interop/upstream-metrics). */
  upstreamMetrics?: string;
  upstreamMetricsCached?: boolean;
}

/** `go version`, or undefined when Go is not installed. */
export function goVersion(): string | undefined {
  const r = spawnSync('go', ['version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.trim();
}

function goEnv(name: string): string {
  const r = spawnSync('go', ['env', name], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? r.stdout.trim() : '';
}

/** Runs a go command to completion, bounded; output (stdout+stderr) kept for the error message. */
function runGo(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<RunResult> {
  return runProcess('go', args, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env,
    timeoutMs: opts.timeoutMs,
    maxOutput: 100_000,
  });
}

/** Deadline of one `go install` / `go build` here: minutes on an idle machine, far more on a shared, loaded one. */
const GO_INSTALL_TIMEOUT_MS = 30 * 60_000;

/** A cached build's stamp file: the pin (version, commit or digest) it was built from, beside it. */
const stampOf = (file: string) => `${file}.stamp`;
/** The pin `file` was built from, or '' when it has no stamp. */
export const readStamp = (file: string) =>
  existsSync(stampOf(file)) ? readFileSync(stampOf(file), 'utf8').trim() : '';
/** Records that `file` was built from `pin`. */
export const writeStamp = (file: string, pin: string) => writeFileSync(stampOf(file), pin + '\n');

/** Makes a copied module-cache tree writable (the module cache is read-only). */
export function makeWritable(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) makeWritable(child);
    else if (entry.isFile()) chmodSync(child, statSync(child).mode | 0o200);
  }
}

/**
 * `go install <sim>@<version>` into .cache/interop/bin (GOBIN), CGO off (v0.10.2 is pure Go: go-zeromq and
 * modernc sqlite). Reused when the binary and its stamp match the pin.
 *
 * `go install pkg@version` also asks the proxy for the module's version list, to report a deprecation. A proxy that
 * serves the pinned version but refuses the list (as a filtering registry mirror may) makes that fatal. Then the
 * pinned version is fetched with `go mod download` into the module cache, whose download directory is itself a
 * GOPROXY, and the install is retried with it as a fallback after the configured proxies (`<proxies>|file://<GOMODCACHE>/cache/download`). The build is unchanged: same
 * module, same version, verified against go.sum / the checksum database.
 */
export async function installSim(
  log: (line: string) => void,
): Promise<Pick<InteropEnv, 'simBinary' | 'simCached' | 'simInstallSeconds' | 'simInstallNote'>> {
  mkdirSync(BIN_DIR, { recursive: true });
  const binary = path.join(BIN_DIR, 'llm-d-inference-sim');
  const pin = `${SIM_MODULE}@${SIM_VERSION}`;
  if (existsSync(binary) && readStamp(binary) === pin) return { simBinary: binary, simCached: true };
  log(`[interop] installing ${pin} with go install (first run only; a few minutes on 2 cores)...`);
  const started = Date.now();
  const env = { GOBIN: BIN_DIR, CGO_ENABLED: '0' };
  const target = `${SIM_PACKAGE}@${SIM_VERSION}`;
  let r = await runGo(['install', target], { env, timeoutMs: GO_INSTALL_TIMEOUT_MS });
  let note: string | undefined;
  if (r.code !== 0 && /loading deprecation for/.test(r.output)) {
    // "|" (not ",") so that any error of the configured proxies, a 403 included, falls through to the module cache.
    const proxies = (goEnv('GOPROXY') || 'https://proxy.golang.org')
      .split(/[,|]/)
      .filter((path) => path && path !== 'direct' && path !== 'off');
    const goproxy = [...proxies, `file://${goEnv('GOMODCACHE')}/cache/download`].join('|');
    note = `the module proxy refused ${SIM_MODULE}'s version list (deprecation check); retried with GOPROXY=${goproxy}`;
    log(`[interop] ${note}`);
    // `go mod download` fetches the pinned version (.info, .mod, .zip) and records it in the cache's version list.
    const d = await runGo(['mod', 'download', `${SIM_MODULE}@${SIM_VERSION}`], {
      env,
      timeoutMs: GO_INSTALL_TIMEOUT_MS,
    });
    if (d.code !== 0)
      throw new Error(
        `go mod download ${SIM_MODULE}@${SIM_VERSION} failed (exit ${d.code}):\n${d.output.slice(-6000)}`,
      );
    r = await runGo(['install', target], { env: { ...env, GOPROXY: goproxy }, timeoutMs: GO_INSTALL_TIMEOUT_MS });
  }
  if (r.code !== 0 || !existsSync(binary))
    throw new Error(`go install ${target} failed (exit ${r.code}):\n${r.output.slice(-6000)}`);
  writeStamp(binary, pin);
  return {
    simBinary: binary,
    simCached: false,
    simInstallSeconds: (Date.now() - started) / 1000,
    simInstallNote: note,
  };
}

/** Builds test/interop/extproc-client (its own go.mod, pinned go-control-plane) unless its sources are unchanged. */
export async function buildExtProcClient(
  log: (line: string) => void,
): Promise<Pick<InteropEnv, 'extProcClient' | 'extProcClientCached' | 'goControlPlane'>> {
  mkdirSync(BIN_DIR, { recursive: true });
  const binary = path.join(BIN_DIR, 'extproc-client');
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go'])
    hash.update(f).update(readFileSync(path.join(EXTPROC_CLIENT_DIR, f)));
  const digest = hash.digest('hex');
  const goMod = readFileSync(path.join(EXTPROC_CLIENT_DIR, 'go.mod'), 'utf8');
  const pin = /github\.com\/envoyproxy\/go-control-plane\/envoy (v\S+)/.exec(goMod)?.[1];
  const goControlPlane = `github.com/envoyproxy/go-control-plane/envoy ${pin ?? '?'}`;
  if (existsSync(binary) && readStamp(binary) === digest)
    return { extProcClient: binary, extProcClientCached: true, goControlPlane };
  log(`[interop] building the Envoy ext_proc client (${goControlPlane})...`);
  const r = await runGo(['build', '-mod=readonly', '-o', binary, '.'], {
    cwd: EXTPROC_CLIENT_DIR,
    env: { CGO_ENABLED: '0' },
    timeoutMs: GO_INSTALL_TIMEOUT_MS,
  });
  if (r.code !== 0 || !existsSync(binary))
    throw new Error(`go build of test/interop/extproc-client failed (exit ${r.code}):\n${r.output.slice(-6000)}`);
  writeStamp(binary, digest);
  return { extProcClient: binary, extProcClientCached: false, goControlPlane };
}

/**
 * Builds test/interop/upstream-metrics (its own go.mod: GAIE v1.4.0 and llm-d-inference-scheduler v0.7.1, pulling
 * controller-runtime and client-go, so the first build takes minutes) unless its sources are unchanged.
 */
export async function buildUpstreamMetrics(
  log: (line: string) => void,
): Promise<Pick<InteropEnv, 'upstreamMetrics' | 'upstreamMetricsCached'>> {
  mkdirSync(BIN_DIR, { recursive: true });
  const binary = path.join(BIN_DIR, 'upstream-metrics');
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go'])
    hash.update(f).update(readFileSync(path.join(UPSTREAM_METRICS_DIR, f)));
  const digest = hash.digest('hex');
  if (existsSync(binary) && readStamp(binary) === digest)
    return { upstreamMetrics: binary, upstreamMetricsCached: true };
  log(
    '[interop] building the upstream metrics reference (GAIE v1.4.0, llm-d-inference-scheduler v0.7.1; first run only, minutes on 2 cores)...',
  );
  const r = await runGo(['build', '-mod=readonly', '-o', binary, '.'], {
    cwd: UPSTREAM_METRICS_DIR,
    env: { CGO_ENABLED: '0' },
    timeoutMs: 20 * 60_000,
  });
  if (r.code !== 0 || !existsSync(binary))
    throw new Error(`go build of test/interop/upstream-metrics failed (exit ${r.code}):\n${r.output.slice(-6000)}`);
  writeStamp(binary, digest);
  return { upstreamMetrics: binary, upstreamMetricsCached: false };
}

/** Everything the interop tests need, or the reason to skip them. */
export async function prepareInterop(log: (line: string) => void): Promise<InteropEnv> {
  const base: InteropEnv = { available: false, simModule: SIM_MODULE, simVersion: SIM_VERSION };
  const version = goVersion();
  if (!version) return { ...base, reason: GO_MISSING_MESSAGE };
  const sim = await installSim(log);
  const client = await buildExtProcClient(log);
  const metrics = await buildUpstreamMetrics(log);
  return { ...base, available: true, goVersion: version, ...sim, ...client, ...metrics };
}
