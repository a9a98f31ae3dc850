/**
 * The interop suite's pinned Go artifacts beyond the simulator (see toolchain.ts for that one): a Kubernetes control
 * plane (etcd, kube-apiserver), helm, the upstream CRDs and charts, and the upstream llm-d programs run as test peers.
 * Everything is built from pinned sources into the gitignored `.cache/interop/` (binaries in `bin/`, patched or
 * unpacked upstream sources in `src/`), each binary with a stamp naming its pin; a binary is rebuilt only when its pin
 * changes, and Go's build cache is shared, so only the first run pays.
 *
 * Each artifact has its own function (`artifact(name)`, memoised per process), so a test file builds only what it
 * needs. A failure (the module proxy refusing a module, a missing tarball) is an ArtifactError naming what is
 * missing: the global setup records it, and only the tests that need that artifact are skipped (need.ts).
 *
 * Sources:
 * - kube-apiserver, etcd, helm: small modules of ours in test/interop/builds/<name>/ (go.mod and go.sum committed)
 *   that require the release and build its command. k8s.io/kubernetes replaces its staging modules with local
 *   paths, so that go.mod replaces each with its release (k8s.io/api => k8s.io/api v0.34.2, ...).
 * - CRDs and charts: `go mod download` of sigs.k8s.io/gateway-api-inference-extension (v1.4.0, v1.5.0) and
 *   sigs.k8s.io/gateway-api (v1.4.0); the module cache directory is used as it is (read-only).
 * - llm-d-inference-scheduler v0.7.1 (`go mod download`): its EPP needs github.com/llm-d/llm-d-kv-cache v0.7.1, which
 *   the module proxy refuses, so the module is copied to .cache/interop/src and built there without the three plugins
 *   that import it (precise-prefix-cache-scorer, tokenizer, context-length-aware); the P/D path is untouched.
 * - llm-d-router at ebab687: no version of it is on the module proxy; its source comes as a tarball
 *   (/work/shared/upstream/llm-d-router-ebab687.tar.gz, or $PD_INTEROP_LLM_D_ROUTER_TARBALL), checked against its
 *   sha256 and unpacked into .cache/interop/src.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runProcess } from '../helpers.js';
import { BIN_DIR, CACHE_DIR, makeWritable, readStamp, writeStamp } from './toolchain.js';

export const SRC_DIR = path.join(CACHE_DIR, 'src');
export const BUILDS_DIR = path.join(ROOT, 'test/interop/builds');
const TIMES_FILE = path.join(CACHE_DIR, 'build-times.json');

export const GAIE_MODULE = 'sigs.k8s.io/gateway-api-inference-extension';
export const GATEWAY_API_MODULE = 'sigs.k8s.io/gateway-api';
export const SCHEDULER_MODULE = 'github.com/llm-d/llm-d-inference-scheduler';
export const SCHEDULER_VERSION = 'v0.7.1';
export const ROUTER_COMMIT = 'ebab687927f5331c1b39defcb579a07951bce56c';
export const ROUTER_TARBALL =
  process.env.PD_INTEROP_LLM_D_ROUTER_TARBALL || '/work/shared/upstream/llm-d-router-ebab687.tar.gz';
const ROUTER_TARBALL_SHA256 = '2d14eaa33a2d54a41e596105a117294d735455c94755e0554a90d4cf307b4b83';

/** The plugins of llm-d-inference-scheduler v0.7.1 that import github.com/llm-d/llm-d-kv-cache (refused by the proxy). */
const SCHEDULER_REMOVED = {
  paths: ['pkg/plugins/preparedata', 'pkg/plugins/multi'],
  scorerFiles: /^precise_prefix_cache.*\.go$/,
  /** Lines of pkg/plugins/register.go that import or register them; exactly these five must be found. */
  registerLines: [
    /pkg\/plugins\/multi"$/,
    /pkg\/plugins\/preparedata"$/,
    /scorer\.PrecisePrefixCachePlugin/,
    /preparedata\.TokenizerPlugin/,
    /multi\.ContextLengthAware/,
  ],
};
export const SCHEDULER_EPP_NOTE =
  'built without the precise-prefix-cache-scorer, tokenizer and context-length-aware plugins: they import ' +
  'github.com/llm-d/llm-d-kv-cache v0.7.1, which the Go module proxy refuses (pkg/plugins/preparedata, pkg/plugins/multi ' +
  'and pkg/plugins/scorer/precise_prefix_cache*.go deleted, their lines in pkg/plugins/register.go removed); the P/D path is unchanged';

