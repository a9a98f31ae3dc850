/**
 * Watches the pods behind an InferencePool (or a plain label selector) through the Kubernetes API, with list+watch
 * informers (list-watch.ts). Used by the EPP for endpoint discovery and by the sidecar for its SSRF
 * allowlist.
 *
 * - Pool mode: the `inference.networking.k8s.io/v1` InferencePool named `poolName` (or the v1alpha2
 *   `inference.networking.x-k8s.io` one) gives the selector (`spec.selector.matchLabels`, or v1alpha2's flat
 *   `spec.selector`) and the target ports (`spec.targetPorts[].number`, or v1alpha2's `spec.targetPortNumber`).
 *   A selector or port change restarts the pod watch.
 * - Selector mode: `--endpoint-selector` and `--endpoint-target-ports` without the CRD.
 * - One endpoint per pod and target port. The `llm-d.ai/active-ports` annotation (CSV; legacy
 *   `inference.networking.k8s.io/active-ports`) restricts the ports of a pod.
 * - List or watch errors (RBAC, API server restarts) are logged, counted and retried with backoff; they never throw
 *   into the caller, and the last known endpoints stay in place meanwhile. The log line names the permission a 403
 *   lacks or the address that could not be reached (api-errors.ts), without a stack trace.
 */
import { EventEmitter } from 'node:events';
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { runInformer, type RunningInformer } from './informer.js';
import { describeKubeError, type KubeErrorDescription } from './api-errors.js';
import { KubeClient, type KubeObject } from './client.js';
import type { KubeConnection } from './kubeconfig.js';
import { ListWatch } from './list-watch.js';

export { loadKubeConfig, type KubeClientSettings, type KubeConnection } from './kubeconfig.js';

export interface PodEndpoint {
  /** `<namespace>/<pod>` */
  podKey: string;
  podName: string;
  namespace: string;
  address: string;
  port: number;
  labels: Record<string, string>;
  /** The pod's spec.hostname, when set (topology-extractor's fallback for the host). */
  hostname?: string;
  /** PodReady=True and not being deleted. */
  ready: boolean;
}

export type PoolSource =
  | { kind: 'pool'; namespace: string; name: string; group?: string }
  | { kind: 'selector'; namespace: string; selector: string; ports: number[] };

interface PoolSpec {
  selector: Record<string, string>;
  ports: number[];
}

const ACTIVE_PORTS = ['llm-d.ai/active-ports', 'inference.networking.k8s.io/active-ports'];

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-member-access -- an InferencePool as the API server sent it: every field is checked before use */
/** Selector and ports of an InferencePool object, GA or v1alpha2 shape. */
export function poolSpecOf(pool: Record<string, any>): PoolSpec | undefined {
  const spec = pool?.spec;
  if (!spec || typeof spec !== 'object') return undefined;
  let selector: Record<string, string> | undefined;
  if (spec.selector?.matchLabels && typeof spec.selector.matchLabels === 'object') selector = spec.selector.matchLabels;
  else if (
    spec.selector &&
    typeof spec.selector === 'object' &&
    Object.values(spec.selector).every((value) => typeof value === 'string')
  )
    selector = spec.selector;
  if (!selector || Object.keys(selector).length === 0) return undefined;
  let ports: number[] = [];
  if (Array.isArray(spec.targetPorts))
    ports = spec.targetPorts
      .map((port: { number?: number }) => port?.number)
      .filter((portNumber: unknown): portNumber is number => typeof portNumber === 'number');
  else if (typeof spec.targetPortNumber === 'number') ports = [spec.targetPortNumber];
  return { selector, ports };
}
/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-member-access */

export function labelSelectorString(labels: Record<string, string>): string {
  return Object.entries(labels)
    .sort(([left], [right]) => left.localeCompare(right))
    .map(([k, value]) => `${k}=${value}`)
    .join(',');
}

