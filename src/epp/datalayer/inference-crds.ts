/**
 * Watches the pool's InferenceModelRewrites and InferenceObjectives (v1alpha2) in the pool's namespace, as
 * llm-d-router's reconcilers do, and answers the Director's two questions: the model a request is rewritten to, and
 * the priority of its objective.
 *
 * - Group: per kind, the first of `llm-d.ai` and `inference.networking.x-k8s.io` (GAIE's) whose v1alpha2 the API
 *   server serves, found by discovery at start (llm-d-router ebab687 prefers its own group the same way). A kind
 *   neither group serves is off, with a warning; it does not hold readiness back.
 * - Only objects whose `spec.poolRef` names this pool (name, and group: default `inference.networking.k8s.io`)
 *   count; an object that moves to another pool is removed, as upstream.
 * - Invalid objects (model-rewrites.ts, objectives.ts) are logged with their name and skipped; an object that was
 *   valid keeps its last valid version until it is fixed or deleted.
 * - Readiness: false until both kinds are listed, and while the API server denies listing or watching one (RBAC); the
 *   log names the resource and namespace. Other list/watch failures keep the last state and are retried.
 *
 * Emits `change` after each object event is handled (tests synchronise on it) and `status` when readiness may have
 * changed.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  describeKubeError,
  INFORMER_RETRY_MAX_MS,
  INFORMER_RETRY_MIN_MS,
  KubeClient,
  kubeErrorStatus,
  ListWatch,
  loadKubeConfig,
  runInformer,
  type KubeClientSettings,
  type KubeConnection,
  type KubeObject,
  type RunningInformer,
} from '../../common/kubernetes/index.js';
import { ModelRewriteStore, parseModelRewrite, type RewriteDecision } from './model-rewrites.js';
import { ObjectiveStore, parseObjective } from './objectives.js';

/** Groups serving the two kinds, in order of preference. */
export const INFERENCE_CRD_GROUPS = ['llm-d.ai', 'inference.networking.x-k8s.io'] as const;
export const INFERENCE_CRD_VERSION = 'v1alpha2';
/** poolRef.group's default (the CRDs' schema default). */
const DEFAULT_POOL_GROUP = 'inference.networking.k8s.io';

export type InferenceCrdKind = 'InferenceModelRewrite' | 'InferenceObjective';

/** What the Director asks for each request. */
export interface RequestPolicies {
  /** The rewrite of a request for `model`, when a rule applies. */
  rewrite(model: string): RewriteDecision | undefined;
  /** The priority of the named objective (0 when none is known). */
  priority(objective: string): number;
}

export const NO_REQUEST_POLICIES: RequestPolicies = { rewrite: () => undefined, priority: () => 0 };

export interface CrdChange {
  kind: InferenceCrdKind;
  /** `<namespace>/<name>` */
  object: string;
  outcome: 'applied' | 'removed' | 'rejected' | 'ignored';
  reason?: string;
}

export interface InferenceCrdWatcherEvents {
  change: [CrdChange];
  status: [];
}

export interface PoolIdentity {
  namespace: string;
  name: string;
  /** The InferencePool's API group, which poolRef.group must equal. */
  group: string;
}

interface KindState {
  readonly kind: InferenceCrdKind;
  readonly plural: string;
  /** The group chosen by discovery. */
  group?: string;
  status: 'discovering' | 'absent' | 'listing' | 'synced';
  /** The last denial (403), until a list or watch succeeds again. */
  forbidden?: string;
  informer?: ListWatch;
  running?: RunningInformer;
  retry?: NodeJS.Timeout;
}

export interface InferenceCrdWatcherOptions {
  /** Random source of weighted target choices (seeded in tests). */
  random?: () => number;
  /** Called with every configured model name when the rewrites change (they keep their own metric label values). */
  onConfiguredModels?: (models: Set<string>) => void;
}

export class InferenceCrdWatcher extends EventEmitter<InferenceCrdWatcherEvents> implements RequestPolicies {
  readonly rewrites = new ModelRewriteStore();
  readonly objectives = new ObjectiveStore();
  private readonly kinds: KindState[] = [
    { kind: 'InferenceModelRewrite', plural: 'inferencemodelrewrites', status: 'discovering' },
    { kind: 'InferenceObjective', plural: 'inferenceobjectives', status: 'discovering' },
  ];
  /** The API server's address, for logs. */
  private readonly server: string;
  private readonly client: KubeClient;
  private readonly random: () => number;
  private stopped = false;

