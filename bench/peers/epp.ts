/**
 * The EPP half of bench/peers: pd-router's EPP and llm-d's (llm-d-router ebab687, llm-d-inference-scheduler v0.7.1),
 * each with llm-d's P/D sample config of its version (pd-router, a drop-in for the newest upstream, with
 * llm-d-router's), all watching the same pods of one InferencePool through a real kube-apiserver (RBAC as GAIE's
 * chart grants it, a ServiceAccount token). The pods are HTTP servers on 127.0.0.x serving a pd-router simulator's
 * /metrics text (bench/peers/pods.ts, on CPU 0) that the EPPs scrape; the EPP under test runs on CPU 1 and the others are paused (SIGSTOP), so an idle EPP's
 * scraping takes no CPU from the one measured. The load client is bench/peers/extproc-load (Go, Envoy's generated
 * ext_proc API), on CPU 0.
 *
 * For every round, pool, prompt size and stream count, the modes run one after another in a fixed order, each with
 * the same prompts (same seed and nonce), so the three prefix indexes see the same sequence.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { healthClientConstructor } from '../../src/epp/index.js';
import { freePortRange } from '../../test/helpers.js';
import { KubeCluster, startControlPlane, type ClusterInfo } from '../../test/interop/control-plane.js';
import { GAIE_EPP_RULES, freePortOn, inferencePool } from '../../test/interop/kube-fixtures.js';
import { percentile } from '../common/processes.js';
import { scrape, sumBy } from '../common/prometheus.js';
import { isOurs, modeLabel, ourArgs, ourCli, upstreamBinary, upstreamPdConfig, type Mode } from './build.js';
import { onCleanup, startProc, type Proc } from './procs.js';

const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

type HealthCheck = (
  request: { service: string },
  options: { deadline: number },
  callback: (err: Error | null, reply: { status: string }) => void,
) => void;
const PODS_SCRIPT = fileURLToPath(new URL('./pods.js', import.meta.url));

export interface EppOptions {
  modes: readonly Mode[];
  rounds: number;
  /** Pool sizes (pods); a quarter of each (at least one) is prefill, the rest decode. */
  pools: number[];
  tokens: number[];
  streams: number[];
  durationS: number;
  warmupS: number;
  /** Seconds of uncounted decisions right after each EPP starts (each prompt size, 4 streams). */
  jitWarmupS: number;
  /** Seconds each EPP is left idle after its warm-up, to measure the CPU of discovery and scraping alone. */
  idleS: number;
  pin: boolean;
  /** Node flags of pd-router's EPP (the Kustomize base's NODE_OPTIONS by default). */
  nodeArgs: string[];
  /** Node flags of the pd-router-base mode. */
  baseNodeArgs: string[];
  /** Extra Node flags per pool size (--cpu-prof and its directory). */
  profArgs?: (endpoints: number) => string[];
  loadClient: string;
  /** An existing API server with GAIE v1.5.0's CRDs (the interop suite's); default: start one. */
  cluster?: ClusterInfo;
  log: (line: string) => void;
  deadline: number;
  /** Grace for stopping pd-router's EPP (a CPU profile is written on exit). */
  stopGraceMs: number;
}

export interface EppCell {
  requests: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  warmupErrors: number;
  /** Share of decisions with a prefill pick. */
  prefillShare: number;
  /** Distinct decode destinations picked. */
  destinations: number;
  /** CPU of the EPP process per decision (µs), over the whole of its runs (warm-up included). */
  cpuPerDecisionUs: number;
  /**
   * The EPP's own scheduling time, from its inference_extension_scheduler_e2e_duration_seconds histogram (GAIE's name,
   * which all three serve) over the runs, warm-up included: the upper bound (ms) of the bucket holding p50 and p99.
   */
  schedulerE2eP50Ms?: number;
  schedulerE2eP99Ms?: number;
  errorSamples: string[];
}

export interface EppRow {
  endpoints: number;
  tokens: number;
  streams: number;
  bodyBytes: number;
  modes: Partial<Record<Mode, EppCell>>;
}

