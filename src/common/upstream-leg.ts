/**
 * One upstream HTTP call (undici) with a proxy's deadlines: until the first body byte the first-byte deadline applies, after
 * it the idle deadline applies between chunks. Leaving the call (client gone, deadline, peer leg failed) aborts the
 * upstream request, so the model server stops working on it.
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

export interface LegRequest {
  agent: Dispatcher;
  origin: string;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: Buffer | string | Readable;
  /** The client's signal: its abort stops the leg. */
  clientSignal: AbortSignal;
  firstByteTimeoutMs: number;
  idleTimeoutMs: number;
  /** Names the stage in timeout messages, e.g. "decode" or "prefill to 10.0.0.5:8000". */
  label: string;
  /** Aborted (with a LegStopped reason) when a concurrent leg failed and this one must stop. */
  peerSignal?: AbortSignal;
  /** The first-byte deadline bounds the whole leg, head and body (a small answer read in full, e.g. a prefill). */
  wholeLegDeadline?: boolean;
}

export class UpstreamLeg {
  readonly controller = new AbortController();
  status = 0;
  headers: Record<string, string | string[] | undefined> = {};
  private iterator?: AsyncIterator<Buffer>;
  private sawFirstByte = false;
  /**
   * One timer per leg. It only counts while the leg waits on the upstream (`waiting`): a consumer that is slow to take
   * a chunk (a client applying backpressure) must not make the upstream look idle.
   */
  private timer?: NodeJS.Timeout;
  private timerMs = -1;
  private waiting = false;
  private finished = false;
  private readonly onClientAbort = () => this.stop(new LegStopped('client_gone', 'client disconnected'));
  readonly sentAt = performance.now();
  firstByteAt = 0;

  private constructor(private readonly req: LegRequest) {
    if (req.clientSignal.aborted) this.onClientAbort();
    else req.clientSignal.addEventListener('abort', this.onClientAbort, { once: true });
    if (req.peerSignal) {
      if (req.peerSignal.aborted) this.onPeerAbort();
      else req.peerSignal.addEventListener('abort', this.onPeerAbort, { once: true });
    }
  }

  private readonly onPeerAbort = () => {
    const r: unknown = this.req.peerSignal?.reason;
    this.stop(r instanceof LegStopped ? r : new LegStopped('peer_failed', 'a concurrent leg failed'));
  };

  /** Sends the request and waits for the response head (bounded by the first-byte deadline). */
  static async open(req: LegRequest): Promise<UpstreamLeg> {
    const leg = new UpstreamLeg(req);
    // The first-byte deadline runs from the send, across the response head and the first body chunk.
    leg.waiting = true;
    leg.armFor(req.firstByteTimeoutMs);
    try {
      const res = await req.agent.request({
        origin: req.origin,
        path: req.path,
        method: req.method as Dispatcher.HttpMethod,
        headers: req.headers,
        body: req.body,
        signal: leg.controller.signal,
      });
      leg.status = res.statusCode;
      leg.headers = res.headers;
      leg.iterator = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      return leg;
    } catch (err) {
      leg.cleanup();
      throw leg.reasonOr(err);
    }
  }

  /** Whether stop() was called, and why. */
  get stopReason(): LegStopped | undefined {
    const r: unknown = this.controller.signal.reason;
    return this.controller.signal.aborted && r instanceof LegStopped ? r : undefined;
  }

  private reasonOr(err: unknown): unknown {
    return this.stopReason ?? err;
  }

  private readonly onTimer = () => {
    if (this.finished || (!this.waiting && !this.req.wholeLegDeadline)) return;
    const first = !this.sawFirstByte;
    this.stop(
      new LegStopped(
        first ? 'first_byte_timeout' : 'idle_timeout',
        first ? `${this.req.label} sent no data within ${this.req.firstByteTimeoutMs}ms` : `${this.req.label} sent no data for ${this.req.idleTimeoutMs}ms`,
      ),
    );
  };

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

  /** Next body chunk, or null at the end. Throws LegStopped when a deadline expires or the leg is stopped. */
  async read(): Promise<Buffer | null> {
    if (!this.iterator) return null;
    // Before the first byte the first-byte deadline keeps running from the send; after it, each wait on the upstream
    // gets the idle allowance.
    if (this.sawFirstByte && !this.req.wholeLegDeadline) this.armFor(this.req.idleTimeoutMs);
    this.waiting = true;
    try {
      const r = await this.iterator.next();
      this.waiting = false;
      if (r.done) {
        this.cleanup();
        return null;
      }
      if (!this.sawFirstByte) {
        this.sawFirstByte = true;
        this.firstByteAt = performance.now();
      }
      return r.value;
    } catch (err) {
      this.waiting = false;
      this.cleanup();
      throw this.reasonOr(err);
    }
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
    return Buffer.concat(parts, size);
  }

  stop(reason: LegStopped): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    this.cleanup();
  }

  private cleanup(): void {
    this.finished = true;
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