  constructor(
    connection: KubeConnection,
    readonly pool: PoolIdentity,
    private readonly logger: Logger,
    private readonly options: InferenceCrdWatcherOptions = {},
  ) {
    super();
    this.server = connection.server;
    this.client = new KubeClient(connection);
    this.random = options.random ?? Math.random;
  }

  start(): void {
    for (const k of this.kinds) void this.discover(k, INFORMER_RETRY_MIN_MS);
  }

  /** Both kinds listed (or not served at all), and no list or watch denied. */
  ready(): boolean {
    return this.kinds.every((k) => k.status === 'absent' || (k.status === 'synced' && k.forbidden === undefined));
  }

  /** Per kind: the group watched (or why not), for logs and tests. */
  describe(): Record<InferenceCrdKind, string> {
    const out = {} as Record<InferenceCrdKind, string>;
    for (const k of this.kinds)
      out[k.kind] =
        `${k.status}${k.group ? ` ${k.plural}.${k.group}` : ''}${k.forbidden ? ` (forbidden: ${k.forbidden})` : ''}`;
    return out;
  }

  rewrite(model: string): RewriteDecision | undefined {
    return this.rewrites.decide(model, this.random);
  }

  priority(objective: string): number {
    return this.objectives.priority(objective);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(
      this.kinds.map((kind) => {
        clearTimeout(kind.retry);
        kind.running?.cancel();
        return kind.informer?.stop() ?? Promise.resolve();
      }),
    );
    await this.client.close();
  }

  /**
   * Whether the API server serves `kind` in `<group>/<version>` (discovery: GET /apis/<group>/<version>, readable by
   * every user through system:discovery); a group not served at all throws 404.
   */
  private async serves(apiVersion: string, kind: string): Promise<boolean> {
    const doc = await this.client.get<{ resources?: Array<{ name?: string; kind?: string }> }>(`/apis/${apiVersion}`);
    return (doc.resources ?? []).some((resource) => resource.kind === kind && !resource.name?.includes('/'));
  }

  private setStatus(k: KindState, change: Partial<Pick<KindState, 'status' | 'forbidden'>>): void {
    Object.assign(k, change);
    this.emit('status');
  }

  private resourceName(k: KindState, group = k.group): string {
    return `${k.plural}.${group}`;
  }

  private denied(k: KindState, resource: string, verbs: string, err: unknown): void {
    const first = k.forbidden === undefined;
    this.setStatus(k, { forbidden: `${verbs} ${resource}` });
    if (first) {
      this.logger.error(
        {
          kind: k.kind,
          resource,
          namespace: this.pool.namespace,
          verbs,
          error: describeKubeError(err, {
            verb: 'list',
            resource: k.plural,
            group: k.group ?? '',
            namespace: this.pool.namespace,
            server: this.server,
          }).error,
        },
        `missing RBAC permission: cannot ${verbs} ${resource} in namespace ${this.pool.namespace}; not ready until it is granted`,
      );
    }
  }

  /** Finds the group serving the kind (retrying failures), then starts its informer. */
  private async discover(k: KindState, retryMs: number): Promise<void> {
    if (this.stopped) return;
    for (const group of INFERENCE_CRD_GROUPS) {
      let served: boolean;
      try {
        served = await this.serves(`${group}/${INFERENCE_CRD_VERSION}`, k.kind);
      } catch (err) {
        const status = kubeErrorStatus(err);
        if (status === 404) continue; // the group is not served at all
        if (this.stopped) return;
        if (status === 403) this.denied(k, `/apis/${group}/${INFERENCE_CRD_VERSION}`, 'get (discovery)', err);
        else
          this.logger.warn(
            {
              ...describeKubeError(err, {
                verb: 'list',
                resource: k.plural,
                group,
                namespace: this.pool.namespace,
                server: this.server,
              }),
              kind: k.kind,
              group,
              retryInMs: retryMs,
            },
            'kubernetes discovery failed, retrying',
          );
        k.retry = setTimeout(() => void this.discover(k, Math.min(INFORMER_RETRY_MAX_MS, retryMs * 2)), retryMs);
        return;
      }
      if (this.stopped) return;
      if (!served) continue;
      k.group = group;
      this.setStatus(k, { status: 'listing', forbidden: undefined });
      this.startInformer(k, group);
      return;
    }
    this.setStatus(k, { status: 'absent', forbidden: undefined });
    this.logger.warn(
      { kind: k.kind, groups: INFERENCE_CRD_GROUPS },
      `${k.kind} is not served by the API server (neither ${INFERENCE_CRD_GROUPS.map((group) => `${group}/${INFERENCE_CRD_VERSION}`).join(' nor ')}); its objects are not watched`,
    );
  }

