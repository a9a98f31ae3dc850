/**
 * Leader election over a `coordination.k8s.io/v1` Lease, with the semantics of client-go's tools/leaderelection (which
 * upstream's EPP uses through controller-runtime), written for a process that must never serve as a stale leader:
 *
 * - Acquire: a Lease that is missing is created; one whose holder is empty (released) or whose record has not changed
 *   for its `leaseDurationSeconds` on our own monotonic clock (client-go's observedTime rule) is taken with an update
 *   conditional on the resourceVersion we read, so two candidates never both win. A Lease held by anyone else, known
 *   or not, is waited out, never stolen before it expires.
 * - Renew: the leader renews every retry period. It counts as leader only while the last successful renew was *sent*
 *   less than the renew deadline ago (monotonic time, checked at every call of isLeader(), not by a timer): a leader
 *   suspended (SIGSTOP) or cut off from the API server stops serving on its own, before any follower can take over
 *   (followers wait the lease duration from when they saw the renew, which came after it was sent; renew deadline <
 *   lease duration). A process resumed from SIGSTOP answers "not leader" from its very first event-loop turn.
 * - Followers watch the Lease (and poll it every retry period), so a release is seen at once and an expiry acted on
 *   when it happens rather than at the next poll.
 * - Release (SIGTERM): the holder is cleared and the duration set to 1 s, as client-go's ReleaseOnCancel does, so a
 *   follower takes over without waiting out the lease.
 * - Losing the lease does not end the process (controller-runtime exits): the replica becomes a follower with its
 *   informers and data layer still running, and campaigns again.
 * - API failures (RBAC, the API server down) are logged with what is missing and retried with backoff; never thrown.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { KubeClient, type KubeConnection, type WatchHandle } from '../../common/kubernetes/index.js';
import { apiMessage, apiStatus } from './kube-errors.js';

export interface LeaseElectorSettings {
  namespace: string;
  name: string;
  /** This candidate's identity; default `<hostname>_<uuid>` as controller-runtime. */
  identity?: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export interface LeaseElectorEvents {
  /** This replica became the leader. */
  leading: [];
  /** This replica stopped being the leader (why). */
  following: [reason: string];
  /** The observed Lease changed (holder may be empty). */
  observed: [holder: string];
}

interface Observation {
  holder: string;
  /** From the record's leaseDurationSeconds (our own duration when it has none). */
  durationMs: number;
  resourceVersion: string;
  transitions: number;
  acquireTime?: unknown;
  /** Monotonic time we first saw this version of the record. */
  at: number;
}

const MAX_BACKOFF_MS = 30_000;

export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}