export interface EppResult {
  rows: EppRow[];
  /** VmHWM per pool size and mode at the end (bytes). */
  peakRssBytes: Record<string, Partial<Record<Mode, number>>>;
  /** CPU used while idle (no decisions: discovery and scraping), in cores, per pool size and mode. */
  idleCpu: Record<string, Partial<Record<Mode, number>>>;
  configs: Partial<Record<Mode, string>>;
  goApi: string;
  rounds: number;
  complete: boolean;
  /** What failed to start, per pool and mode (e.g. an upstream that does not support a pool), instead of figures. */
  unavailable: string[];
}

interface LoadReport {
  streams: number;
  tokens: number;
  bodyBytes: number;
  warmupRequests: number;
  warmupErrors: number;
  requests: number;
  errors: number;
  errorSamples: string[];
  elapsedMs: number;
  perSecond: number;
  prefill: number;
  destinations: Record<string, number>;
  latenciesUs: number[];
  goApi: string;
}

export function healthCheck(port: number): Promise<string> {
  const Ctor = healthClientConstructor();
  // eslint-disable-next-line no-restricted-syntax -- the health client is generated at runtime by proto-loader, so its Check method is not in the type
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check: HealthCheck;
  };
  return new Promise<string>((resolve) =>
    client.Check(
      { service: EXT_PROC_SERVICE },
      { deadline: Date.now() + 2_000 },
      (err: Error | null, reply: { status: string }) => {
        client.close();
        resolve(err ? `error: ${err.message}` : reply.status);
      },
    ),
  );
}

/** `inference_pool_ready_pods{name="pool"}` as the EPP serves it (all three serve GAIE's gauge), or NaN. */
export async function readyPods(metricsPort: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(3_000) });
  const text = await r.text();
  // GAIE's gauge; a --baseline pd-router from before the GAIE metric names has only its own llm_d_epp_ready_endpoints.
  const m =
    /^inference_pool_ready_pods\{[^}]*name="pool"[^}]*\} (\S+)/m.exec(text) ??
    /^llm_d_epp_ready_endpoints\{[^}]*name="pool"[^}]*\} (\S+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

interface Pool {
  endpoints: number;
  namespace: string;
  kubeconfig: string;
  pods: Proc;
}

async function setUpPool(cluster: KubeCluster, index: number, size: number, opts: EppOptions): Promise<Pool> {
  if (size < 2 || size > 254) throw new Error(`a pool has 2 to 254 pods, not ${size}`);
  const addresses = Array.from({ length: size }, (_, i) => `127.0.${10 + index}.${i + 1}`);
  const port = await freePortOn(addresses);
  const pods = startProc(
    `pods (${size})`,
    process.execPath,
    [PODS_SCRIPT, '--port', String(port), '--addresses', addresses.join(',')],
    { cpus: opts.pin ? '0' : undefined },
  );
  await pods.waitForOutput(/pods ready/, 120_000);
  const namespace = await cluster.createNamespace(`bench-peers-${size}`);
  const prefill = Math.max(1, Math.floor(size / 4));
  for (let i = 0; i < size; i++) {
    const role = i < prefill ? 'prefill' : 'decode';
    await cluster.createPod(namespace, `${role}-${i}`, {
      labels: { app: 'bench-pd', 'llm-d.ai/role': role },
      ip: addresses[i],
    });
  }
  await cluster.apply(inferencePool('pool', { app: 'bench-pd' }, [port]), { namespace });
  await cluster.createServiceAccount(namespace, 'epp');
  await cluster.grant(namespace, 'epp', 'epp', GAIE_EPP_RULES);
  const kubeconfig = await cluster.serviceAccountKubeconfig(namespace, 'epp');
  return { endpoints: size, namespace, kubeconfig, pods };
}

interface RunningEpp {
  proc: Proc;
  grpcPort: number;
  metricsPort: number;
}

const SCHEDULER_E2E = 'inference_extension_scheduler_e2e_duration_seconds_bucket';

/** Cumulative counts of the EPP's scheduler e2e histogram by upper bound (s), or an empty map if unavailable. */
async function schedulerBuckets(epp: RunningEpp): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  try {
    for (const [le, n] of sumBy(await scrape(`http://127.0.0.1:${epp.metricsPort}/metrics`), SCHEDULER_E2E, 'le'))
      out.set(le === '+Inf' ? Infinity : Number(le), n);
  } catch {
    // reported as n/a
  }
  return out;
}

