/**
 * When a simulated request's first token and each next token are ready. Two engine models:
 *
 * - `request` (default; llm-d-inference-sim's model): each request sleeps its own prefill (or KV-transfer) time, then
 *   one inter-token latency per token; other requests affect it only through the load factor.
 *
 * - `step` (pd-router): the engine works in steps, as vLLM's scheduler with chunked prefill does. Each step decodes one
 *   token for every running sequence and spends what is left of --max-num-batched-tokens on waiting prefill tokens
 *   (first come, first served). A step lasts
 *
 *       ITL × LF(decoding sequences) + prefill tokens in the step × prefill-time-per-token
 *       + prefill-overhead for each prefill that starts in the step
 *
 *   so prefill time grows with the prefill work queued on the engine, and a long prefill on a pod that is also
 *   decoding slows every decode on it: the interference P/D disaggregation removes. A remote-prefill request waits for
 *   its KV transfer (not engine time), then joins the next step. This is the model xPyD tuning runs use.
 */
import type { LatencyModel } from './latency.js';

export type EngineModel = 'request' | 'step';

export interface PacedRequest {
  /** Prompt tokens the engine must compute (uncached); ignored for remote prefill. */
  prefillTokens: number;
  /** KV-transfer time instead of prefill, for do_remote_prefill requests (ms of simulated time). */
  transferMs?: number;
  /** Output tokens the request will produce. */
  outputTokens: number;
  signal: AbortSignal;
}

export interface Pacer {
  /** Resolves when the first token is ready; returns the simulated prefill (or transfer) time in ms. */
  prefill(): Promise<number>;
  /** Resolves when token i (i ≥ 1) is ready; returns the simulated time since the previous token in ms. */
  next(i: number): Promise<number>;
  /** The request is done (or aborted); it leaves the batch. */
  leave(): void;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Below this a timer is not worth it: the wait is skipped and the due time carried on (no drift). */
const MIN_SLEEP_MS = 1;

/** Per-request pacing: llm-d-inference-sim's model. */
export class RequestPacer implements Pacer {
  private due = performance.now();

  constructor(
    private readonly pacedRequest: PacedRequest,
    private readonly latency: LatencyModel,
    private readonly running: () => number,
    private readonly promptTokens: number,
    private readonly cachedTokens: number,
    private readonly timeScale: number,
  ) {}

  private async waitUntil(due: number): Promise<void> {
    const wait = due - performance.now();
    if (wait >= MIN_SLEEP_MS) await sleep(wait, this.pacedRequest.signal);
    else if (this.pacedRequest.signal.aborted) throw this.pacedRequest.signal.reason;
  }

  async prefill(): Promise<number> {
    const ms =
      this.pacedRequest.transferMs !== undefined
        ? this.pacedRequest.transferMs
        : this.latency.prefillMs({ promptTokens: this.promptTokens, cachedTokens: this.cachedTokens, running: this.running() });
    this.due += ms * this.timeScale;
    await this.waitUntil(this.due);
    this.due = Math.max(this.due, performance.now());
    return ms;
  }

  async next(): Promise<number> {
    const itl = this.latency.interTokenMs(this.running());
    this.due += itl * this.timeScale;
    await this.waitUntil(this.due);
    return itl;
  }

  leave(): void {}
}

interface Member {
  phase: 'transfer' | 'prefill' | 'decode' | 'done';
  prefillLeft: number;
  started: boolean;
  /** A step has taken some of its prefill (vLLM V1: the request moved from waiting to running). */
  scheduled: boolean;
  tokensMade: number;
  outputTokens: number;
  /** Simulated ms at which each made token became ready. */
  readyAt: number[];
  prefillMs: number;
  joinedAt: number;
  wake?: () => void;
}

export interface StepSettings {
  maxNumBatchedTokens: number;
  prefillTimePerToken: number;
  prefillOverhead: number;
  timeScale: number;
}

/**
 * The shared step loop of one engine. Simulated time advances step by step; each step is slept in wall time × scale.
 */
export class StepLoop {
  private readonly members = new Set<Member>();
  /** Members waiting for their first prefill chunk. */
  private queued = 0;
  private looping = false;
  /** Simulated clock (ms) and the wall time it corresponds to. */
  private simNow = 0;
  private wallAtSimNow = performance.now();

  /** @param onQueueChange called when the number of prefills waiting for their first chunk changes (gauges) */
  constructor(
    private settings: StepSettings,
    private readonly latency: LatencyModel,
    private readonly onQueueChange: () => void = () => {},
  ) {}

  /**
   * Requests admitted to the engine whose prefill no step has started yet. vLLM V1 counts these in
   * num_requests_waiting, not num_requests_running; the engine reports them that way.
   */
  get queuedPrefills(): number {
    return this.queued;
  }


  update(settings: StepSettings): void {
    this.settings = settings;
  }

  get size(): number {
    return this.members.size;
  }