function podReady(pod: k8s.V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  return (pod.status?.conditions ?? []).some((condition) => condition.type === 'Ready' && condition.status === 'True');
}

export function podEndpoints(pod: k8s.V1Pod, ports: readonly number[]): PodEndpoint[] {
  const ip = pod.status?.podIP;
  const name = pod.metadata?.name;
  if (!ip || !name) return [];
  const namespace = pod.metadata?.namespace ?? 'default';
  let active = ports;
  for (const key of ACTIVE_PORTS) {
    const csv = pod.metadata?.annotations?.[key];
    if (csv) {
      const allowed = new Set(csv.split(',').map((text) => Number(text.trim())));
      active = ports.filter((quantile) => allowed.has(quantile));
      break;
    }
  }
  const ready = podReady(pod);
  return active.map((port) => ({
    podKey: `${namespace}/${name}`,
    podName: name,
    namespace,
    address: ip,
    port,
    labels: { ...(pod.metadata?.labels ?? {}) },
    ...(pod.spec?.hostname ? { hostname: pod.spec.hostname } : {}),
    ready,
  }));
}

export interface PoolWatcherEvents {
  change: [PodEndpoint[]];
  error: [Error];
}

/**
 * Emits `change` with the full endpoint list whenever it changes. `synced()` resolves after the first successful
 * listing of the pool (pool mode) and of its pods, or rejects after `timeoutMs`.
 */
export class PoolWatcher extends EventEmitter<PoolWatcherEvents> {
  private readonly client: KubeClient;
  private poolInformer?: ListWatch;
  private podInformer?: ListWatch<k8s.V1Pod & KubeObject>;
  private spec?: PoolSpec;
  private stopped = false;
  private syncedResolve!: () => void;
  private readonly syncedPromise: Promise<void>;
  private readonly running = new Map<ListWatch, RunningInformer>();
  /** Informers stopped on purpose (a selector change, the pool deleted, stop()): their aborted watch is no error. */
  private readonly retired = new WeakSet<ListWatch>();
  /** Errors seen (list or watch), for metrics. */
  errorCount = 0;
  /** The last list or watch failure, described (cleared by a successful sync); for readiness reports. */
  lastError?: KubeErrorDescription;
  private readonly server: string;

  constructor(
    connection: KubeConnection,
    readonly source: PoolSource,
    private readonly logger: Logger,
  ) {
    super();
    this.client = new KubeClient(connection);
    this.syncedPromise = new Promise((resolve) => (this.syncedResolve = resolve));
    this.server = connection.server;
  }

  /** Starts watching; never rejects (errors are retried). */
  start(): void {
    if (this.source.kind === 'selector') {
      this.spec = { selector: parseSelector(this.source.selector), ports: this.source.ports };
      this.startPods();
    } else {
      this.startPool(this.source);
    }
  }

