/**
 * The flow-control gate (GAIE v1.5 / llm-d-router flow control, our own implementation): every request passes it
 * between parsing and scheduling. While the saturation detector says the pool has room (saturation < 1) and nothing of
 * the same or a higher priority waits, a request goes straight on. Otherwise it waits in its flow's queue: one queue
 * per (fairness id, priority), grouped in priority bands. When capacity frees (a request completes, metrics change,
 * or the poll ticker fires) the gate dispatches from the highest non-empty band: the band's fairness policy picks the
 * flow, the flow's ordering policy picks the request, until the pool is saturated again.
 *
 * "Saturated" is per band, as llm-d-router's usage-limit policy decides: a band dispatches while saturation is below
 * its ceiling (1 with upstream's default static policy), and a band at or over its ceiling stops the dispatch cycle
 * (head-of-line blocking: a lower band never takes capacity a higher band is held back from). Ceilings below 1 for
 * lower bands (`priority-holdback-policy`) keep headroom that only higher priorities may use.
 *
 * Bounds, each shed with llm-d-router's status and `x-llm-d-request-dropped-reason`:
 * - a band's or the whole gate's queued requests or bytes (429 `rejected-saturated`, "queue at capacity");
 * - the number of flows (pd-router's bound against a flood of fairness ids; empty flows are collected first;
 *   429 `rejected-saturated`);
 * - a queued request's TTL (429 `rejected-ttl-expired`, "request timed out in queue", as llm-d-router; GAIE v1.5
 *   answers 503 without a reason header);
 * - shutdown (503 `rejected-shutting-down`).
 * A cancelled request (client gone) leaves its queue at once (outcome EvictedContextCancelled, nothing to answer).
 *
 * With `enableEviction`, scheduled requests are tracked until their response ends, and a band held back at its ceiling
 * may have sheddable requests in flight revoked for it (./eviction.ts).
 */
import { InferenceError } from '../framework/errors.js';
import { ReclamationController, RequestEvictor, type EvictionObserver, type EvictionSettings } from './eviction.js';
import {
  FAIRNESS_POLICIES,
  ORDERING_POLICIES,
  type FairnessPolicy,
  type FlowView,
  type OrderingPolicy,
  type QueuedItem,
  type UsageLimitPolicy,
} from './policies.js';

/** GAIE's QueueOutcome names, used as the `outcome` metric label. */
export type FlowOutcome =
  'Dispatched' | 'RejectedCapacity' | 'RejectedOther' | 'EvictedTTL' | 'EvictedContextCancelled' | 'EvictedOther';

export interface BandSettings {
  /** Queued requests the band holds at most (0: no band bound). */
  maxRequests: number;
  /** Queued request bytes the band holds at most (0: no band bound). */
  maxBytes: number;
  fairness: string;
  /** The fairness policy instance when it is shared between bands and keeps state (program-aware-fairness). */
  fairnessPolicy?: FairnessPolicy;
  ordering: string;
}

export interface FlowGateSettings {
  /** Bands configured by priority; other priorities get `defaultBand` (>= 0) or `defaultNegativeBand` (< 0). */
  bands: ReadonlyMap<number, BandSettings>;
  defaultBand: BandSettings;
  defaultNegativeBand: BandSettings;
  /** All bands together (0: no global bound). */
  maxRequests: number;
  maxBytes: number;
  /** How long a request may wait in a queue. */
  requestTtlMs: number;
  /** Flows (queues) all bands together may hold. */
  maxFlows: number;
  /** Dispatch is retried this often while requests wait (saturation can fall without an event). */
  pollIntervalMs: number;
  /** Each band's dispatch ceiling (default: 1 for every band, upstream's static-usage-limit-policy). */
  usageLimit?: UsageLimitPolicy;
  /** `flowControl.enableEviction`: in-flight sheddable requests are revoked for waiting higher bands. */
  eviction?: EvictionSettings;
}

export interface FlowRequest {
  id: string;
  fairnessId: string;
  priority: number;
  bytes: number;
  tokens: number;
  model: string;
  targetModel: string;
  /** When the EPP received the request (ms, the gate's clock); default: when it reached the gate. */
  receivedAt?: number;
  /** The request's TTFT SLO in ms (`x-llm-d-slo-ttft-ms`), for slo-deadline-ordering-policy. */
  sloTtftMs?: number;
}

export interface InFlight {
  requests: number;
  tokens: number;
}