  private clock(): number {
    // When idle, the simulated clock follows the wall clock, so arrivals in between count.
    if (!this.looping) {
      const now = performance.now();
      this.simNow += this.settings.timeScale > 0 ? (now - this.wallAtSimNow) / this.settings.timeScale : 0;
      this.wallAtSimNow = now;
    }
    return this.simNow;
  }

  pacer(pacedRequest: PacedRequest): Pacer {
    const m: Member = {
      phase: pacedRequest.transferMs !== undefined ? 'transfer' : 'prefill',
      prefillLeft: Math.max(0, pacedRequest.prefillTokens),
      started: false,
      scheduled: false,
      tokensMade: 0,
      outputTokens: Math.max(0, pacedRequest.outputTokens),
      readyAt: [],
      prefillMs: 0,
      joinedAt: this.clock(),
    };
    const loop = this;
    const waitFor = (cond: () => boolean): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        if (pacedRequest.signal.aborted) return reject(pacedRequest.signal.reason);
        if (cond()) return resolve();
        const onAbort = () => reject(pacedRequest.signal.reason);
        pacedRequest.signal.addEventListener('abort', onAbort, { once: true });
        m.wake = () => {
          if (!cond()) return;
          pacedRequest.signal.removeEventListener('abort', onAbort);
          m.wake = undefined;
          resolve();
        };
      });
    return {
      async prefill() {
        if (m.phase === 'transfer') {
          // The KV cache travels over the network; the engine keeps stepping for others meanwhile.
          await sleep(pacedRequest.transferMs! * loop.settings.timeScale, pacedRequest.signal);
          m.phase = 'decode';
          m.joinedAt = loop.clock();
          loop.members.add(m);
          loop.kick();
          await waitFor(() => m.tokensMade >= 1);
          return pacedRequest.transferMs! + (m.readyAt[0]! - m.joinedAt);
        }
        loop.members.add(m);
        loop.queued++;
        loop.onQueueChange();
        loop.kick();
        await waitFor(() => m.tokensMade >= 1);
        return m.prefillMs;
      },
      async next(i: number) {
        await waitFor(() => m.tokensMade >= i + 1 || m.phase === 'done');
        return (m.readyAt[i] ?? m.readyAt[m.readyAt.length - 1]!) - (m.readyAt[i - 1] ?? 0);
      },
      leave() {
        if (m.phase === 'prefill' && !m.scheduled && loop.members.has(m)) {
          loop.queued--;
          loop.onQueueChange();
        }
        m.phase = 'done';
        loop.members.delete(m);
      },
    };
  }

  private kick(): void {
    if (this.looping) return;
    this.clock();
    this.looping = true;
    setImmediate(() => this.step());
  }

  private step(): void {
    if (this.members.size === 0) {
      this.looping = false;
      this.wallAtSimNow = performance.now();
      return;
    }
    const s = this.settings;
    const decoding: Member[] = [];
    const prefilling: Array<{ m: Member; tokens: number; starts: boolean }> = [];
    for (const m of this.members) if (m.phase === 'decode' && m.tokensMade < Math.max(1, m.outputTokens)) decoding.push(m);
    let budget = Math.max(1, s.maxNumBatchedTokens - decoding.length);
    let queueChanged = false;
    for (const m of this.members) {
      if (m.phase !== 'prefill' || budget <= 0) continue;
      const tokens = Math.min(m.prefillLeft, budget);
      budget -= tokens;
      prefilling.push({ m, tokens, starts: !m.started });
      if (!m.scheduled) {
        m.scheduled = true;
        this.queued--;
        queueChanged = true;
      }
    }
    if (queueChanged) this.onQueueChange();
    let stepMs = 0;
    if (decoding.length > 0) stepMs += this.latency.interTokenMs(decoding.length);
    for (const p of prefilling) stepMs += p.tokens * s.prefillTimePerToken + (p.starts ? s.prefillOverhead : 0);
    const startedAt = this.simNow;
    this.simNow += stepMs;
    const finish = () => {
      this.wallAtSimNow = performance.now();
      const now = this.simNow;
      for (const p of prefilling) {
        p.m.started = true;
        p.m.prefillLeft -= p.tokens;
        if (p.m.prefillLeft <= 0 && p.m.phase === 'prefill') {
          // The step that finishes a prefill also produces the first token.
          p.m.phase = 'decode';
          p.m.prefillMs = now - p.m.joinedAt;
          p.m.tokensMade = 1;
          p.m.readyAt.push(now);
          p.m.wake?.();
        }
      }
      for (const m of decoding) {
        m.tokensMade++;
        m.readyAt.push(now);
        m.wake?.();
      }
      for (const m of [...this.members]) if (m.phase === 'decode' && m.tokensMade >= Math.max(1, m.outputTokens)) this.members.delete(m);
      this.step();
    };
    const wallMs = (this.simNow - startedAt) * s.timeScale;
    const due = this.wallAtSimNow + wallMs;
    const wait = due - performance.now();
    if (wait >= MIN_SLEEP_MS) setTimeout(finish, wait);
    else setImmediate(finish);
  }
}