  private startInformer(k: KindState, group: string): void {
    const { namespace } = this.pool;
    const resource = this.resourceName(k, group);
    const informer = new ListWatch(
      this.client,
      `/apis/${group}/${INFERENCE_CRD_VERSION}/namespaces/${namespace}/${k.plural}`,
    );
    k.informer = informer;
    informer.on('add', (object) => this.apply(k, object));
    informer.on('update', (object) => this.apply(k, object));
    informer.on('delete', (object) => this.remove(k, object, 'deleted'));
    k.running = runInformer(informer, {
      what: resource,
      logger: this.logger,
      retired: () => this.stopped,
      describe: (err) => ({
        ...describeKubeError(err, { verb: 'list', resource: k.plural, group, namespace, server: this.server }),
        apiServer: this.server,
      }),
      onError: (err) => {
        const status = kubeErrorStatus(err);
        if (status === 403) this.denied(k, resource, 'list/watch', err);
        // The CRD was removed: its objects went with it (their deletions arrive through the watch).
        else if (status === 404 && k.status !== 'absent') this.setStatus(k, { status: 'absent' });
      },
      onSynced: () => {
        if (k.forbidden !== undefined)
          this.logger.info({ kind: k.kind, resource, namespace }, `${resource} can be listed and watched again`);
        this.setStatus(k, { status: 'synced', forbidden: undefined });
      },
    });
  }

  private refersToPool(poolRef: unknown): boolean {
    if (!poolRef || typeof poolRef !== 'object') return false;
    const ref = poolRef as { name?: unknown; group?: unknown };
    return ref.name === this.pool.name && (ref.group ?? DEFAULT_POOL_GROUP) === this.pool.group;
  }

  private apply(k: KindState, obj: KubeObject): void {
    const name = obj.metadata?.name ?? '';
    const object = `${obj.metadata?.namespace ?? this.pool.namespace}/${name}`;
    const spec = (obj as { spec?: Record<string, unknown> }).spec;
    if (!this.refersToPool(spec?.poolRef)) {
      this.remove(k, obj, 'its poolRef names another pool');
      return;
    }
    const parsed =
      k.kind === 'InferenceModelRewrite' ? parseModelRewrite(name, createdAt(obj), spec) : parseObjective(name, spec);
    if ('error' in parsed) {
      const kept =
        (k.kind === 'InferenceModelRewrite' ? this.rewrites.get(name) : this.objectives.get(name)) !== undefined;
      this.logger.warn(
        { kind: k.kind, object, reason: parsed.error, resourceVersion: obj.metadata?.resourceVersion },
        `${k.kind} ${object} is invalid: ${parsed.error}; ${kept ? 'its last valid version stays in use' : 'it is ignored'}`,
      );
      this.emit('change', { kind: k.kind, object, outcome: 'rejected', reason: parsed.error });
      return;
    }
    if ('rewrite' in parsed) {
      this.rewrites.set(parsed.rewrite);
      this.options.onConfiguredModels?.(this.rewrites.configuredModels());
      this.logger.info({ kind: k.kind, object, rules: parsed.rewrite.rules.length }, `${k.kind} ${object} applied`);
    } else {
      this.objectives.set(parsed.objective);
      this.logger.info({ kind: k.kind, object, priority: parsed.objective.priority }, `${k.kind} ${object} applied`);
    }
    this.emit('change', { kind: k.kind, object, outcome: 'applied' });
  }

  private remove(k: KindState, obj: KubeObject, why: string): void {
    const name = obj.metadata?.name ?? '';
    const object = `${obj.metadata?.namespace ?? this.pool.namespace}/${name}`;
    const removed = k.kind === 'InferenceModelRewrite' ? this.rewrites.delete(name) : this.objectives.delete(name);
    if (removed) this.logger.info({ kind: k.kind, object, why }, `${k.kind} ${object} removed (${why})`);
    this.emit('change', { kind: k.kind, object, outcome: removed ? 'removed' : 'ignored', reason: why });
  }
}

function createdAt(obj: KubeObject): number {
  const t: unknown = obj.metadata?.creationTimestamp;
  const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : NaN;
  return Number.isFinite(ms) ? ms : 0;
}

export interface InferenceCrdSettings extends PoolIdentity {
  kube: KubeClientSettings;
}

export function startInferenceCrdWatcher(
  settings: InferenceCrdSettings,
  logger: Logger,
  options: InferenceCrdWatcherOptions = {},
): InferenceCrdWatcher {
  const kc = loadKubeConfig(settings.kube);
  const watcher = new InferenceCrdWatcher(
    kc,
    { namespace: settings.namespace, name: settings.name, group: settings.group },
    logger,
    options,
  );
  watcher.start();
  return watcher;
}