/** What the gate reports: queue changes, final outcomes, and the saturation it saw. */
export interface FlowGateObserver {
  queued(flowRequest: FlowRequest, deltaRequests: number, deltaBytes: number): void;
  outcome(flowRequest: FlowRequest, outcome: FlowOutcome, waitedSeconds: number): void;
  saturation(value: number): void;
  /** Revocations, with `enableEviction`. */
  eviction?: EvictionObserver;
}

export interface FlowTicket {
  /** The client went away: leave the queue (no-op once dispatched or shed). */
  cancel(): void;
}

interface Item extends QueuedItem {
  readonly req: FlowRequest;
  readonly resume: (err?: InferenceError) => void;
  flow: Flow;
  timer?: NodeJS.Timeout;
}

interface Flow extends FlowView<Item> {
  readonly band: Band;
  readonly items: Item[];
}

interface Band {
  readonly priority: number;
  readonly settings: BandSettings;
  readonly fairness: FairnessPolicy;
  readonly order: OrderingPolicy;
  readonly flows: Map<string, Flow>;
  list: Flow[];
  requests: number;
  bytes: number;
}

export function flowControlError(
  outcome: 'RejectedCapacity' | 'EvictedTTL' | 'ShuttingDown',
  detail: string,
): InferenceError {
  switch (outcome) {
    case 'RejectedCapacity':
      return new InferenceError('ResourceExhausted', detail, 'rejected-saturated');
    case 'EvictedTTL':
      return new InferenceError('ResourceExhausted', `request timed out in queue: ${detail}`, 'rejected-ttl-expired');
    case 'ShuttingDown':
      return new InferenceError(
        'ServiceUnavailable',
        `flow controller shutting down: ${detail}`,
        'rejected-shutting-down',
      );
  }
}

export class FlowControlGate {
  private readonly bands = new Map<number, Band>();
  /** Bands by descending priority. */
  private order: Band[] = [];
  private flowCount = 0;
  private requests = 0;
  private bytes = 0;
  private seq = 0;
  private readonly inflight: InFlight = { requests: 0, tokens: 0 };
  private ticker: NodeJS.Timeout | undefined;
  private closed = false;
  private pumping = false;
  private readonly reclamation: ReclamationController | undefined;

  constructor(
    private readonly settings: FlowGateSettings,
    /** The saturation detector: >= 1 means saturated. */
    private readonly saturation: (inflight: Readonly<InFlight>) => number,
    private readonly observer: FlowGateObserver,
    private readonly now: () => number = Date.now,
  ) {
    if (settings.eviction)
      this.reclamation = new ReclamationController(
        new RequestEvictor(undefined, undefined, now),
        settings.eviction,
        observer.eviction,
        now,
      );
    // Configured bands exist from the start (upstream's registry), so their ceilings count before their first request.
    for (const priority of settings.bands.keys()) this.band(priority);
  }

  get queued(): number {
    return this.requests;
  }

  get flows(): number {
    return this.flowCount;
  }

  get inFlight(): Readonly<InFlight> {
    return this.inflight;
  }

  /**
   * With `enableEviction`: tracks a scheduled request as a possible victim (upstream's RequestEvictor PreRequest);
   * `evict` answers it 429 evicted. The returned function untracks it, once its response ended or its stream closed.
   */
  track(req: Pick<FlowRequest, 'id' | 'priority'>, evict: () => void): () => void {
    return this.reclamation ? this.reclamation.evictor.track(req.id, req.priority, evict) : () => undefined;
  }

