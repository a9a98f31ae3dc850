/**
 * EPP replicas as separate processes (the pd-router-epp binary) under leader election against the real API server,
 * and the probes the HA tests read them with: gRPC readiness, an ext_proc request, and a watch of the Lease.
 */
import * as grpc from '@grpc/grpc-js';
import * as k8s from '@kubernetes/client-node';
import { EventEmitter } from 'node:events';
import { EXT_PROC_SERVICE_NAME } from '../../src/common/envoy/ext-proc.js';
import { healthClientConstructor } from '../../src/epp/index.js';
import { ExtProcTestClient, body, headers } from '../epp/ext-proc-client.js';
import { componentBinary } from '../helpers.js';
import { ManagedProcess, type KubeCluster } from './control-plane.js';

export const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\n';
/** No metrics scraping: three replicas scraping every 50 ms would only load the machine. */
export const NO_SCRAPE = `${HEAD}dataLayer: {injectDefaults: false}\n`;

/** The lease rules GAIE's chart grants its EPP (leader-election Role), less list/patch/delete and events we do not use. */
export const LEASE_RULES: k8s.V1PolicyRule[] = [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'watch', 'create', 'update'] }];

export type Readiness = 'SERVING' | 'NOT_SERVING' | 'NO_ANSWER';
export type Routing = 'routes' | 'not-leader' | 'other' | 'no-answer';

export interface Probe {
  replica: number;
  sentAt: number;
  answeredAt: number;
  readiness: Readiness;
  routing: Routing;
}

export class EppReplica {
  readonly proc: ManagedProcess;
  grpcPort = 0;
  healthPort = 0;
  metricsPort = 0;
  identity = '';
  private health?: grpc.Client & Record<string, any>;
  private extProc?: ExtProcTestClient;

  constructor(
    readonly index: number,
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ) {
    this.proc = ManagedProcess.spawn(`epp-${index}`, process.execPath, [componentBinary('epp'), ...args], env);
  }