/** The upper bound (ms) of the bucket under which a share q of the counted observations fall. */
function bucketQuantileMs(counts: Map<number, number>, quantile: number): number | undefined {
  const bounds = [...counts.keys()].sort((left, right) => left - right);
  const total = counts.get(Infinity) ?? 0;
  if (total <= 0) return undefined;
  for (const b of bounds) if ((counts.get(b) ?? 0) >= quantile * total) return b * 1000;
  return undefined;
}

async function startEppProc(mode: Mode, pool: Pool, configFile: string, opts: EppOptions): Promise<RunningEpp> {
  const [grpcPort, healthPort, metricsPort] = [await freePortRange(1), await freePortRange(1), await freePortRange(1)];
  const cpus = opts.pin ? '1' : undefined;
  const common = [
    `--grpc-port=${grpcPort}`,
    `--grpc-health-port=${healthPort}`,
    `--metrics-port=${metricsPort}`,
    '--secure-serving=false',
    '--pool-name=pool',
    `--pool-namespace=${pool.namespace}`,
    `--config-file=${configFile}`,
    // /metrics without a bearer token for all three (the bench reads it); upstream's default requires one.
    '--metrics-endpoint-auth=false',
    // Tracing off for all three (no collector here; the same work for every program).
    '--tracing=false',
  ];
  const proc = isOurs(mode)
    ? startProc(
        `${modeLabel(mode)} epp (${pool.endpoints} pods)`,
        process.execPath,
        [
          ...(mode === 'pd-router-base' ? opts.baseNodeArgs : opts.nodeArgs),
          ...(opts.profArgs?.(pool.endpoints) ?? []),
          ourCli(mode),
          'epp',
          ...ourArgs(mode, 'epp', ['--host=127.0.0.1', ...common, `--kubeconfig=${pool.kubeconfig}`]),
        ],
        { cpus },
      )
    : startProc(
        `${modeLabel(mode)} epp (${pool.endpoints} pods)`,
        await upstreamBinary(mode, 'epp', opts.log),
        common,
        { cpus, env: { KUBECONFIG: pool.kubeconfig, NAMESPACE: pool.namespace } },
      );
  try {
    await proc.waitUntil(
      `gRPC health SERVING on port ${healthPort}`,
      async () => (await healthCheck(healthPort)) === 'SERVING',
      120_000,
    );
    // Every pod discovered and scraped (upstream refreshes this gauge every 5 s).
    let last = NaN;
    await proc
      .waitUntil(
        `${pool.endpoints} ready pods on :${metricsPort}/metrics`,
        async () => (last = await readyPods(metricsPort)) === pool.endpoints,
        90_000,
      )
      .catch((error: unknown) => {
        throw new Error(`${(error as Error).message.split('\n')[0]} (last seen: ${last}); its log:\n${proc.tail()}`);
      });
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { proc, grpcPort, metricsPort };
}

async function runLoad(
  epp: RunningEpp,
  opts: EppOptions,
  tokens: number,
  streams: number,
  nonce: string,
  warmupS: number,
  durationS: number,
): Promise<LoadReport> {
  const args = [
    `-addr=127.0.0.1:${epp.grpcPort}`,
    `-streams=${streams}`,
    `-tokens=${tokens}`,
    `-warmup=${warmupS}s`,
    `-duration=${durationS}s`,
    `-nonce=${nonce}`,
    '-timeout=10s',
  ];
  const client = startProc('extproc-load', opts.loadClient, args, {
    cpus: opts.pin ? '0' : undefined,
    maxOutput: 64 * 1024 * 1024,
  });
  const bound = (warmupS + durationS) * 1000 + 60_000;
  const timer = setTimeout(() => client.child.kill('SIGKILL'), bound);
  await client.exited;
  clearTimeout(timer);
  const line = client.stdout().trim().split('\n').pop() ?? '';
  if (!line.startsWith('{')) throw new Error(`the load client failed: ${client.describeExit()}`);
  if (!epp.proc.running) throw new Error(epp.proc.describeExit());
  return JSON.parse(line) as LoadReport;
}

export async function runEppBench(opts: EppOptions): Promise<EppResult> {
  let cluster: KubeCluster;
  if (opts.cluster) {
    cluster = new KubeCluster(opts.cluster);
  } else {
    opts.log('[bench/peers] starting etcd and kube-apiserver (test/interop/control-plane.ts)...');
    const t0 = Date.now();
    const plane = await startControlPlane();
    onCleanup(() => plane.stop());
    cluster = plane;
    opts.log(`[bench/peers] control plane ready in ${((Date.now() - t0) / 1000).toFixed(0)} s at ${plane.server}`);
  }
  const epps = new Map<string, RunningEpp>();
  const pools: Pool[] = [];
  const unavailable: string[] = [];
  const idleCpu: Record<string, Partial<Record<Mode, number>>> = {};
  try {
    await cluster.installCrds('gaie-v1.5.0');
    const configs: Partial<Record<Mode, string>> = {};
    for (const m of opts.modes) configs[m] = await upstreamPdConfig(isOurs(m) ? 'llm-d-router' : m, opts.log);
    for (const [i, n] of opts.pools.entries()) {
      const pool = await setUpPool(cluster, i, n, opts);
      pools.push(pool);
      for (const m of opts.modes) {
        try {
          opts.log(`[bench/peers] starting ${modeLabel(m)} epp for ${n} pods...`);
          const epp = await startEppProc(m, pool, configs[m]!, opts);
          // A first decision proves the EPP serves this pool before anything is measured.
          const probe = await runLoad(epp, opts, 256, 1, `probe-${n}`, 0, 1);
          if (probe.requests === 0)
            throw new Error(`no decision from ${modeLabel(m)} epp in 1 s: ${probe.errorSamples.join('; ')}`);
          if (opts.jitWarmupS > 0)
            for (const t of opts.tokens)
              await runLoad(epp, opts, t, 4, `jit-${n}-${t}`, 0, opts.jitWarmupS / opts.tokens.length);
          // Idle: no decisions, only discovery and the scraping of every pod (each --refresh-metrics-interval, 50 ms).
          const cpu0 = epp.proc.cpuSeconds() ?? NaN;
          const t0 = performance.now();
          await new Promise((resolve) => setTimeout(resolve, opts.idleS * 1000));
          idleCpu[String(n)] ??= {};
          idleCpu[String(n)][m] = ((epp.proc.cpuSeconds() ?? NaN) - cpu0) / ((performance.now() - t0) / 1000);
          epp.proc.pause();
          epps.set(`${n}/${m}`, epp);
        } catch (e) {
          const why = `${modeLabel(m)} EPP with ${n} pods: ${(e as Error).message.split('\n').slice(0, 12).join('\n')}`;
          if (n <= 8) throw new Error(why);
          // Only the large pool may be unsupported upstream; it is reported instead of failing the run.
          opts.log(`[bench/peers] ${why}`);
          unavailable.push(why);
        }
      }
    }
    const key = (pods: number, tokens: number, streams: number, mode: string) => `${pods}/${tokens}/${streams}/${mode}`;
    const reports = new Map<string, LoadReport[]>();
    const cpu = new Map<string, { seconds: number; requests: number }>();
    const hist = new Map<string, Map<number, number>>();
    let goApi = 'unknown';
    let roundsDone = 0;
    let complete = true;
    outer: for (let round = 0; round < opts.rounds; round++) {
      for (const n of opts.pools) {
        for (const t of opts.tokens) {
          for (const s of opts.streams) {
            for (const m of opts.modes) {
              const epp = epps.get(`${n}/${m}`);
              if (!epp) continue;
              if (Date.now() > opts.deadline) {
                opts.log(`[bench/peers] epp: time limit reached in round ${round + 1}; reporting the runs done`);
                complete = false;
                break outer;
              }
              epp.proc.resume();
              const before = await schedulerBuckets(epp);
              const cpu0 = epp.proc.cpuSeconds() ?? NaN;
              let r: LoadReport;
              let cpu1: number;
              try {
                r = await runLoad(epp, opts, t, s, `r${round}-${n}-${t}-${s}`, opts.warmupS, opts.durationS);
                cpu1 = epp.proc.cpuSeconds() ?? NaN;
                const after = await schedulerBuckets(epp);
                const acc = hist.get(key(n, t, s, m)) ?? new Map<number, number>();
                for (const [le, v] of after) acc.set(le, (acc.get(le) ?? 0) + v - (before.get(le) ?? 0));
                hist.set(key(n, t, s, m), acc);
              } finally {
                epp.proc.pause();
              }
              goApi = r.goApi;
              const c = cpu.get(key(n, t, s, m)) ?? { seconds: 0, requests: 0 };
              c.seconds += cpu1 - cpu0;
              c.requests += r.requests + r.warmupRequests;
              cpu.set(key(n, t, s, m), c);
              const list = reports.get(key(n, t, s, m)) ?? [];
              list.push(r);
              reports.set(key(n, t, s, m), list);
              opts.log(
                `[bench/peers] epp round ${round + 1}/${opts.rounds} ${n} pods, ${t} tokens, ${s} streams, ${m}: p50 ${(percentile(r.latenciesUs, 50) / 1000).toFixed(2)} ms, p99 ${(percentile(r.latenciesUs, 99) / 1000).toFixed(2)} ms, ${r.perSecond.toFixed(0)}/s, ${r.errors} errors${r.errorSamples.length ? ` (${r.errorSamples[0]})` : ''}`,
              );
            }
          }
        }
      }
      roundsDone = round + 1;
    }
    const rows: EppRow[] = [];
    for (const n of opts.pools) {
      for (const t of opts.tokens) {
        for (const s of opts.streams) {
          const row: EppRow = { endpoints: n, tokens: t, streams: s, bodyBytes: 0, modes: {} };
          for (const m of opts.modes) {
            const rs = reports.get(key(n, t, s, m));
            if (!rs) continue;
            const lat = rs.flatMap((run) => run.latenciesUs).sort((left, right) => left - right);
            const requests = lat.length;
            const c = cpu.get(key(n, t, s, m))!;
            row.bodyBytes ||= rs[0].bodyBytes;
            row.modes[m] = {
              requests,
              perSecond: requests / (rs.reduce((sum, run) => sum + run.elapsedMs, 0) / 1000),
              p50Ms: percentile(lat, 50) / 1000,
              p99Ms: percentile(lat, 99) / 1000,
              errors: rs.reduce((sum, run) => sum + run.errors, 0),
              warmupErrors: rs.reduce((sum, run) => sum + run.warmupErrors, 0),
              prefillShare: rs.reduce((sum, run) => sum + run.prefill, 0) / Math.max(1, requests),
              destinations: new Set(rs.flatMap((run) => Object.keys(run.destinations))).size,
              cpuPerDecisionUs: (c.seconds / Math.max(1, c.requests)) * 1e6,
              schedulerE2eP50Ms: bucketQuantileMs(hist.get(key(n, t, s, m)) ?? new Map<number, number>(), 0.5),
              schedulerE2eP99Ms: bucketQuantileMs(hist.get(key(n, t, s, m)) ?? new Map<number, number>(), 0.99),
              errorSamples: [...new Set(rs.flatMap((run) => run.errorSamples))].slice(0, 3),
            };
          }
          if (Object.keys(row.modes).length > 0) rows.push(row);
        }
      }
    }
    const peakRssBytes: Record<string, Partial<Record<Mode, number>>> = {};
    for (const [k, e] of epps) {
      const [n, m] = k.split('/') as [string, Mode];
      (peakRssBytes[n] ??= {})[m] = e.proc.peakRssBytes();
    }
    return { rows, peakRssBytes, idleCpu, configs, goApi, rounds: roundsDone, complete, unavailable };
  } finally {
    for (const e of epps.values()) await e.proc.stop(e.proc.name.startsWith('pd-router') ? opts.stopGraceMs : 10_000);
    for (const p of pools) await p.pods.stop();
    await cluster.close();
  }
}
