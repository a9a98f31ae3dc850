/**
 * The upstream llm-d programs as test peers: the EPP (cmd/epp) and the P/D routing sidecar (cmd/pd-sidecar) of
 * llm-d-inference-scheduler v0.7.1 and of llm-d-router at ebab687, built by artifacts.ts. Each start function picks
 * free loopback ports, starts the program, waits until it is ready (the EPP's gRPC health says SERVING; the sidecar
 * accepts connections), and keeps the tail of its log for failure messages. Processes are stopped by their own pid.
 */
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { healthClientConstructor } from '../../src/epp/index.js';
import { freePortRange } from '../helpers.js';
import { artifact, type ArtifactName } from './artifacts.js';
import { ManagedProcess, waitReady } from './control-plane.js';

export type UpstreamRelease = 'v0.7.1' | 'ebab687';
export const UPSTREAM_RELEASES: UpstreamRelease[] = ['v0.7.1', 'ebab687'];

export const UPSTREAM: Record<
  UpstreamRelease,
  { name: string; source: ArtifactName; epp: ArtifactName; sidecar: ArtifactName }
> = {
  'v0.7.1': {
    name: 'llm-d-inference-scheduler v0.7.1',
    source: 'llm-d-inference-scheduler-v0.7.1-src',
    epp: 'llm-d-inference-scheduler-v0.7.1-epp',
    sidecar: 'llm-d-inference-scheduler-v0.7.1-pd-sidecar',
  },
  ebab687: {
    name: 'llm-d-router ebab687',
    source: 'llm-d-router-ebab687-src',
    epp: 'llm-d-router-ebab687-epp',
    sidecar: 'llm-d-router-ebab687-pd-sidecar',
  },
};

/** A file of the release's source tree (e.g. its deploy/config/pd-epp-config.yaml). */
export async function upstreamFile(release: UpstreamRelease, relative: string): Promise<string> {
  return path.join((await artifact(UPSTREAM[release].source)).path, relative);
}

export interface UpstreamPeer {
  readonly proc: ManagedProcess;
  output(): string;
  close(): Promise<void>;
}

export interface UpstreamEpp extends UpstreamPeer {
  readonly grpcPort: number;
  readonly healthPort: number;
  readonly metricsPort: number;
  /** gRPC health Check of the ext_proc service (SERVING / NOT_SERVING), or the error's message. */
  health(service?: string): Promise<string>;
}

const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

function healthCheck(port: number, service: string): Promise<string> {
  const Ctor = healthClientConstructor();
  // eslint-disable-next-line no-restricted-syntax -- the health client is built from the proto at run time; this names the one method called
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check: (
      request: { service: string },
      options: grpc.CallOptions,
      callback: (err: Error | null, answer: { status: string }) => void,
    ) => void;
  };
  return new Promise<string>((resolve) =>
    client.Check({ service }, { deadline: Date.now() + 2_000 }, (err: Error | null, result: { status: string }) => {
      client.close();
      resolve(err ? `error: ${err.message}` : result.status);
    }),
  );
}

export interface UpstreamEppOptions {
  kubeconfig: string;
  poolName: string;
  poolNamespace: string;
  /** EndpointPickerConfig file. */
  configFile: string;
  extraArgs?: string[];
  readyTimeoutMs?: number;
}

/**
 * Starts an upstream EPP against an InferencePool: plain gRPC (--secure-serving=false), metrics without auth and
 * tracing off (no collector here), the kubeconfig through $KUBECONFIG (controller-runtime's GetConfig reads it).
 * Ready when the gRPC health service answers SERVING for the ext_proc service, which upstream does once the pool is
 * synced.
 */
export async function startUpstreamEpp(release: UpstreamRelease, options: UpstreamEppOptions): Promise<UpstreamEpp> {
  const binary = (await artifact(UPSTREAM[release].epp)).path;
  const [grpcPort, healthPort, metricsPort] = [await freePortRange(1), await freePortRange(1), await freePortRange(1)];
  const proc = ManagedProcess.spawn(
    `${UPSTREAM[release].name} epp`,
    binary,
    [
      `--pool-name=${options.poolName}`,
      `--pool-namespace=${options.poolNamespace}`,
      `--config-file=${options.configFile}`,
      `--grpc-port=${grpcPort}`,
      `--grpc-health-port=${healthPort}`,
      `--metrics-port=${metricsPort}`,
      '--secure-serving=false',
      '--metrics-endpoint-auth=false',
      '--tracing=false',
      ...(options.extraArgs ?? []),
    ],
    { KUBECONFIG: options.kubeconfig, NAMESPACE: options.poolNamespace },
  );
  try {
    await waitReady(
      proc,
      `gRPC health SERVING on port ${healthPort}`,
      async () => (await healthCheck(healthPort, EXT_PROC_SERVICE)) === 'SERVING',
      options.readyTimeoutMs ?? 60_000,
    );
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    proc,
    grpcPort,
    healthPort,
    metricsPort,
    output: () => proc.output(),
    close: () => proc.stop(),
    health: (service = EXT_PROC_SERVICE) => healthCheck(healthPort, service),
  };
}

export interface UpstreamSidecar extends UpstreamPeer {
  readonly port: number;
  readonly url: string;
}

export interface UpstreamSidecarOptions {
  /** Port of the decode model server on localhost. */
  vllmPort: number;
  /** --kv-connector (default nixlv2). */
  connector?: string;
  /** Plain HTTP (default) or its self-signed TLS. */
  secureProxy?: boolean;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
}

/** Starts an upstream pd-sidecar in front of a decode model server on localhost; ready when its port accepts. */
export async function startUpstreamSidecar(
  release: UpstreamRelease,
  options: UpstreamSidecarOptions,
): Promise<UpstreamSidecar> {
  const binary = (await artifact(UPSTREAM[release].sidecar)).path;
  const port = await freePortRange(1);
  const proc = ManagedProcess.spawn(
    `${UPSTREAM[release].name} pd-sidecar`,
    binary,
    [
      `--port=${port}`,
      `--vllm-port=${options.vllmPort}`,
      `--kv-connector=${options.connector ?? 'nixlv2'}`,
      `--secure-proxy=${options.secureProxy ?? false}`,
      ...(options.extraArgs ?? []),
    ],
    options.env,
  );
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  try {
    await waitReady(proc, `listening on port ${port}`, accepts, options.readyTimeoutMs ?? 30_000);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    proc,
    port,
    url: `${options.secureProxy ? 'https' : 'http'}://127.0.0.1:${port}`,
    output: () => proc.output(),
    close: () => proc.stop(),
  };
}
