/**
 * Watches the pods behind an InferencePool (or a plain label selector) through the Kubernetes API, with
 * @kubernetes/client-node list+watch informers. Used by the EPP for endpoint discovery and by the sidecar for its SSRF
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
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { runInformer, type RunningInformer } from './informer.js';
import { describeKubeError, type KubeErrorDescription } from './api-errors.js';

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

export interface KubeClientSettings {
  /** API server URL; when set, used without credentials (tests, `kubectl proxy`). */
  server?: string;
  /** kubeconfig path; default: in-cluster config, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig?: string;
}

export function loadKubeConfig(settings: KubeClientSettings = {}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (settings.server) {
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: settings.server, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
      currentContext: 'ctx',
    });
  } else if (settings.kubeconfig) {
    kc.loadFromFile(settings.kubeconfig);
  } else {
    kc.loadFromDefault();
  }
  return kc;
}

interface PoolSpec {
  selector: Record<string, string>;
  ports: number[];
}

const ACTIVE_PORTS = ['llm-d.ai/active-ports', 'inference.networking.k8s.io/active-ports'];

/** Selector and ports of an InferencePool object, GA or v1alpha2 shape. */
export function poolSpecOf(pool: Record<string, any>): PoolSpec | undefined {
  const spec = pool?.spec;
  if (!spec || typeof spec !== 'object') return undefined;
  let selector: Record<string, string> | undefined;
  if (spec.selector?.matchLabels && typeof spec.selector.matchLabels === 'object') selector = spec.selector.matchLabels;
  else if (spec.selector && typeof spec.selector === 'object' && Object.values(spec.selector).every((value) => typeof value === 'string')) selector = spec.selector;
  if (!selector || Object.keys(selector).length === 0) return undefined;
  let ports: number[] = [];
  if (Array.isArray(spec.targetPorts)) ports = spec.targetPorts.map((params: { number?: number }) => params?.number).filter((count: unknown): count is number => typeof count === 'number');
  else if (typeof spec.targetPortNumber === 'number') ports = [spec.targetPortNumber];
  return { selector, ports };
}

export function labelSelectorString(labels: Record<string, string>): string {
  return Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
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
  private readonly watch: k8s.Watch;
  private readonly core: k8s.CoreV1Api;
  private readonly custom: k8s.CustomObjectsApi;
  private poolInformer?: k8s.ListWatch<k8s.KubernetesObject>;
  private podInformer?: k8s.ListWatch<k8s.V1Pod>;
  private spec?: PoolSpec;
  private stopped = false;
  private syncedResolve!: () => void;
  private readonly syncedPromise: Promise<void>;
  private readonly running = new Map<k8s.ListWatch<any>, RunningInformer>();
  /** Informers stopped on purpose (a selector change, the pool deleted, stop()): their aborted watch is no error. */
  private readonly retired = new WeakSet<k8s.ListWatch<any>>();
  /** Errors seen (list or watch), for metrics. */
  errorCount = 0;
  /** The last list or watch failure, described (cleared by a successful sync); for readiness reports. */
  lastError?: KubeErrorDescription;
  /** Errors thrown by our list functions (the rest of an informer's errors come from its watch). */
  private readonly listErrors = new WeakSet<object>();
  private readonly server: string;

  constructor(
    kc: k8s.KubeConfig,
    readonly source: PoolSource,
    private readonly logger: Logger,
  ) {
    super();
    this.watch = new k8s.Watch(kc);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.syncedPromise = new Promise((resolve) => (this.syncedResolve = resolve));
    this.server = kc.getCurrentCluster()?.server ?? '(no cluster in the kubeconfig)';
  }

  /** Marks what a list function throws, so the error handler knows the verb that failed. */
  private tagList<T>(list: () => Promise<T>): () => Promise<T> {
    return async () => {
      try {
        return await list();
      } catch (e) {
        if (e && typeof e === 'object') this.listErrors.add(e);
        throw e;
      }
    };
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
  }

  /** Stops an informer for good: the abort of its watch is not reported, counted or retried. */
  private retire(informer: k8s.ListWatch<any> | undefined): Promise<void> | undefined {
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
  private runInformer(what: { resource: string; group: string }, informer: k8s.ListWatch<any>, onSynced: () => void): void {
    // Each informer backs off on its own: the pool's and the pods' failures (both fail while the API server is down)
    // must not double one shared delay twice as fast.
    const running = runInformer(informer, {
      what: what.resource,
      logger: this.logger,
      retired: () => this.stopped || this.retired.has(informer),
      describe: (err) => {
        const verb = err && typeof err === 'object' && this.listErrors.has(err) ? 'list' : 'watch';
        this.lastError = describeKubeError(err, { verb, ...what, namespace: this.source.namespace, server: this.server });
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
    const list = this.tagList(() =>
      this.custom.listNamespacedCustomObject({ group, version, namespace: src.namespace, plural: 'inferencepools', fieldSelector }) as Promise<
        k8s.KubernetesListObject<k8s.KubernetesObject>
      >);
    const informer = new k8s.ListWatch<k8s.KubernetesObject>(path, this.watch, list, false, undefined, fieldSelector);
    this.poolInformer = informer;
    const apply = (obj: k8s.KubernetesObject) => {
      if (obj.metadata?.name !== src.name) return;
      const spec = poolSpecOf(obj as Record<string, any>);
      if (!spec) {
        this.logger.warn({ pool: `${src.namespace}/${src.name}` }, 'InferencePool has no usable selector; no endpoints');
        this.spec = undefined;
        void this.retire(this.podInformer);
        this.podInformer = undefined;
        this.emitChange();
        return;
      }
      const changedSelector = !this.spec || labelSelectorString(this.spec.selector) !== labelSelectorString(spec.selector);
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
    const list = this.tagList(() => this.core.listNamespacedPod({ namespace: ns, labelSelector }));
    const informer = new k8s.ListWatch<k8s.V1Pod>(`/api/v1/namespaces/${ns}/pods`, this.watch, list, false, labelSelector);
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
  for (const part of selector.split(',').map((text) => text.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._/-]+)\s*==?\s*([A-Za-z0-9._-]*)$/.exec(part);
    if (!m) throw new Error(`unsupported label selector term "${part}": use key=value terms separated by commas`);
    out[m[1]!] = m[2]!;
  }
  if (Object.keys(out).length === 0) throw new Error('empty label selector');
  return out;
}