export type ArtifactName =
  | 'etcd'
  | 'kube-apiserver'
  | 'helm'
  | 'gaie-v1.4.0'
  | 'gaie-v1.5.0'
  | 'gateway-api-v1.4.0'
  | 'llm-d-inference-scheduler-v0.7.1-src'
  | 'llm-d-inference-scheduler-v0.7.1-epp'
  | 'llm-d-inference-scheduler-v0.7.1-pd-sidecar'
  | 'llm-d-router-ebab687-src'
  | 'llm-d-router-ebab687-epp'
  | 'llm-d-router-ebab687-pd-sidecar'
  | 'gaie-v1.5.0-epp';

export interface Artifact {
  name: ArtifactName;
  /** A binary, or a source / module directory. */
  path: string;
  /** What it is, with its pin. */
  description: string;
  cached: boolean;
  /** Seconds this run spent making it (0 when cached). */
  seconds: number;
  /** Seconds the last build from scratch took (recorded in .cache/interop/build-times.json). */
  lastBuildSeconds?: number;
  note?: string;
}

export type ArtifactOutcome =
  ({ ok: true } & Artifact) | { ok: false; name: ArtifactName; description: string; reason: string };

/** An artifact could not be made; the message names what is missing. */
export class ArtifactError extends Error {
  constructor(
    readonly artifact: ArtifactName,
    message: string,
  ) {
    super(message);
  }
}

type Log = (line: string) => void;

interface Definition {
  description: string;
  make(log: Log): Promise<{ path: string; cached: boolean; note?: string }>;
}

const pinOfGoMod = (dir: string, module: string): string => {
  const m = new RegExp(`^\\s*(?:require\\s+)?${module.replace(/[.]/g, '\\.')} (v\\S+)`, 'm').exec(
    readFileSync(path.join(BUILDS_DIR, dir, 'go.mod'), 'utf8'),
  );
  return m?.[1] ?? '?';
};
export const KUBERNETES_VERSION = pinOfGoMod('kube-apiserver', 'k8s.io/kubernetes');
export const ETCD_VERSION = pinOfGoMod('etcd', 'go.etcd.io/etcd/server/v3');
export const HELM_VERSION = pinOfGoMod('helm', 'helm.sh/helm/v4');

const DEFINITIONS: Record<ArtifactName, Definition> = {
  etcd: {
    description: `etcd ${ETCD_VERSION} (go.etcd.io/etcd/server/v3)`,
    make: (log) => buildTool('etcd', 'go.etcd.io/etcd/server/v3', log),
  },
  'kube-apiserver': {
    description: `kube-apiserver ${KUBERNETES_VERSION} (k8s.io/kubernetes/cmd/kube-apiserver)`,
    make: (log) => {
      const v = KUBERNETES_VERSION.replace(/^v/, '').split('.');
      // The version the binary reports (/version, --version); a plain `go build` would say v0.0.0-master.
      const ldflags = [`gitVersion=${KUBERNETES_VERSION}`, `gitMajor=${v[0]}`, `gitMinor=${v[1]}`, 'gitTreeState=clean']
        .map((text) => `-X k8s.io/component-base/version.${text}`)
        .join(' ');
      return buildTool('kube-apiserver', 'k8s.io/kubernetes/cmd/kube-apiserver', log, ['-ldflags', ldflags]);
    },
  },
  helm: {
    description: `helm ${HELM_VERSION} (helm.sh/helm/v4/cmd/helm)`,
    make: (log) => buildTool('helm', 'helm.sh/helm/v4/cmd/helm', log),
  },
  'gaie-v1.4.0': {
    description: `${GAIE_MODULE} v1.4.0 (CRDs, inferencepool chart)`,
    make: (log) => moduleDir(GAIE_MODULE, 'v1.4.0', log),
  },
  'gaie-v1.5.0': {
    description: `${GAIE_MODULE} v1.5.0 (CRDs, inferencepool chart)`,
    make: (log) => moduleDir(GAIE_MODULE, 'v1.5.0', log),
  },
  'gateway-api-v1.4.0': {
    description: `${GATEWAY_API_MODULE} v1.4.0 (standard CRDs)`,
    make: (log) => moduleDir(GATEWAY_API_MODULE, 'v1.4.0', log),
  },
  'llm-d-inference-scheduler-v0.7.1-src': {
    description: `${SCHEDULER_MODULE} ${SCHEDULER_VERSION} source, patched`,
    make: (log) => schedulerSource(log),
  },
  'llm-d-inference-scheduler-v0.7.1-epp': {
    description: `llm-d-inference-scheduler ${SCHEDULER_VERSION} cmd/epp`,
    make: async (log) => ({
      ...(await buildUpstream(
        'llm-d-inference-scheduler-v0.7.1-src',
        'cmd/epp',
        'llm-d-inference-scheduler-v0.7.1-epp',
        log,
      )),
      note: SCHEDULER_EPP_NOTE,
    }),
  },
  'llm-d-inference-scheduler-v0.7.1-pd-sidecar': {
    description: `llm-d-inference-scheduler ${SCHEDULER_VERSION} cmd/pd-sidecar`,
    make: (log) =>
      buildUpstream(
        'llm-d-inference-scheduler-v0.7.1-src',
        'cmd/pd-sidecar',
        'llm-d-inference-scheduler-v0.7.1-pd-sidecar',
        log,
      ),
  },
  'llm-d-router-ebab687-src': {
    description: `llm-d-router ${ROUTER_COMMIT.slice(0, 7)} source (${path.basename(ROUTER_TARBALL)})`,
    make: (log) => routerSource(log),
  },
  'llm-d-router-ebab687-epp': {
    description: `llm-d-router ${ROUTER_COMMIT.slice(0, 7)} cmd/epp`,
    make: (log) => buildUpstream('llm-d-router-ebab687-src', 'cmd/epp', 'llm-d-router-ebab687-epp', log),
  },
  'llm-d-router-ebab687-pd-sidecar': {
    description: `llm-d-router ${ROUTER_COMMIT.slice(0, 7)} cmd/pd-sidecar`,
    make: (log) => buildUpstream('llm-d-router-ebab687-src', 'cmd/pd-sidecar', 'llm-d-router-ebab687-pd-sidecar', log),
  },
  'gaie-v1.5.0-epp': {
    description: `${GAIE_MODULE} v1.5.0 cmd/epp (GAIE's reference EPP)`,
    make: (log) => buildTool('gaie-v1.5.0-epp', `${GAIE_MODULE}/cmd/epp`, log, [], 'gaie-epp'),
  },
};