/** Go's metav1.MicroTime text: RFC 3339 with microseconds, UTC (`2006-01-02T15:04:05.000000Z`), which the API server parses. */
export function microTime(date = new Date()): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaseElector extends EventEmitter<LeaseElectorEvents> {
  readonly identity: string;
  private readonly client: KubeClient;
  private observed?: Observation;
  /** We hold the lease (as of our last successful write); isLeader() also checks the renew deadline. */
  private holding = false;
  private renewSentAt = -Infinity;
  private stopped = false;
  private released = false;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private tickAgain = false;
  private backoffMs: number;
  private watchHandle?: WatchHandle;
  private watchTimer?: NodeJS.Timeout;
  private watchBackoffMs: number;
  private lastProblem?: string;
  /** Deadline of each Lease read or write. */
  private readonly callTimeoutMs: number;

  constructor(
    connection: KubeConnection,
    readonly settings: LeaseElectorSettings,
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {
    super();
    if (!(settings.renewDeadlineMs < settings.leaseDurationMs))
      throw new Error('the renew deadline must be shorter than the lease duration');
    this.identity = settings.identity ?? defaultIdentity();
    this.client = new KubeClient(connection);
    // As controller-runtime: one hung call must not cost the lease (max(renewDeadline/2, 1s)).
    this.callTimeoutMs = Math.max(settings.renewDeadlineMs / 2, 1000);
    this.backoffMs = settings.retryPeriodMs;
    this.watchBackoffMs = settings.retryPeriodMs;
  }

  get lease(): string {
    return `${this.settings.namespace}/${this.settings.name}`;
  }

  private get collectionPath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.settings.namespace)}/leases`;
  }

  private get objectPath(): string {
    return `${this.collectionPath}/${encodeURIComponent(this.settings.name)}`;
  }

  private readLease(): Promise<k8s.V1Lease> {
    return this.client.get<k8s.V1Lease>(this.objectPath, { timeoutMs: this.callTimeoutMs });
  }

  private replaceLease(body: k8s.V1Lease): Promise<k8s.V1Lease> {
    return this.client.replace<k8s.V1Lease>(this.objectPath, body, { timeoutMs: this.callTimeoutMs });
  }

  /** True while we hold the lease and renewed it (the renew request sent) less than the renew deadline ago. */
  isLeader(): boolean {
    return (
      this.holding && !this.released && !this.stopped && this.now() - this.renewSentAt < this.settings.renewDeadlineMs
    );
  }

  /** The holder as last observed while its lease is valid ('' when free or expired). */
  leader(): string {
    if (this.isLeader()) return this.identity;
    const o = this.observed;
    return o && o.holder && o.holder !== this.identity && this.now() - o.at < o.durationMs ? o.holder : '';
  }

  /** The last API failure (RBAC, unreachable), cleared by the next success. */
  problem(): string | undefined {
    return this.lastProblem;
  }

  start(): void {
    this.logger.info(
      { lease: this.lease, identity: this.identity, ...this.settings },
      'leader election: campaigning for the lease',
    );
    this.startWatch();
    this.kick();
  }

  /**
   * Gives the lease up at once (SIGTERM): stops serving now (isLeader() is false from here on), then clears the holder
   * with a 1 s duration so a follower takes over without waiting out the lease. Resolves when done (or failed: a
   * lease not released expires by itself).
   */
  async release(): Promise<void> {
    if (this.released) return;
    const wasHolding = this.holding;
    this.released = true;
    this.halt();
    await this.ticking?.catch(() => undefined);
    if (!wasHolding && !this.holding) return;
    const started = this.now();
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        let o = this.observed;
        if (!o || attempt > 0) o = this.observe(await this.readLease());
        if (o.holder !== this.identity) return;
        const now = microTime();
        const lease = await this.replaceLease(
          this.leaseObject(o.resourceVersion, {
            holderIdentity: '',
            leaseDurationSeconds: 1,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: o.transitions,
          }),
        );
        this.observe(lease);
        this.holding = false;
        this.logger.info(
          { lease: this.lease, ms: Math.round(this.now() - started) },
          'leader election: released the lease',
        );
        return;
      } catch (err) {
        if (apiStatus(err) === 409 && attempt === 0) continue;
        this.logger.warn(
          { lease: this.lease, status: apiStatus(err), error: apiMessage(err) },
          'leader election: could not release the lease; it expires by itself',
        );
        return;
      }
    }
  }

  /** Stops campaigning and watching (without releasing: see release()). */
  async stop(): Promise<void> {
    this.halt();
    await this.ticking?.catch(() => undefined);
    await this.client.close();
  }

  private halt(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchTimer);
    this.watchHandle?.abort();
  }

  /** Runs an attempt now (or right after the one under way). */
  private kick(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = this.tick().finally(() => {
      this.ticking = undefined;
      if (this.tickAgain) {
        this.tickAgain = false;
        this.kick();
      }
    });
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), Math.max(0, ms));
  }

  private async tick(): Promise<void> {
    const wasLeader = this.isLeader();
    if (this.holding && !wasLeader)
      this.stepDown(`no successful renew within the renew deadline (${this.settings.renewDeadlineMs} ms)`);
    const sentAt = this.now();
    try {
      await this.tryAcquireOrRenew(sentAt);
      this.backoffMs = this.settings.retryPeriodMs;
      if (this.lastProblem)
        this.logger.info({ lease: this.lease }, 'leader election: the Kubernetes API answers again');
      this.lastProblem = undefined;
    } catch (err) {
      this.reportProblem(err);
      if (this.holding && !this.isLeader())
        this.stepDown(`no successful renew within the renew deadline (${this.settings.renewDeadlineMs} ms)`);
    }
    if (this.stopped) return;
    if (this.isLeader()) {
      // Renew every retry period; an attempt that failed is retried as often (the deadline is what counts).
      this.schedule(this.settings.retryPeriodMs);
      return;
    }
    if (this.lastProblem) {
      this.schedule(this.backoffMs);
      this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
      return;
    }
    // A follower polls every retry period (jittered as client-go's 1.2 factor) and wakes when the lease expires.
    let next = this.settings.retryPeriodMs * (1 + Math.random() * 0.2);
    const o = this.observed;
    if (o && o.holder) next = Math.min(next, o.at + o.durationMs - this.now() + 1);
    this.schedule(next);
  }

  private async tryAcquireOrRenew(sentAt: number): Promise<void> {
    const { name, namespace } = this.settings;
    const durationSeconds = Math.ceil(this.settings.leaseDurationMs / 1000);
    // Fast path: renew what we last wrote.
    if (this.isLeader() && this.observed?.holder === this.identity) {
      const o = this.observed;
      try {
        const lease = await this.replaceLease(
          this.leaseObject(o.resourceVersion, {
            holderIdentity: this.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: o.acquireTime,
            renewTime: microTime(),
            leaseTransitions: o.transitions,
          }),
        );
        this.observe(lease);
        this.renewed(sentAt);
        return;
      } catch (err) {
        if (apiStatus(err) !== 409) throw err;
        // Changed under us: read it and decide again.
      }
    }
    let lease: k8s.V1Lease;
    try {
      lease = await this.readLease();
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      const now = microTime();
      try {
        const created = await this.client.create<k8s.V1Lease>(
          this.collectionPath,
          {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace },
            spec: {
              holderIdentity: this.identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
          { timeoutMs: this.callTimeoutMs },
        );
        this.observe(created);
        this.renewed(sentAt);
      } catch (e) {
        if (apiStatus(e) === 409) return; // another candidate created it first
        throw e;
      }
      return;
    }
    const o = this.observe(lease);
    if (o.holder && o.holder !== this.identity && this.now() - o.at < o.durationMs) {
      if (this.holding) this.stepDown(`the lease is held by ${o.holder}`);
      return;
    }
    const mine = o.holder === this.identity;
    try {
      const updated = await this.replaceLease(
        this.leaseObject(o.resourceVersion, {
          holderIdentity: this.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: mine ? o.acquireTime : microTime(),
          renewTime: microTime(),
          leaseTransitions: mine ? o.transitions : o.transitions + 1,
        }),
      );
      this.observe(updated);
      this.renewed(sentAt);
    } catch (err) {
      if (apiStatus(err) === 409) return; // someone else took it between our read and our write
      throw err;
    }
  }

  private leaseObject(
    resourceVersion: string,
    spec: Omit<k8s.V1LeaseSpec, 'acquireTime' | 'renewTime'> & { acquireTime?: unknown; renewTime?: unknown },
  ): k8s.V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.settings.name, namespace: this.settings.namespace, resourceVersion },
      spec: spec as k8s.V1LeaseSpec,
    };
  }

  /** Records a Lease as seen now; the observation time moves only when the record changed (client-go's rule). */
  private observe(lease: k8s.V1Lease): Observation {
    const rv = lease.metadata?.resourceVersion ?? '';
    const spec = lease.spec ?? {};
    if (this.observed && this.observed.resourceVersion === rv) return this.observed;
    const seconds = spec.leaseDurationSeconds ?? 0;
    const o: Observation = {
      holder: spec.holderIdentity ?? '',
      durationMs: seconds > 0 ? seconds * 1000 : this.settings.leaseDurationMs,
      resourceVersion: rv,
      transitions: spec.leaseTransitions ?? 0,
      acquireTime: spec.acquireTime,
      at: this.now(),
    };
    const holderChanged = this.observed?.holder !== o.holder;
    this.observed = o;
    if (holderChanged) this.emit('observed', o.holder);
    return o;
  }

  private renewed(sentAt: number): void {
    this.renewSentAt = sentAt;
    if (this.holding) return;
    this.holding = true;
    if (this.released || this.stopped) return;
    this.logger.info({ lease: this.lease, identity: this.identity }, 'leader election: this replica is the leader');
    this.emit('leading');
  }

  private stepDown(reason: string): void {
    if (!this.holding) return;
    this.holding = false;
    this.logger.warn(
      { lease: this.lease, identity: this.identity, reason },
      'leader election: no longer the leader; serving stopped',
    );
    this.emit('following', reason);
  }

  private reportProblem(err: unknown): void {
    const status = apiStatus(err);
    const what =
      status === 403
        ? `missing RBAC permission on leases.coordination.k8s.io in namespace ${this.settings.namespace} (needs get, watch, create, update)`
        : 'Kubernetes API call failed';
    const problem = `${what}: ${apiMessage(err)}`;
    if (problem !== this.lastProblem)
      this.logger.warn(
        { lease: this.lease, status, problem, retryInMs: this.backoffMs },
        'leader election: cannot read or write the lease; retrying',
      );
    else this.logger.debug({ lease: this.lease, status, retryInMs: this.backoffMs }, 'leader election: still failing');
    this.lastProblem = problem;
  }

  /** Watches the Lease so a release or a takeover is seen at once; restarted with backoff when it ends. */
  private startWatch(): void {
    if (this.stopped) return;
    let sawEvent = false;
    const restart = (err?: unknown) => {
      if (this.stopped) return;
      if (err)
        this.logger.debug(
          { lease: this.lease, error: apiMessage(err), retryInMs: this.watchBackoffMs },
          'leader election: lease watch ended',
        );
      if (sawEvent) this.watchBackoffMs = this.settings.retryPeriodMs;
      clearTimeout(this.watchTimer);
      this.watchTimer = setTimeout(() => this.startWatch(), this.watchBackoffMs);
      this.watchBackoffMs = Math.min(MAX_BACKOFF_MS, this.watchBackoffMs * 2);
    };
    void this.client
      .watch<k8s.V1Lease>(
        this.collectionPath,
        { fieldSelector: `metadata.name=${this.settings.name}`, allowWatchBookmarks: false },
        ({ type, object: obj }) => {
          sawEvent = true;
          if (this.stopped) return;
          if (type === 'DELETED') {
            if (!this.holding) {
              this.observed = undefined;
              this.kick();
            }
            return;
          }
          // The leader learns of a change from its own conditional writes (a conflict makes it read and decide); a
          // watch event may be older than its last write, so it is not acted on while holding.
          if ((type !== 'ADDED' && type !== 'MODIFIED') || this.holding) return;
          const o = this.observe(obj);
          // Released: campaign now rather than at the next poll. Held: the poll wakes when it expires.
          if (o.holder === '' || o.holder === this.identity) this.kick();
          else if (!this.ticking) this.schedule(Math.min(this.settings.retryPeriodMs, o.durationMs + 1));
        },
        (err) => restart(err),
      )
      .then((handle) => {
        if (this.stopped) handle.abort();
        else this.watchHandle = handle;
      });
  }
}
