/**
 * Demand-driven in-flight eviction (llm-d-router `flowcontrol/eviction` and `controller/internal/reclamation.go`,
 * `flowControl.enableEviction`), our own implementation.
 *
 * Every scheduled request is tracked until its response ends (or its stream closes). The victim filter
 * (`sheddable-eviction-filter`: priority < 0) decides which tracked requests are evictable, the victim order
 * (`priority-then-time-eviction-order-policy`: lowest priority first, then the most recently dispatched) which goes
 * first. As upstream's runner, these two are the policies used whatever the config defines: upstream registers the
 * plugin types but wires the defaults.
 *
 * When the gate's dispatch cycle stops at a band whose ceiling the saturation reaches, and a band at or below it with
 * requests waiting has a higher priority than the next victim, the reclamation controller revokes
 * `max(1, ceil((saturation − ceiling − pending) / credit))` requests (credit = saturation / tracked requests; at most
 * `maxRevocationsPerDecision`, 2), stopping at the first victim whose priority is not below the waiting band's. An
 * evicted request is answered 429 `request evicted by flow control` with `x-llm-d-request-dropped-reason: evicted`.
 * No further revocation is issued until every outstanding one is confirmed (the evicted stream ended, or
 * `confirmationTimeoutMs`, 10s) and then the confirmation grace has passed (the saturation signal's lag: for a scraped
 * detector the scrape interval + staleness threshold + 250ms, for `concurrency-detector` 10ms).
 */
import { InferenceError } from '../framework/errors.js';

export interface EvictionItem {
  readonly requestId: string;
  readonly priority: number;
  /** When the request was tracked (ms). */
  readonly dispatchedAt: number;
  /** Tracking order: ties on `dispatchedAt` (same millisecond) resolve as upstream's nanosecond clock would. */
  readonly seq: number;
  /** Terminates the request (answers it 429 evicted). */
  readonly evict: () => void;
}

/** `sheddable-eviction-filter`: only sheddable requests (priority < 0) may be evicted. */
export const sheddableEvictionFilter = (item: EvictionItem): boolean => item.priority < 0;

/** `priority-then-time-eviction-order-policy`: whether `a` is evicted before `b` (lower priority, then newer). */
export function priorityThenTimeEvictionOrder(first: EvictionItem, second: EvictionItem): boolean {
  if (first.priority !== second.priority) return first.priority < second.priority;
  if (first.dispatchedAt !== second.dispatchedAt) return first.dispatchedAt > second.dispatchedAt;
  return first.seq > second.seq;
}

/** The 429 an evicted request gets (llm-d-router's handler writes this body verbatim, without the error prefix). */
export class EvictedError extends InferenceError {
  constructor() {
    super('ResourceExhausted', 'request evicted by flow control', 'evicted');
  }

  override get body(): string {
    return 'request evicted by flow control';
  }
}

export interface EvictionSettings {
  /** Revocations one decision may issue (upstream: 2, not configurable). */
  maxRevocationsPerDecision: number;
  /** How long a confirmed revocation keeps suppressing further ones (the saturation signal's lag). */
  confirmationGraceMs: number;
  /** An unconfirmed revocation counts as confirmed after this long (upstream: 10s). */
  confirmationTimeoutMs: number;
}

export const DEFAULT_MAX_REVOCATIONS_PER_DECISION = 2;
export const DEFAULT_EVICTION_CONFIRMATION_TIMEOUT_MS = 10_000;
/** Upstream's evictionEngineReclaimBudget and evictionLeadingSensorGrace. */
export const EVICTION_ENGINE_RECLAIM_BUDGET_MS = 250;
export const EVICTION_LEADING_SENSOR_GRACE_MS = 10;

/** What eviction reports (revocations issued and how they ended). */
export interface EvictionObserver {
  revoked(requestId: string, priority: number, demandPriority: number): void;
  confirmed(requestId: string, outcome: 'confirmed' | 'timed_out'): void;
}

/** Tracks in-flight requests and evicts them in victim order. */
export class RequestEvictor {
  private readonly tracked = new Map<string, EvictionItem>();
  /** Evicted and not yet terminated: their termination confirms the revocation. */
  private readonly pending = new Set<string>();
  private seq = 0;
  onTerminated: ((requestId: string) => void) | undefined;

  constructor(
    private readonly filter: (item: EvictionItem) => boolean = sheddableEvictionFilter,
    private readonly less: (first: EvictionItem, second: EvictionItem) => boolean = priorityThenTimeEvictionOrder,
    private readonly now: () => number = Date.now,
  ) {}