export const ARTIFACT_NAMES = Object.keys(DEFINITIONS) as ArtifactName[];

export function describeArtifact(name: ArtifactName): string {
  return DEFINITIONS[name].description;
}

const made = new Map<ArtifactName, Promise<Artifact>>();
const quiet: Log = () => undefined;

/**
 * Builds (or finds in the cache) one artifact; memoised, so concurrent and repeated calls share one build.
 * Rejects with an ArtifactError naming what is missing.
 */
export function artifact(name: ArtifactName, log: Log = quiet): Promise<Artifact> {
  let p = made.get(name);
  if (!p) {
    const def = DEFINITIONS[name];
    p = (async () => {
      const started = Date.now();
      try {
        const r = await def.make(log);
        const seconds = (Date.now() - started) / 1000;
        if (!r.cached) recordBuildTime(name, seconds);
        return {
          name,
          description: def.description,
          ...r,
          seconds: r.cached ? 0 : seconds,
          lastBuildSeconds: buildTimes()[name]?.seconds,
        };
      } catch (e) {
        if (e instanceof ArtifactError) throw e;
        throw new ArtifactError(name, `${def.description}: ${(e as Error).message}`);
      }
    })();
    made.set(name, p);
  }
  return p;
}

/** Builds the artifacts one at a time (Go uses both cores for one build), recording failures instead of throwing. */
export async function prebuild(
  names: readonly ArtifactName[],
  log: Log,
): Promise<Partial<Record<ArtifactName, ArtifactOutcome>>> {
  const out: Partial<Record<ArtifactName, ArtifactOutcome>> = {};
  for (const name of names) {
    try {
      out[name] = { ok: true, ...(await artifact(name, log)) };
    } catch (e) {
      out[name] = { ok: false, name, description: DEFINITIONS[name].description, reason: (e as Error).message };
    }
  }
  return out;
}

function buildTimes(): Record<string, { seconds: number; at: string; go: string }> {
  try {
    return JSON.parse(readFileSync(TIMES_FILE, 'utf8'));
  } catch {
    return {};
  }
}

function recordBuildTime(name: ArtifactName, seconds: number): void {
  const times = buildTimes();
  times[name] = { seconds: Math.round(seconds * 10) / 10, at: new Date().toISOString(), go: goVersionLine() };
  mkdirSync(CACHE_DIR, { recursive: true });
  writeFileSync(TIMES_FILE, JSON.stringify(times, null, 2) + '\n');
}

