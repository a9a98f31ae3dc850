/**
 * Admission like vLLM's FCFS scheduler: at most max-num-seqs requests run; the rest wait in a bounded FIFO queue
 * (max-waiting-queue-length; beyond it a request is refused with 429). A request also starts only when the KV cache
 * can hold its prompt and maximum output, so KV capacity bounds the decode batch. The head of the queue blocks the
 * ones behind it, as in vLLM.
 */
import { KVCacheSim, type Admission, type BlockOrigin } from './kv-cache.js';

export class QueueFullError extends Error {
  constructor() {
    super('Failed to enqueue request, waiting requests queue is full');
  }
}

export class AbortedError extends Error {
  constructor() {
    super('request aborted by the client');
  }
}

export interface ScheduleRequest {
  id: string;
  promptTokens: number;
  hashes: readonly string[];
  maxOutputTokens: number;
  /** Token ids and engine hashes, when the cache reports KV events. */
  origin?: BlockOrigin;
}

export interface Slot extends Admission {
  id: string;
  queuedMs: number;
}

interface Waiter {
  req: ScheduleRequest;
  enqueuedAt: number;
  resolve: (slot: Slot) => void;
  reject: (err: Error) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class Scheduler {
  private runningCount = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    private maxNumSeqs: number,
    private maxWaiting: number,
    private readonly kv: KVCacheSim | undefined,
    /** Called whenever running or waiting counts change. */
    private readonly onChange: () => void,
  ) {}

  get running(): number {
    return this.runningCount;
  }

  get waiting(): number {
    return this.queue.length;
  }

  private fits(req: ScheduleRequest): boolean {
    if (this.runningCount >= this.maxNumSeqs) return false;
    if (!this.kv || this.runningCount === 0) return true;
    return this.kv.canAdmit(req.hashes, req.promptTokens, req.maxOutputTokens);
  }

  private start(req: ScheduleRequest, enqueuedAt: number): Slot {
    this.runningCount++;
    const admission = this.kv
      ? this.kv.admit(req.id, req.hashes, req.promptTokens, req.maxOutputTokens, req.origin)
      : { cachedTokens: 0, blockIds: [] as number[] };
    return { id: req.id, queuedMs: performance.now() - enqueuedAt, ...admission };
  }

  /** Resolves when the request may run; rejects with QueueFullError or AbortedError. */
  acquire(req: ScheduleRequest, signal: AbortSignal): Promise<Slot> {
    if (signal.aborted) return Promise.reject(new AbortedError());
    const now = performance.now();
    if (this.queue.length === 0 && this.fits(req)) {
      const slot = this.start(req, now);
      this.onChange();
      return Promise.resolve(slot);
    }
    if (this.queue.length >= this.maxWaiting) return Promise.reject(new QueueFullError());
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        req,
        enqueuedAt: now,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) {
            this.queue.splice(i, 1);
            this.onChange();
            this.dispatch();
          }
          reject(new AbortedError());
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.queue.push(waiter);
      this.onChange();
    });
  }

  release(slot: Slot): void {
    this.runningCount--;
    this.kv?.release(slot.id);
    this.dispatch();
    this.onChange();
  }

  private dispatch(): void {
    let changed = false;
    while (this.queue.length > 0 && this.fits(this.queue[0].req)) {
      const w = this.queue.shift()!;
      w.signal.removeEventListener('abort', w.onAbort);
      w.resolve(this.start(w.req, w.enqueuedAt));
      changed = true;
    }
    if (changed) this.onChange();
  }
}