  /** Tracks a scheduled request; the returned function untracks it (its response ended or its stream closed). */
  track(requestId: string, priority: number, evict: () => void): () => void {
    const item: EvictionItem = { requestId, priority, dispatchedAt: this.now(), seq: this.seq++, evict };
    this.tracked.set(requestId, item);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (this.tracked.get(requestId) === item) this.tracked.delete(requestId);
      if (this.pending.delete(requestId)) this.onTerminated?.(requestId);
    };
  }

  /** Tracked requests, and how many of them the filter lets be evicted. */
  stats(): { inFlight: number; evictable: number } {
    let evictable = 0;
    for (const item of this.tracked.values()) if (this.filter(item)) evictable++;
    return { inFlight: this.tracked.size, evictable };
  }

  /** The next victim, if any. */
  peek(): EvictionItem | undefined {
    let best: EvictionItem | undefined;
    for (const item of this.tracked.values()) if (this.filter(item) && (!best || this.less(item, best))) best = item;
    return best;
  }

  /**
   * Evicts up to `n` victims in order, stopping at the first whose priority is not below `priorityBound`.
   * `selected` sees each victim before it is told to go (so a termination that confirms at once finds it registered).
   */
  evictN(count: number, priorityBound: number, selected?: (victim: EvictionItem) => void): EvictionItem[] {
    const evicted: EvictionItem[] = [];
    while (evicted.length < count) {
      const victim = this.peek();
      if (!victim || victim.priority >= priorityBound) break;
      this.tracked.delete(victim.requestId);
      this.pending.add(victim.requestId);
      evicted.push(victim);
    }
    for (const victim of evicted) selected?.(victim);
    for (const victim of evicted) victim.evict();
    return evicted;
  }
}

interface Revocation {
  credit: number;
  issuedAt: number;
  priority: number;
}

/** Paces revocations: sizes each decision from the saturation deficit and waits for confirmations (upstream's). */
export class ReclamationController {
  private readonly outstanding = new Map<string, Revocation>();
  private cooling: Array<{ credit: number; expiresAt: number }> = [];
  private pendingReclaim = 0;

  constructor(
    readonly evictor: RequestEvictor,
    private readonly settings: EvictionSettings,
    private readonly observer?: EvictionObserver,
    private readonly now: () => number = Date.now,
  ) {
    evictor.onTerminated = (id) => this.confirm(id);
  }

  /** No revocation outstanding and no confirmed one still cooling. */
  gateOpen(): boolean {
    const at = this.now();
    for (const [id, r] of this.outstanding) {
      if (at - r.issuedAt < this.settings.confirmationTimeoutMs) continue;
      this.outstanding.delete(id);
      this.cooling.push({ credit: r.credit, expiresAt: at + this.settings.confirmationGraceMs });
      this.observer?.confirmed(id, 'timed_out');
    }
    const kept = this.cooling.filter((debit) => at < debit.expiresAt);
    for (const debit of this.cooling) if (at >= debit.expiresAt) this.pendingReclaim -= debit.credit;
    if (kept.length !== this.cooling.length) this.pendingReclaim = Math.max(0, this.pendingReclaim);
    this.cooling = kept;
    return this.outstanding.size === 0 && this.cooling.length === 0;
  }

  victimPriority(): number | undefined {
    return this.evictor.peek()?.priority;
  }

  reclaim(saturation: number, ceiling: number, demandPriority: number): void {
    const { inFlight, evictable } = this.evictor.stats();
    if (inFlight <= 0 || evictable <= 0) return;
    const credit = saturation / inFlight;
    if (!(credit > 0) || !Number.isFinite(credit)) return;
    const netTarget = saturation - ceiling - this.pendingReclaim;
    if (netTarget < 0 || (netTarget === 0 && this.pendingReclaim > 0)) return;
    const n = Math.min(Math.max(1, Math.ceil(netTarget / credit)), this.settings.maxRevocationsPerDecision, evictable);
    const at = this.now();
    this.evictor.evictN(n, demandPriority, (victim) => {
      this.outstanding.set(victim.requestId, { credit, issuedAt: at, priority: victim.priority });
      this.pendingReclaim += credit;
      this.observer?.revoked(victim.requestId, victim.priority, demandPriority);
    });
  }

  private confirm(requestId: string): void {
    const r = this.outstanding.get(requestId);
    if (!r) return;
    this.outstanding.delete(requestId);
    this.cooling.push({ credit: r.credit, expiresAt: this.now() + this.settings.confirmationGraceMs });
    this.observer?.confirmed(requestId, 'confirmed');
  }
}
