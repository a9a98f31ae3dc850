/**
 * One upstream HTTP call (undici) with a proxy's deadlines: until the first body byte the first-byte deadline applies, after
 * it the idle deadline applies between chunks. Leaving the call (client gone, deadline, peer leg failed) aborts the
 * upstream request, so the model server stops working on it.
 *
 * The call goes through undici's dispatch API with this class as the handler: the answer's chunks land in a small
 * bounded queue that read() takes from, and the connection is paused while the queue is full. There is no body stream,
 * async iterator or AbortController per call; on a proxy serving thousands of requests a second those are a
 * measurable share of its CPU.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

/** Why an upstream leg was stopped. */
export class LegStopped extends Error {
  constructor(
    readonly reason: 'client_gone' | 'first_byte_timeout' | 'idle_timeout' | 'prefill_timeout' | 'peer_failed',
    message: string,
  ) {
    super(message);
  }
}

/** What a leg listens to for "stop now": an AbortSignal, or the lighter {@link Cancellation}. */
export interface StopSignal {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * A one-shot stop signal without EventTarget's cost: listeners run once, in order, when abort() is first called.
 * Structurally a {@link StopSignal}, so legs take it or an AbortSignal alike.
 */
export class Cancellation implements StopSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: Array<() => void> = [];

  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.aborted) this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = [];
    // Every listener runs even if one throws; the first error is rethrown after them.
    let failure: unknown;
    for (const l of listeners) {
      try {
        l();
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }
}

export interface LegRequest {
  agent: Dispatcher;
  origin: string;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: Buffer | string | Readable;
  /** The client's signal: its abort stops the leg. */
  clientSignal: StopSignal;
  firstByteTimeoutMs: number;
  idleTimeoutMs: number;
  /** Names the stage in timeout messages, e.g. "decode" or "prefill to 10.0.0.5:8000". */
  label: string;
  /** Aborted (with a LegStopped reason) when a concurrent leg failed and this one must stop. */
  peerSignal?: StopSignal;
  /** The first-byte deadline bounds the whole leg, head and body (a small answer read in full, e.g. a prefill). */
  wholeLegDeadline?: boolean;
}

/** Answer bytes held for a consumer that has not asked for them yet; beyond this the upstream connection is paused. */
const QUEUE_HIGH_WATER = 64 * 1024;

type Waiter<T> = { resolve: (value: T) => void; reject: (err: unknown) => void };

export class UpstreamLeg implements Dispatcher.DispatchHandler {
  status = 0;
  headers: Record<string, string | string[] | undefined> = {};
  readonly sentAt = performance.now();
  firstByteAt = 0;
  private controller?: Dispatcher.DispatchController;
  /** Set by stop(): the reason every later read fails with, and the abort reason given to undici. */
  private stopped?: LegStopped;
  /** The call ended: undefined while running, null after the whole answer, else the error. */
  private outcome?: unknown;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private headWaiter?: Waiter<UpstreamLeg>;
  private readWaiter?: Waiter<Buffer | null>;
  private sawFirstByte = false;
  /** Body chunks received so far: how an expiring deadline tells whether data came in meanwhile. */
  private chunks = 0;
  /**
   * One timer per leg. It only counts while the leg waits on the upstream (`waiting`): a consumer that is slow to take
   * a chunk (a client applying backpressure) must not make the upstream look idle.
   */
  private timer?: NodeJS.Timeout;
  private timerMs = -1;
  private waiting = true;
  private finished = false;
  private readonly onClientAbort = () => this.stop(new LegStopped('client_gone', 'client disconnected'));
  private readonly onPeerAbort = () => {
    const r: unknown = this.req.peerSignal?.reason;
    this.stop(r instanceof LegStopped ? r : new LegStopped('peer_failed', 'a concurrent leg failed'));
  };

  private constructor(private readonly req: LegRequest) {}

  /** Sends the request and waits for the response head (bounded by the first-byte deadline). */
  static open(req: LegRequest): Promise<UpstreamLeg> {
    const leg = new UpstreamLeg(req);
    const head = new Promise<UpstreamLeg>((resolve, reject) => {
      leg.headWaiter = { resolve, reject };
    });
    if (req.clientSignal.aborted) leg.onClientAbort();
    else req.clientSignal.addEventListener('abort', leg.onClientAbort, { once: true });
    if (req.peerSignal && !leg.finished) {
      if (req.peerSignal.aborted) leg.onPeerAbort();
      else req.peerSignal.addEventListener('abort', leg.onPeerAbort, { once: true });
    }
    if (leg.finished) return head;
    // The first-byte deadline runs from the send, across the response head and the first body chunk.
    leg.armFor(req.firstByteTimeoutMs);
    try {
      req.agent.dispatch(
        { origin: req.origin, path: req.path, method: req.method as Dispatcher.HttpMethod, headers: req.headers, body: req.body ?? null },
        leg,
      );
    } catch (err) {
      // undici reports its errors through the handler; a dispatcher that throws instead must still settle the leg.
      leg.onResponseError(undefined, err as Error);
    }
    return head;
  }

