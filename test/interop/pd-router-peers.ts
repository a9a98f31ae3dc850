/**
 * pd-router's own EPP and sidecar as processes (`node dist/src/cli.js epp|sidecar`), started the way llm-d.ts starts the
 * upstream programs: ManagedProcess keeps their log tail for failure messages and stops them by pid. A test that runs
 * several peers keeps them in a PeerSet, whose `check()` fails the test with the log tail of any peer that exited.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { CLI } from '../helpers.js';
import { ManagedProcess, waitReady } from './control-plane.js';
import type { UpstreamPeer } from './llm-d.js';

/** Starts `pd-router <args>` and waits for the log line matching `ready` (the component prints its bound ports). */
async function startPdRouter(
  name: string,
  args: string[],
  ready: RegExp,
  timeoutMs: number,
  env: NodeJS.ProcessEnv = {},
): Promise<{ proc: ManagedProcess; match: RegExpMatchArray }> {
  const proc = ManagedProcess.spawn(name, process.execPath, [CLI, ...args], env);
  try {
    await waitReady(proc, `its ready line ${ready}`, async () => ready.test(proc.output()), timeoutMs);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { proc, match: proc.output().match(ready)! };
}

export interface PdRouterEpp extends UpstreamPeer {
  readonly grpcPort: number;
  readonly metricsPort: number;
}

export type EppDiscovery = { kubeconfig: string; poolName: string; poolNamespace: string } | { endpointsFile: string };

/** pd-router's EPP with an EndpointPickerConfig file, on plain gRPC, discovering from an InferencePool or a file. */
export async function startPdRouterEpp(options: {
  configFile: string;
  discovery: EppDiscovery;
  extraArgs?: string[];
  readyTimeoutMs?: number;
}): Promise<PdRouterEpp> {
  const d = options.discovery;
  // The tests read the EPP's /metrics (queue gauges); /metrics auth has tests of its own (epp-metrics-auth.test.ts).
  const discovery =
    'endpointsFile' in d
      ? [`--endpoints-file=${d.endpointsFile}`]
      : [
          `--pool-name=${d.poolName}`,
          `--pool-namespace=${d.poolNamespace}`,
          `--kubeconfig=${d.kubeconfig}`,
          '--metrics-endpoint-auth=false',
        ];
  const { proc, match } = await startPdRouter(
    'pd-router epp',
    [
      'epp',
      '--host=127.0.0.1',
      '--grpc-port=0',
      '--grpc-health-port=0',
      '--metrics-port=0',
      '--secure-serving=false',
      `--config-file=${options.configFile}`,
      // As the harness runs upstream's EPPs (llm-d.ts): no collector here; tracing has its own tests (tracing.test.ts).
      '--tracing=false',
      ...discovery,
      ...(options.extraArgs ?? []),
    ],
    /"grpcPort":(\d+),"healthPort":\d+,"metricsPort":(\d+)/,
    options.readyTimeoutMs ?? 60_000,
  );
  return {
    proc,
    grpcPort: Number(match[1]),
    metricsPort: Number(match[2]),
    output: () => proc.output(),
    close: () => proc.stop(),
  };
}

export interface PdRouterSidecar extends UpstreamPeer {
  readonly port: number;
  readonly url: string;
}

/** pd-router's sidecar on `host:port` (0: any) in front of a model server, plain HTTP. */
export async function startPdRouterSidecar(options: {
  host?: string;
  port?: number;
  modelServerHost?: string;
  modelServerPort: number;
  extraArgs?: string[];
  readyTimeoutMs?: number;
}): Promise<PdRouterSidecar> {
  const host = options.host ?? '127.0.0.1';
  const { proc, match } = await startPdRouter(
    'pd-router sidecar',
    [
      'sidecar',
      `--host=${host}`,
      `--port=${options.port ?? 0}`,
      `--model-server-host=${options.modelServerHost ?? '127.0.0.1'}`,
      `--model-server-port=${options.modelServerPort}`,
      '--secure-proxy=false',
      ...(options.extraArgs ?? []),
    ],
    /"url":"(http:\/\/[^"]+)".*sidecar listening/,
    options.readyTimeoutMs ?? 60_000,
  );
  const url = match[1];
  return { proc, url, port: Number(new URL(url).port), output: () => proc.output(), close: () => proc.stop() };
}

/** An endpoints file (llm-d's file-discovery format) in a temporary directory. */
export function writeEndpointsFile(
  endpoints: Array<{ name: string; address: string; port: number; role: string }>,
): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-peers-'));
  const file = path.join(dir, 'endpoints.yaml');
  writeFileSync(
    file,
    stringify({
      endpoints: endpoints.map((entry) => ({
        name: entry.name,
        namespace: 'default',
        address: entry.address,
        port: String(entry.port),
        labels: { 'llm-d.ai/role': entry.role },
      })),
    }),
  );
  return file;
}

/** The peers a test started: closed in reverse order; `check()` throws with the log tail of any that exited. */
export class PeerSet {
  private readonly peers: UpstreamPeer[] = [];

  add<T extends UpstreamPeer>(params: T): T {
    this.peers.push(params);
    return params;
  }

  /** Every peer's log tail, for an assertion message. */
  tails(chars = 3000): string {
    return this.peers
      .map(
        (upstreamPeer) =>
          `--- ${upstreamPeer.proc.name} (${upstreamPeer.proc.running ? 'running' : 'exited'}):\n${upstreamPeer.proc.tail(chars)}`,
      )
      .join('\n');
  }

  /** Fails when a peer has exited (crashed): its log tail is the message. */
  check(): void {
    const dead = this.peers.filter((upstreamPeer) => !upstreamPeer.proc.running);
    if (dead.length > 0)
      throw new Error(
        `peer exited: ${dead.map((upstreamPeer) => `${upstreamPeer.proc.name}\n${upstreamPeer.proc.tail()}`).join('\n')}`,
      );
  }

  async closeAll(): Promise<void> {
    for (const p of this.peers.splice(0).reverse()) await p.close();
  }
}