  synced(timeoutMs: number): Promise<void> {
    let t: NodeJS.Timeout;
    return Promise.race([
      this.syncedPromise,
      new Promise<void>((_, reject) => {
        t = setTimeout(() => reject(new Error(`Kubernetes watch not synced within ${timeoutMs}ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(t));
  }

  endpoints(): PodEndpoint[] {
    if (!this.spec || !this.podInformer) return [];
    return this.podInformer.list().flatMap((v1Pod) => podEndpoints(v1Pod, this.spec!.ports));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const r of this.running.values()) r.cancel();
    this.running.clear();
    await Promise.all([this.retire(this.poolInformer), this.retire(this.podInformer)]);
    await this.client.close();
  }

  /** Stops an informer for good: the abort of its watch is not reported, counted or retried. */
  private retire(informer: ListWatch | undefined): Promise<void> | undefined {
    if (!informer) return undefined;
    this.retired.add(informer);
    this.running.get(informer)?.cancel();
    this.running.delete(informer);
    return informer.stop();
  }

  private emitChange(): void {
    this.emit('change', this.endpoints());
  }

  /**
   * Starts an informer and keeps it running (retries with backoff, see runInformer); each failure is logged as what
   * it means (the permission to grant, the address that did not answer), never as a stack trace.
   */

  private runInformer(what: { resource: string; group: string }, informer: ListWatch, onSynced: () => void): void {
    // Each informer backs off on its own: the pool's and the pods' failures (both fail while the API server is down)
    // must not double one shared delay twice as fast.
    const running = runInformer(informer, {
      what: what.resource,
      logger: this.logger,
      retired: () => this.stopped || this.retired.has(informer),
      describe: (err) => {
        const verb = informer.failedVerb;
        this.lastError = describeKubeError(err, {
          verb,
          ...what,
          namespace: this.source.namespace,
          server: this.server,
        });
        return { ...this.lastError, apiServer: this.server };
      },
      onError: (error) => {
        this.errorCount++;
        if (this.listenerCount('error') > 0) this.emit('error', error);
      },
      onSynced: () => {
        this.lastError = undefined;
        onSynced();
      },
    });
    this.running.set(informer, running);
  }

  private startPool(src: Extract<PoolSource, { kind: 'pool' }>): void {
    const group = src.group ?? 'inference.networking.k8s.io';
    const version = group === 'inference.networking.x-k8s.io' ? 'v1alpha2' : 'v1';
    const path = `/apis/${group}/${version}/namespaces/${src.namespace}/inferencepools`;
    const fieldSelector = `metadata.name=${src.name}`;
    const informer = new ListWatch(this.client, path, { fieldSelector });
    this.poolInformer = informer;
    const apply = (obj: KubeObject) => {
      if (obj.metadata?.name !== src.name) return;
      const spec = poolSpecOf(obj);
      if (!spec) {
        this.logger.warn(
          { pool: `${src.namespace}/${src.name}` },
          'InferencePool has no usable selector; no endpoints',
        );
        this.spec = undefined;
        void this.retire(this.podInformer);
        this.podInformer = undefined;
        this.emitChange();
        return;
      }
      const changedSelector =
        !this.spec || labelSelectorString(this.spec.selector) !== labelSelectorString(spec.selector);
      this.spec = spec;
      if (changedSelector) this.startPods();
      else this.emitChange();
    };
    informer.on('add', apply);
    informer.on('update', apply);
    informer.on('delete', (obj) => {
      if (obj.metadata?.name !== src.name) return;
      this.spec = undefined;
      void this.retire(this.podInformer);
      this.podInformer = undefined;
      this.emitChange();
    });
    this.runInformer({ resource: 'inferencepools', group }, informer, () => {
      // A missing pool is a synced state too: it means "no endpoints" until the pool appears.
      if (!this.spec) this.syncedResolve();
    });
  }

  private startPods(): void {
    void this.retire(this.podInformer);
    const ns = this.source.namespace;
    const labelSelector = labelSelectorString(this.spec!.selector);
    const informer = new ListWatch<k8s.V1Pod & KubeObject>(this.client, `/api/v1/namespaces/${ns}/pods`, {
      labelSelector,
    });
    this.podInformer = informer;
    const changed = () => {
      if (this.podInformer === informer) this.emitChange();
    };
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    this.runInformer({ resource: 'pods', group: '' }, informer, () => {
      if (this.podInformer === informer) {
        this.emitChange();
        this.syncedResolve();
      }
    });
  }
}

/** Equality-based label selector (`a=b,c=d`; `==` accepted), as `--endpoint-selector` takes. */
export function parseSelector(selector: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of selector
    .split(',')
    .map((text) => text.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9._/-]+)\s*==?\s*([A-Za-z0-9._-]*)$/.exec(part);
    if (!m) throw new Error(`unsupported label selector term "${part}": use key=value terms separated by commas`);
    out[m[1]] = m[2]!;
  }
  if (Object.keys(out).length === 0) throw new Error('empty label selector');
  return out;
}