  /**
   * Admits a request. Returns undefined when it may go on now (the caller schedules it, and calls `release` when it
   * is over); throws an InferenceError when it is shed at once; else returns a ticket, and `resume` is called later
   * exactly once: without an error when dispatched (then `release` is owed too), with one when shed.
   */
  admit(req: FlowRequest, resume: (err?: InferenceError) => void): FlowTicket | undefined {
    if (this.closed) throw flowControlError('ShuttingDown', 'the EPP is stopping');
    const band = this.band(req.priority);
    if (!this.waitingAtOrAbove(band.priority) && this.mayDispatch(band)) {
      this.dispatched(req);
      this.observer.outcome(req, 'Dispatched', 0);
      return undefined;
    }
    const bs = band.settings;
    const full =
      (bs.maxRequests > 0 && band.requests + 1 > bs.maxRequests) ||
      (bs.maxBytes > 0 && band.bytes + req.bytes > bs.maxBytes)
        ? `priority band ${band.priority} is full (${band.requests} requests, ${band.bytes} bytes queued)`
        : (this.settings.maxRequests > 0 && this.requests + 1 > this.settings.maxRequests) ||
            (this.settings.maxBytes > 0 && this.bytes + req.bytes > this.settings.maxBytes)
          ? `flow control queues are full (${this.requests} requests, ${this.bytes} bytes queued)`
          : undefined;
    if (full) return this.shedAtOnce(req, `queue at capacity: ${full}`);
    let flow = band.flows.get(req.fairnessId);
    if (!flow) {
      if (this.flowCount >= this.settings.maxFlows) this.collectEmptyFlows();
      if (this.flowCount >= this.settings.maxFlows)
        return this.shedAtOnce(
          req,
          `queue at capacity: too many flows (${this.flowCount} queues for fairness ids and priorities; the bound is ${this.settings.maxFlows})`,
        );
      flow = this.addFlow(band, req.fairnessId);
    }
    const now = this.now();
    const item: Item = {
      seq: this.seq++,
      enqueuedAt: now,
      deadline: now + this.settings.requestTtlMs,
      receivedAt: req.receivedAt ?? now,
      sloDeadline: req.sloTtftMs === undefined ? Infinity : (req.receivedAt ?? now) + req.sloTtftMs,
      req,
      resume,
      flow,
    };
    insertSorted(flow.items, item, band.order);
    band.requests++;
    band.bytes += req.bytes;
    this.requests++;
    this.bytes += req.bytes;
    this.observer.queued(req, 1, req.bytes);
    item.timer = setTimeout(
      () => this.evict(item, 'EvictedTTL', flowControlError('EvictedTTL', `waited ${this.settings.requestTtlMs}ms`)),
      this.settings.requestTtlMs,
    );
    item.timer.unref();
    this.startTicker();
    // Upstream's dispatch cycle sees the new request at once: if it is blocked, revoke for it now (nothing is
    // dispatched here; the ticker and completions do that).
    if (this.reclamation) this.nextBand();
    return { cancel: () => this.evict(item, 'EvictedContextCancelled', undefined) };
  }

  /**
   * A dispatched request is over: its capacity is free again. With its priority and fairness id, its band's fairness
   * policy learns of it, with the tokens its answer reported (program-aware-fairness's attained service).
   */
  release(
    req: Pick<FlowRequest, 'tokens'> & Partial<Pick<FlowRequest, 'priority' | 'fairnessId'>>,
    usage?: { promptTokens: number; completionTokens: number },
  ): void {
    this.inflight.requests = Math.max(0, this.inflight.requests - 1);
    this.inflight.tokens = Math.max(0, this.inflight.tokens - req.tokens);
    if (req.priority !== undefined && req.fairnessId !== undefined)
      this.bands.get(req.priority)?.fairness.completed?.(req.fairnessId, usage);
    this.pump();
  }