let goVersionCache: string | undefined;
function goVersionLine(): string {
  goVersionCache ??= spawnSync('go', ['version'], { encoding: 'utf8', timeout: 30_000 }).stdout?.trim() ?? '';
  return goVersionCache;
}

const GO_BUILD_TIMEOUT_MS = 40 * 60_000;

async function go(args: string[], cwd: string, what: string, timeoutMs = GO_BUILD_TIMEOUT_MS): Promise<string> {
  const r = await runProcess('go', args, { cwd, env: { CGO_ENABLED: '0' }, timeoutMs, maxOutput: 200_000 });
  if (r.code !== 0)
    throw new Error(`${what}: go ${args.join(' ')} failed (exit ${r.code}) in ${cwd}:\n${r.output.slice(-6000)}`);
  return r.stdout;
}

/** `go build` of a command into .cache/interop/bin/<name>; written under a temporary name and renamed when complete. */
async function goBuild(cwd: string, pkg: string, binary: string, what: string, extra: string[]): Promise<void> {
  mkdirSync(BIN_DIR, { recursive: true });
  const tmp = `${binary}.tmp-${process.pid}`;
  await go(['build', '-mod=readonly', '-buildvcs=false', ...extra, '-o', tmp, pkg], cwd, what);
  renameSync(tmp, binary);
}

/**
 * A command built from one of our modules, test/interop/builds/<moduleName> (default: <name>), into
 * .cache/interop/bin/<name>; its pin is the digest of go.mod and go.sum.
 */
async function buildTool(
  name: string,
  pkg: string,
  log: Log,
  extra: string[] = [],
  moduleName = name,
): Promise<{ path: string; cached: boolean }> {
  const dir = name;
  const moduleDir = path.join(BUILDS_DIR, moduleName);
  const hash = createHash('sha256').update(extra.join(' '));
  for (const f of ['go.mod', 'go.sum']) hash.update(f).update(readFileSync(path.join(moduleDir, f)));
  const pin = `${pkg} ${hash.digest('hex')}`;
  const binary = path.join(BIN_DIR, dir);
  if (existsSync(binary) && readStamp(binary) === pin) return { path: binary, cached: true };
  log(`[interop] building ${pkg} (test/interop/builds/${moduleName}; first run only)...`);
  await goBuild(moduleDir, pkg, binary, dir, extra);
  writeStamp(binary, pin);
  return { path: binary, cached: false };
}

/**
 * `go mod download -json module@version`: the module's directory in the module cache (read-only). Tried first with
 * GOPROXY=off, which answers from the module cache alone, to tell whether anything was downloaded.
 */
async function moduleDir(module: string, version: string, log: Log): Promise<{ path: string; cached: boolean }> {
  mkdirSync(CACHE_DIR, { recursive: true });
  const download = async (env: NodeJS.ProcessEnv) => {
    const r = await runProcess('go', ['mod', 'download', '-json', `${module}@${version}`], {
      cwd: CACHE_DIR,
      env,
      timeoutMs: 10 * 60_000,
      maxOutput: 200_000,
    });
    let info: { Dir?: string; Error?: string } = {};
    try {
      info = JSON.parse(r.stdout);
    } catch {
      // reported by the caller
    }
    return {
      ok: r.code === 0 && !!info.Dir && existsSync(info.Dir),
      dir: info.Dir ?? '',
      error: info.Error ?? r.output.slice(-3000),
      code: r.code,
    };
  };
  const local = await download({ GOPROXY: 'off' });
  if (local.ok) return { path: local.dir, cached: true };
  log(`[interop] downloading ${module}@${version} (go mod download)`);
  const r = await download({});
  if (!r.ok) throw new Error(`go mod download ${module}@${version} failed (exit ${r.code}): ${r.error}`);
  return { path: r.dir, cached: false };
}