  /** Whether stop() was called, and why. */
  get stopReason(): LegStopped | undefined {
    return this.stopped;
  }

  // ---- undici handler ----

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.stopped) controller.abort(this.stopped);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // Interim answers (103 Early Hints and the like) are not the response; undici reports them here too.
    if (this.finished || statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
    const w = this.headWaiter;
    this.headWaiter = undefined;
    w?.resolve(this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.finished) return;
    this.chunks++;
    if (!this.sawFirstByte) {
      this.sawFirstByte = true;
      this.firstByteAt = performance.now();
    }
    const w = this.readWaiter;
    if (w) {
      this.readWaiter = undefined;
      this.waiting = false;
      w.resolve(chunk);
      return;
    }
    // Nobody is reading: the consumer is slow, not the upstream.
    this.waiting = false;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes >= QUEUE_HIGH_WATER) controller.pause();
  }

  onResponseEnd(): void {
    if (this.finished) return;
    this.finish(null);
    this.readWaiter?.resolve(null);
    this.readWaiter = undefined;
    // A response without a head cannot end, but keep the promise settled whatever undici does.
    this.headWaiter?.resolve(this);
    this.headWaiter = undefined;
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.finished) return;
    this.fail(err);
  }

  // ---- consumer side ----

  /** Next body chunk, or null at the end. Throws LegStopped when a deadline expires or the leg is stopped. */
  read(): Promise<Buffer | null> {
    if (this.queue.length > 0) {
      const chunk = this.queue.shift()!;
      this.queuedBytes -= chunk.length;
      if (this.queuedBytes < QUEUE_HIGH_WATER && this.controller?.paused) this.controller.resume();
      return Promise.resolve(chunk);
    }
    if (this.outcome === null) return Promise.resolve(null);
    if (this.outcome !== undefined) return Promise.reject(this.outcome);
    // Before the first byte the first-byte deadline keeps running from the send; after it, each wait on the upstream
    // gets the idle allowance.
    if (this.sawFirstByte && !this.req.wholeLegDeadline) this.armFor(this.req.idleTimeoutMs);
    this.waiting = true;
    return new Promise((resolve, reject) => {
      this.readWaiter = { resolve, reject };
    });
  }

  /** Reads the whole body, failing with a RangeError beyond `limit` bytes. */
  async readAll(limit: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    for (let c = await this.read(); c !== null; c = await this.read()) {
      size += c.length;
      if (size > limit) {
        this.stop(new LegStopped('peer_failed', `answer exceeds ${limit} bytes`));
        throw new RangeError(`${this.req.label} answer exceeds ${limit} bytes`);
      }
      parts.push(c);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
  }

  /** Stops the call (aborting it upstream); pending and later reads fail with `reason`. */
  stop(reason: LegStopped): void {
    if (this.finished) return;
    this.stopped = reason;
    this.controller?.abort(reason);
    this.fail(reason);
  }

  private readonly onTimer = () => {
    if (this.finished || (!this.waiting && !this.req.wholeLegDeadline)) return;
    if (this.req.wholeLegDeadline) return this.expire();
    // Timers run before I/O in an event-loop turn. When the process itself was busy past the deadline (a GC pause, a
    // long rewrite, a starved CPU), what the upstream sent meanwhile is still unread: decide after this turn's I/O.
    const seen = this.chunks;
    setImmediate(() => {
      if (!this.finished && this.waiting && this.chunks === seen) this.expire();
    });
  };

  private expire(): void {
    const first = !this.sawFirstByte;
    this.stop(
      new LegStopped(
        first ? 'first_byte_timeout' : 'idle_timeout',
        first ? `${this.req.label} sent no data within ${this.req.firstByteTimeoutMs}ms` : `${this.req.label} sent no data for ${this.req.idleTimeoutMs}ms`,
      ),
    );
  }

  /** (Re)starts the timer for `ms` from now, reusing the timer object when the allowance is unchanged. */
  private armFor(ms: number): void {
    if (this.timer && this.timerMs === ms) {
      this.timer.refresh();
      return;
    }
    clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(this.onTimer, ms);
  }

  private fail(err: unknown): void {
    const error = this.stopped ?? err;
    this.finish(error);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.headWaiter?.reject(error);
    this.headWaiter = undefined;
    this.readWaiter?.reject(error);
    this.readWaiter = undefined;
  }

  private finish(outcome: unknown): void {
    this.finished = true;
    this.outcome = outcome;
    clearTimeout(this.timer);
    this.req.clientSignal.removeEventListener('abort', this.onClientAbort);
    this.req.peerSignal?.removeEventListener('abort', this.onPeerAbort);
  }
}

/** Connection-level failure codes (the upstream could not be reached or dropped the connection). */
export function connectErrorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(code) && code !== 'UND_ERR_ABORTED') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