  /** Waits for the "epp listening" line (ports) and the elector's identity; fails with the log if the process exits. */
  async started(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.lines();
      const listening = lines.find((l) => l.msg === 'epp listening');
      const campaign = lines.find((l) => typeof l.identity === 'string' && /campaigning/.test(l.msg ?? ''));
      if (listening && campaign) {
        this.grpcPort = listening.grpcPort;
        this.healthPort = listening.healthPort;
        this.metricsPort = listening.metricsPort;
        this.identity = campaign.identity;
        const Health = healthClientConstructor();
        this.health = new Health(`127.0.0.1:${this.healthPort}`, grpc.credentials.createInsecure()) as any;
        this.extProc = new ExtProcTestClient(`127.0.0.1:${this.grpcPort}`);
        return;
      }
      if (!this.proc.running) throw new Error(`${this.proc.name} exited before listening; its log:\n${this.proc.tail()}`);
      if (Date.now() > deadline) throw new Error(`${this.proc.name} not listening within ${timeoutMs} ms; its log:\n${this.proc.tail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  lines(): Array<Record<string, any>> {
    return this.proc
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, any>;
        } catch {
          return {};
        }
      });
  }

  /** grpc.health.v1 Check of `service`; NO_ANSWER past the deadline (a stopped or dead process). */
  readiness(timeoutMs = 2_000, service = 'readiness'): Promise<Readiness | 'SERVICE_UNKNOWN'> {
    return new Promise((resolve) =>
      this.health!.Check({ service }, { deadline: Date.now() + timeoutMs }, (err: Error | null, r: { status: string }) => resolve(err ? 'NO_ANSWER' : (r.status as Readiness))),
    );
  }

  /** One completion request's request phase over ext_proc: routed, refused as a follower, or something else. */
  async route(timeoutMs = 2_000): Promise<{ routing: Routing; detail: string }> {
    const call = this.extProc!.open();
    try {
      call.send(headers({ ':method': 'POST', ':path': '/v1/completions', 'content-type': 'application/json' }), body(JSON.stringify({ model: 'sim-model', prompt: 'who leads?', max_tokens: 1 }), true));
      const [first] = await call.waitFor(1, timeoutMs);
      const imm = first!.immediate_response;
      if (!imm) return { routing: first!.request_headers ? 'routes' : 'other', detail: 'headers response' };
      const reason = (imm.headers?.set_headers ?? []).find((h) => h.header.key === 'x-llm-d-request-dropped-reason');
      const text = reason ? Buffer.from(reason.header.raw_value ?? []).toString() : '';
      const detail = `${String(imm.status?.code)} ${text} ${Buffer.from(imm.body ?? []).toString()}`;
      return { routing: text === 'rejected-not-leader' ? 'not-leader' : 'other', detail };
    } catch (e) {
      return { routing: 'no-answer', detail: (e as Error).message };
    } finally {
      call.cancel();
    }
  }

  async probe(timeoutMs = 2_000): Promise<Probe> {
    const sentAt = performance.now();
    const [readiness, routing] = await Promise.all([this.readiness(timeoutMs), this.route(timeoutMs)]);
    return { replica: this.index, sentAt, answeredAt: performance.now(), readiness: readiness as Readiness, routing: routing.routing };
  }

  signal(sig: NodeJS.Signals): void {
    if (this.proc.running) this.proc.child.kill(sig);
  }

  async close(): Promise<void> {
    this.signal('SIGCONT');
    this.health?.close();
    this.extProc?.close();
    await this.proc.stop(5_000);
  }
}

export interface ReplicaOptions {
  namespace: string;
  kubeconfig: string;
  pool?: string;
  leaseDuration?: string;
  renewDeadline?: string;
  retryPeriod?: string;
  extraArgs?: string[];
}

export function replicaArgs(o: ReplicaOptions): string[] {
  return [
    `--pool-name=${o.pool ?? 'pool'}`,
    `--pool-namespace=${o.namespace}`,
    `--kubeconfig=${o.kubeconfig}`,
    '--host=127.0.0.1',
    '--grpc-port=0',
    '--grpc-health-port=0',
    '--metrics-port=0',
    '--secure-serving=false',
    '--metrics-endpoint-auth=false',
    `--config-text=${NO_SCRAPE}`,
    '--ha-enable-leader-election',
    ...(o.leaseDuration ? [`--ha-lease-duration=${o.leaseDuration}`] : []),
    ...(o.renewDeadline ? [`--ha-renew-deadline=${o.renewDeadline}`] : []),
    ...(o.retryPeriod ? [`--ha-retry-period=${o.retryPeriod}`] : []),
    '--shutdown-timeout=5s',
    ...(o.extraArgs ?? []),
  ];
}

export async function startReplicas(n: number, o: ReplicaOptions, timeoutMs: number, firstIndex = 0): Promise<EppReplica[]> {
  const replicas = Array.from({ length: n }, (_, i) => new EppReplica(firstIndex + i, replicaArgs(o)));
  try {
    await Promise.all(replicas.map((r) => r.started(timeoutMs)));
  } catch (e) {
    await Promise.all(replicas.map((r) => r.close()));
    throw e;
  }
  return replicas;
}

/** Polls every replica until exactly one answers SERVING (readiness of our own processes); returns its index. */
export async function untilOneLeader(replicas: EppReplica[], timeoutMs: number, exclude: EppReplica[] = []): Promise<EppReplica> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = replicas.filter((r) => r.proc.running && !exclude.includes(r));
    const states = await Promise.all(live.map((r) => r.readiness(1_000)));
    const serving = live.filter((_, i) => states[i] === 'SERVING');
    if (serving.length === 1) return serving[0]!;
    if (Date.now() > deadline) throw new Error(`no single leader within ${timeoutMs} ms: ${states.join(', ')}; logs:\n${replicas.map((r) => r.proc.tail(1500)).join('\n---\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A watch of one Lease (as admin): every holder change with the time it was seen. */
export class LeaseWatch extends EventEmitter<{ change: [string] }> {
  readonly changes: Array<{ holder: string; at: number; transitions: number }> = [];
  private controller?: AbortController;

  constructor(
    private readonly cluster: KubeCluster,
    readonly namespace: string,
    readonly name: string,
  ) {
    super();
  }

  get holder(): string {
    return this.changes.at(-1)?.holder ?? '';
  }

  async start(): Promise<void> {
    const watch = new k8s.Watch(this.cluster.admin);
    this.controller = await watch.watch(
      `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases`,
      { fieldSelector: `metadata.name=${this.name}` },
      (type: string, obj: k8s.V1Lease) => {
        const holder = type === 'DELETED' ? '' : (obj.spec?.holderIdentity ?? '');
        if (holder === this.holder && this.changes.length > 0) return;
        this.changes.push({ holder, at: performance.now(), transitions: obj.spec?.leaseTransitions ?? 0 });
        this.emit('change', holder);
      },
      () => undefined,
    );
  }

  /** Resolves with the time a holder satisfying `predicate` was first seen after `since`. */
  until(predicate: (holder: string) => boolean, since: number, timeoutMs: number, what: string): Promise<number> {
    const seen = () => this.changes.find((c) => c.at >= since && predicate(c.holder))?.at;
    const now = seen();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const onChange = () => {
        const at = seen();
        if (at === undefined) return;
        clearTimeout(timer);
        this.off('change', onChange);
        resolve(at);
      };
      const timer = setTimeout(() => {
        this.off('change', onChange);
        reject(new Error(`Lease ${this.namespace}/${this.name}: ${what} not seen within ${timeoutMs} ms; holders: ${JSON.stringify(this.changes)}`));
      }, timeoutMs);
      this.on('change', onChange);
    });
  }

  stop(): void {
    this.controller?.abort();
  }
}

export { EXT_PROC_SERVICE_NAME };
