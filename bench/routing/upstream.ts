/**
 * llm-d-router's EPP (commit ebab687, built by the interop harness into .cache/interop) in bench/routing: a real
 * kube-apiserver (test/interop/control-plane.ts, GAIE v1.5.0's CRDs), one namespace per run with the pods (the
 * simulators' loopback addresses as pod IPs, Running and Ready as a kubelet would write them), the InferencePool on
 * their shared port, and a ServiceAccount with GAIE's chart RBAC whose token the EPP uses, as bench/peers runs it.
 *
 * Configs: upstream's own samples from deploy/config, read from the built source tree:
 *   - approximate: epp-estimate-prefix-cache-config.yaml, unchanged;
 *   - precise: epp-precise-prefix-cache-config.yaml with the four settings a deployment fills in (token-producer's
 *     modelName and vllm.url, here one simulator's render endpoints; the block size the pods use, 16; and
 *     kvEventsConfig in global-socket mode as upstream's sim-epp-kvcache-config.yaml has it: the EPP binds one ZMQ
 *     SUB socket every pod publishes to, topic `kv@<address:port>@<model>`, no per-pod discovery).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { freePortRange } from '../../test/helpers.js';
import { artifact } from '../../test/interop/artifacts.js';
import { startControlPlane, type ControlPlane } from '../../test/interop/control-plane.js';
import { GAIE_EPP_RULES, inferencePool } from '../../test/interop/kube-fixtures.js';
import { UPSTREAM } from '../../test/interop/llm-d.js';
import { healthCheck, readyPods } from '../peers/epp.js';
import { startProc, type Proc } from '../peers/procs.js';

export type UpstreamConfigKind = 'approx' | 'precise';

const SAMPLE: Record<UpstreamConfigKind, string> = {
  approx: 'deploy/config/epp-estimate-prefix-cache-config.yaml',
  precise: 'deploy/config/epp-precise-prefix-cache-config.yaml',
};

export interface PreciseSettings {
  model: string;
  /** A vLLM-compatible render/tokenize server (one of the simulators). */
  tokenizerUrl: string;
  blockSize: number;
  /** The ZMQ endpoint the EPP binds and the pods connect to. */
  zmqEndpoint: string;
}

/** Upstream's sample config of `kind`, with the precise one's deployment settings filled in. */
export async function upstreamRoutingConfig(kind: UpstreamConfigKind, precise?: PreciseSettings): Promise<string> {
  const file = path.join((await artifact(UPSTREAM.ebab687.source)).path, SAMPLE[kind]);
  const text = readFileSync(file, 'utf8');
  if (kind === 'approx') return text;
  if (!precise) throw new Error('the precise config needs its settings');
  const doc = parseDocument(text);
  // eslint-disable-next-line @typescript-eslint/no-unsafe-member-access -- the YAML document as parsed
  const plugins = doc.toJS().plugins as Array<{ type: string; parameters?: Record<string, unknown> }>;
  const next = plugins.map((plugin) => {
    if (plugin.type === 'token-producer')
      return { ...plugin, parameters: { modelName: precise.model, vllm: { url: precise.tokenizerUrl } } };
    if (plugin.type === 'precise-prefix-cache-producer')
      return {
        ...plugin,
        parameters: {
          ...plugin.parameters,
          tokenProcessorConfig: { blockSize: precise.blockSize },
          kvEventsConfig: { zmqEndpoint: precise.zmqEndpoint, discoverPods: false },
        },
      };
    return plugin;
  });
  if (!next.some((plugin) => plugin.type === 'token-producer'))
    throw new Error(`${SAMPLE.precise} has no token-producer any more`);
  doc.set('plugins', doc.createNode(next));
  return doc.toString();
}

/** The control plane, started on first use and shared by the runs. */
let plane: Promise<ControlPlane> | undefined;

async function controlPlane(log: (line: string) => void): Promise<ControlPlane> {
  plane ??= (async () => {
    log('[bench/routing] starting etcd and kube-apiserver (test/interop/control-plane.ts)...');
    const started = await startControlPlane({ crds: ['gaie-v1.5.0'] });
    log(`[bench/routing] control plane ready at ${started.server}`);
    return started;
  })();
  return plane;
}

export async function stopControlPlane(): Promise<void> {
  if (!plane) return;
  const p = plane;
  plane = undefined;
  await (await p).stop();
}

export interface UpstreamEpp {
  /** host:port of its ext_proc server. */
  address: string;
  metricsUrl: string;
  proc: Proc;
  /** Its log lines about data producers that failed or ran out of time (counted, with the first one), for the results. */
  producerFailures(): string[];
  close(): Promise<void>;
}

/** llm-d-router's EPP watching a new InferencePool of `addresses` (all on `port`), with `configText`. */
export async function startUpstreamEpp(
  name: string,
  addresses: string[],
  port: number,
  configText: string,
  dir: string,
  log: (line: string) => void,
): Promise<UpstreamEpp> {
  const cluster = await controlPlane(log);
  const namespace = await cluster.createNamespace(`bench-routing-${name}`);
  for (const [i, ip] of addresses.entries())
    await cluster.createPod(namespace, `pod-${i}`, { labels: { app: 'bench-routing' }, ip });
  await cluster.apply(inferencePool('pool', { app: 'bench-routing' }, [port]), { namespace });
  await cluster.createServiceAccount(namespace, 'epp');
  await cluster.grant(namespace, 'epp', 'epp', GAIE_EPP_RULES);
  const kubeconfig = await cluster.serviceAccountKubeconfig(namespace, 'epp');
  const configFile = path.join(dir, `llm-d-router-${name}.yaml`);
  writeFileSync(configFile, configText);
  const [grpcPort, healthPort, metricsPort] = [await freePortRange(1), await freePortRange(1), await freePortRange(1)];
  const proc = startProc(
    `llm-d-router epp (${name})`,
    (await artifact(UPSTREAM.ebab687.epp)).path,
    [
      `--grpc-port=${grpcPort}`,
      `--grpc-health-port=${healthPort}`,
      `--metrics-port=${metricsPort}`,
      '--secure-serving=false',
      '--pool-name=pool',
      `--pool-namespace=${namespace}`,
      `--config-file=${configFile}`,
      '--metrics-endpoint-auth=false',
      // No collector here (as test/interop/llm-d.ts starts it).
      '--tracing=false',
    ],
    { env: { KUBECONFIG: kubeconfig, NAMESPACE: namespace } },
  );
  try {
    await proc.waitUntil(
      `gRPC health SERVING on port ${healthPort}`,
      async () => (await healthCheck(healthPort)) === 'SERVING',
      120_000,
    );
    await proc.waitUntil(
      `${addresses.length} ready pods on :${metricsPort}/metrics`,
      async () => (await readyPods(metricsPort)) === addresses.length,
      90_000,
    );
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    address: `127.0.0.1:${grpcPort}`,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    proc,
    producerFailures: () => {
      // llm-d-router's director gives each data producer 400 ms (dataProducerTimeout); past it the request is scored
      // without that producer's data and "failed to prepare per request data" is logged.
      const lines = proc
        .output()
        .split('\n')
        .filter((line) =>
          /failed to prepare per request data|context deadline exceeded|failed to tokenize/i.test(line),
        );
      return lines.length
        ? [`log: ${lines.length} lines about failed data producers, first: ${lines[0].slice(0, 400)}`]
        : [];
    },
    close: async () => {
      await proc.stop(5_000);
      await cluster.core.deleteNamespace({ name: namespace }).catch(() => undefined);
    },
  };
}