/** A source tree in .cache/interop/src/<name>, (re)made by `fill` unless its stamp matches `pin`. */
async function sourceTree(
  name: string,
  pin: string,
  fill: (dir: string) => Promise<void>,
): Promise<{ path: string; cached: boolean }> {
  const dir = path.join(SRC_DIR, name);
  const stamp = `${dir}.stamp`;
  if (existsSync(dir) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === pin)
    return { path: dir, cached: true };
  rmSync(dir, { recursive: true, force: true });
  rmSync(stamp, { force: true });
  mkdirSync(SRC_DIR, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    await fill(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  renameSync(tmp, dir);
  writeFileSync(stamp, pin + '\n');
  return { path: dir, cached: false };
}

async function schedulerSource(log: Log): Promise<{ path: string; cached: boolean }> {
  const pin = `${SCHEDULER_MODULE}@${SCHEDULER_VERSION} minus llm-d-kv-cache plugins`;
  const r = await sourceTree(`llm-d-inference-scheduler@${SCHEDULER_VERSION}`, pin, async (dir) => {
    const from = (await moduleDir(SCHEDULER_MODULE, SCHEDULER_VERSION, log)).path;
    log(
      `[interop] copying ${SCHEDULER_MODULE}@${SCHEDULER_VERSION} to .cache/interop/src and removing the plugins that need llm-d-kv-cache`,
    );
    cpSync(from, dir, { recursive: true });
    makeWritable(dir);
    for (const p of SCHEDULER_REMOVED.paths) {
      if (!existsSync(path.join(dir, p))) throw new Error(`${p} not found in ${SCHEDULER_MODULE}@${SCHEDULER_VERSION}`);
      rmSync(path.join(dir, p), { recursive: true });
    }
    const scorer = path.join(dir, 'pkg/plugins/scorer');
    const files = readdirSync(scorer).filter((field) => SCHEDULER_REMOVED.scorerFiles.test(field));
    if (!files.includes('precise_prefix_cache.go'))
      throw new Error('pkg/plugins/scorer/precise_prefix_cache.go not found');
    for (const f of files) rmSync(path.join(scorer, f));
    const register = path.join(dir, 'pkg/plugins/register.go');
    const lines = readFileSync(register, 'utf8').split('\n');
    const kept = lines.filter(
      (line) => !SCHEDULER_REMOVED.registerLines.some((re) => re.test(line.trim().replace(/\s*\/\/.*$/, ''))),
    );
    if (lines.length - kept.length !== SCHEDULER_REMOVED.registerLines.length) {
      throw new Error(
        `pkg/plugins/register.go: expected to remove ${SCHEDULER_REMOVED.registerLines.length} lines, removed ${lines.length - kept.length}`,
      );
    }
    writeFileSync(register, kept.join('\n'));
  });
  return r;
}

async function routerSource(log: Log): Promise<{ path: string; cached: boolean }> {
  return sourceTree(
    `llm-d-router@${ROUTER_COMMIT.slice(0, 7)}`,
    `llm-d-router@${ROUTER_COMMIT} ${ROUTER_TARBALL_SHA256}`,
    async (dir) => {
      if (!existsSync(ROUTER_TARBALL)) {
        throw new Error(
          `the llm-d-router source tarball ${ROUTER_TARBALL} is missing (llm-d-router is not on the Go module proxy; set PD_INTEROP_LLM_D_ROUTER_TARBALL to its path)`,
        );
      }
      const sha = createHash('sha256').update(readFileSync(ROUTER_TARBALL)).digest('hex');
      if (sha !== ROUTER_TARBALL_SHA256)
        throw new Error(
          `${ROUTER_TARBALL} has sha256 ${sha}, expected ${ROUTER_TARBALL_SHA256} (llm-d-router ${ROUTER_COMMIT})`,
        );
      log(`[interop] unpacking ${ROUTER_TARBALL} into .cache/interop/src`);
      mkdirSync(dir, { recursive: true });
      const r = await runProcess('tar', ['-xzf', ROUTER_TARBALL, '-C', dir, '--strip-components=1'], {
        timeoutMs: 5 * 60_000,
      });
      if (r.code !== 0) throw new Error(`tar -xzf ${ROUTER_TARBALL} failed (exit ${r.code}): ${r.output.slice(-2000)}`);
      if (!existsSync(path.join(dir, 'go.mod'))) throw new Error(`${ROUTER_TARBALL} has no llm-d-router/go.mod`);
    },
  );
}

/** `go build ./<cmd>` in an upstream source tree (an artifact itself), into .cache/interop/bin/<name>. */
async function buildUpstream(
  source: ArtifactName,
  cmd: string,
  name: string,
  log: Log,
): Promise<{ path: string; cached: boolean }> {
  const src = await artifact(source, log);
  const pin = `${readFileSync(`${src.path}.stamp`, 'utf8').trim()} ./${cmd}`;
  const binary = path.join(BIN_DIR, name);
  if (existsSync(binary) && readStamp(binary) === pin) return { path: binary, cached: true };
  log(`[interop] building ${describeArtifact(source)} ./${cmd} (first run only)...`);
  await goBuild(src.path, `./${cmd}`, binary, name, []);
  writeStamp(binary, pin);
  return { path: binary, cached: false };
}