  /** Dispatches what the pool has room for (on completion, metrics update, and the ticker). */
  pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      while (this.requests > 0) {
        const band = this.nextBand();
        if (!band) break;
        const item = band.fairness.pick(band.list, band.order)!.head()!;
        this.remove(item);
        this.dispatched(item.req, this.now() - item.enqueuedAt);
        this.observer.outcome(item.req, 'Dispatched', (this.now() - item.enqueuedAt) / 1000);
        item.resume();
      }
    } finally {
      this.pumping = false;
    }
    if (this.requests === 0) this.stopTicker();
  }

  /** Sheds every queued request with 503 `rejected-shutting-down` and refuses new ones. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTicker();
    for (const b of this.order)
      for (const f of b.list)
        for (const item of [...f.items])
          this.evict(item, 'EvictedOther', flowControlError('ShuttingDown', 'the EPP is stopping'));
  }

  private saturationNow(): number {
    const v = this.saturation(this.inflight);
    this.observer.saturation(v);
    return v;
  }

  /** The bands' ceilings, highest priority first (parallel to `order`). */
  private ceilings(saturation: number): number[] {
    const limit = this.settings.usageLimit;
    return limit
      ? limit(
          saturation,
          this.order.map((known) => known.priority),
        )
      : this.order.map(() => 1);
  }

  /** Whether `band` may dispatch now: saturation below its ceiling and below every higher band's. */
  private mayDispatch(band: Band): boolean {
    const saturation = this.saturationNow();
    const ceilings = this.ceilings(saturation);
    for (const [i, b] of this.order.entries()) {
      if (saturation >= ceilings[i]) return false;
      if (b === band) return true;
    }
    return false;
  }

  /**
   * The band to dispatch from next: the highest with requests waiting, unless saturation reaches the ceiling of a band
   * at or above it first (then nothing is dispatched, as upstream's dispatch cycle).
   */
  private nextBand(): Band | undefined {
    const saturation = this.saturationNow();
    const ceilings = this.ceilings(saturation);
    for (const [i, b] of this.order.entries()) {
      if (saturation >= ceilings[i]) {
        this.maybeReclaim(saturation, ceilings, i);
        return undefined;
      }
      if (b.requests > 0) return b;
    }
    return undefined;
  }

  /**
   * Where the dispatch cycle stops at a band's ceiling, upstream's eviction trigger (reclamation.go maybeReclaim): from
   * that band down, the first band whose priority is above the next victim's, whose ceiling is positive and reached,
   * and which has requests waiting, has capacity revoked for it.
   */
  private maybeReclaim(saturation: number, ceilings: number[], breakIdx: number): void {
    const r = this.reclamation;
    if (!r?.gateOpen()) return;
    const victim = r.victimPriority();
    if (victim === undefined) return;
    for (let j = breakIdx; j < this.order.length; j++) {
      const b = this.order[j];
      if (b.priority <= victim) return;
      if (ceilings[j] <= 0 || saturation < ceilings[j] || b.requests === 0) continue;
      r.reclaim(saturation, ceilings[j], b.priority);
      return;
    }
  }

  private dispatched(req: FlowRequest, waitedMs = 0): void {
    this.inflight.requests++;
    this.inflight.tokens += req.tokens;
    this.bands.get(req.priority)?.fairness.dispatched?.(req.fairnessId, waitedMs);
  }

  private shedAtOnce(req: FlowRequest, message: string): never {
    this.observer.outcome(req, 'RejectedCapacity', 0);
    throw flowControlError('RejectedCapacity', message);
  }

  private waitingAtOrAbove(priority: number): boolean {
    for (const b of this.order) {
      if (b.priority < priority) return false;
      if (b.requests > 0) return true;
    }
    return false;
  }

  private evict(item: Item, outcome: FlowOutcome, err: InferenceError | undefined): void {
    if (!item.flow.items.includes(item)) return;
    this.remove(item);
    this.observer.outcome(item.req, outcome, (this.now() - item.enqueuedAt) / 1000);
    if (err) item.resume(err);
    if (this.requests === 0) this.stopTicker();
  }

  private remove(item: Item): void {
    clearTimeout(item.timer);
    const flow = item.flow;
    flow.items.splice(flow.items.indexOf(item), 1);
    flow.band.requests--;
    flow.band.bytes -= item.req.bytes;
    this.requests--;
    this.bytes -= item.req.bytes;
    this.observer.queued(item.req, -1, -item.req.bytes);
  }

  private band(priority: number): Band {
    let b = this.bands.get(priority);
    if (!b) {
      const settings =
        this.settings.bands.get(priority) ??
        (priority < 0 ? this.settings.defaultNegativeBand : this.settings.defaultBand);
      const fairness = settings.fairnessPolicy ? () => settings.fairnessPolicy! : FAIRNESS_POLICIES[settings.fairness];
      const order = ORDERING_POLICIES[settings.ordering];
      if (!fairness || !order)
        throw new InferenceError(
          'Internal',
          `flow control: band ${priority} has an unsupported policy (${settings.fairness}, ${settings.ordering})`,
        );
      b = { priority, settings, fairness: fairness(), order, flows: new Map(), list: [], requests: 0, bytes: 0 };
      this.bands.set(priority, b);
      this.order = [...this.bands.values()].sort((left, right) => right.priority - left.priority);
    }
    return b;
  }

  private addFlow(band: Band, id: string): Flow {
    const flow: Flow = { id, band, items: [], head: () => flow.items[0] };
    band.flows.set(id, flow);
    band.list.push(flow);
    this.flowCount++;
    return flow;
  }

  /** Empty flows stay (so round robin keeps its place) until the flow bound needs their slots. */
  private collectEmptyFlows(): void {
    for (const b of this.order) {
      const kept = b.list.filter((flow) => flow.items.length > 0);
      for (const f of b.list) if (f.items.length === 0) b.flows.delete(f.id);
      this.flowCount -= b.list.length - kept.length;
      b.list = kept;
    }
  }

  private startTicker(): void {
    if (this.ticker || this.settings.pollIntervalMs <= 0) return;
    this.ticker = setInterval(() => this.pump(), this.settings.pollIntervalMs);
    this.ticker.unref();
  }

  private stopTicker(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
  }
}

/** Inserts keeping `items` ordered by `order` (stable: equal items keep arrival order). */
function insertSorted(items: Item[], item: Item, order: OrderingPolicy): void {
  let i = items.length;
  while (i > 0 && order(items[i - 1], item) > 0) i--;
  items.splice(i, 0, item);
}
