/**
 * runLoad: sends a workload to an OpenAI-compatible server with undici and measures every request from its SSE stream.
 *
 * - One undici Pool for the origin: as many connections as the closed-loop concurrency (or maxConcurrency), unlimited
 *   for open-loop arrivals, so the server, not the client, decides the queueing.
 * - Arrivals: constant = evenly spaced from t = 0; poisson = exponential gaps from the seeded RNG (first request at
 *   t = 0); concurrency = closed loop, N workers each sending its next request as soon as the previous one ends.
 * - Every wait has a deadline: each request has its own timeout (simulated ms × time scale), and the run's signal
 *   cancels the dispatcher and every request in flight at once; cancelled requests are left out of the samples.
 * - Times are measured with performance.now() in wall ms and reported in simulated ms (wall / timeScale).
 */
import { randomInt } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Pool } from 'undici';
import { PromptFactory, WORDS } from './prompts.js';
import { Progress } from './progress.js';
import { Rng, drawLength } from './random.js';
import { validateRunOptions } from './schema.js';
import { StreamMetrics } from './sse.js';
import { summarize } from './stats.js';
import type { LoadRunOptions, RequestSample, RunResult } from './types.js';

/** The default per-request timeout. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;
/** The default seed: runs are reproducible unless told otherwise. */
export const DEFAULT_SEED = 1;

/** RNG streams of one seed. */
const STREAM = { lengths: 1, arrivals: 2, groups: 3, words: 100 } as const;

/** The inference path for an API under a base URL (a base URL ending in /v1, as OpenAI clients take it, also works). */
export function inferencePath(baseUrl: string, api: 'chat' | 'completions'): string {
  const u = new URL(baseUrl);
  let base = u.pathname.replace(/\/+$/, '');
  if (!base.endsWith('/v1')) base += '/v1';
  return `${base}/${api === 'chat' ? 'chat/completions' : 'completions'}`;
}

interface PlannedRequest {
  index: number;
  inputTokens: number;
  outputTokens: number;
  body: string;
  scheduledWallMs: number;
}

class TimeoutError extends Error {}

/** Sample times are kept to the microsecond. */
const round = (ms: number) => Math.round(ms * 1000) / 1000;

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    const code = (err as Error & { code?: string }).code;
    return `${err.message}${code ? ` (${code})` : ''}${cause instanceof Error ? `: ${cause.message}` : ''}`;
  }
  return String(err);
}

/**
 * Resolves at or after `target` (performance.now() ms), never before it, or as soon as `signal`
 * aborts. Node's timers have millisecond granularity and may fire up to 1 ms early, so the wait is
 * rounded up and re-checked.
 */
async function sleepUntil(target: number, signal: AbortSignal): Promise<void> {
  for (;;) {
    if (signal.aborted) return;
    const wait = target - performance.now();
    if (wait <= 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, Math.max(1, Math.ceil(wait)));
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** Runs a load against a target and measures each request. */
export async function runLoad(loadRunOptions: LoadRunOptions): Promise<RunResult> {
  validateRunOptions(loadRunOptions);
  const scale = loadRunOptions.timeScale ?? 1;
  const seed = loadRunOptions.seed ?? DEFAULT_SEED;
  const timeoutWallMs = (loadRunOptions.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS) * scale;
  const maxRequests = loadRunOptions.requests ?? Number.POSITIVE_INFINITY;
  const wallBudgetMs =
    loadRunOptions.durationSeconds !== undefined
      ? loadRunOptions.durationSeconds * 1000 * scale
      : Number.POSITIVE_INFINITY;
  const profile = loadRunOptions.profile;
  const arrival = loadRunOptions.arrival;
  const url = new URL(loadRunOptions.baseUrl);
  const path = inferencePath(loadRunOptions.baseUrl, profile.api);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'text/event-stream',
    ...loadRunOptions.headers,
  };

  const lengths = new Rng(seed, STREAM.lengths);
  const arrivals = new Rng(seed, STREAM.arrivals);
  const groups = new Rng(seed, STREAM.groups);
  const prompts = new PromptFactory(profile.api, seed, randomInt(0, WORDS.length * WORDS.length), profile.sharedPrefix);

  const plan = (index: number, scheduledWallMs: number): PlannedRequest => {
    const inputTokens = Math.max(prompts.minTokens, drawLength(profile.inputTokens, lengths));
    const outputTokens = drawLength(profile.outputTokens, lengths);
    const group = profile.sharedPrefix ? groups.int(0, profile.sharedPrefix.groups - 1) : 0;
    const prompt = prompts.build(index, inputTokens, group, new Rng(seed, STREAM.words + index));
    const common = {
      max_tokens: outputTokens,
      min_tokens: outputTokens,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    };
    const body =
      profile.api === 'chat'
        ? { model: loadRunOptions.model, messages: [{ role: 'user', content: prompt.text }], ...common }
        : { model: loadRunOptions.model, prompt: prompt.text, ...common };
    return { index, inputTokens: prompt.tokens, outputTokens, body: JSON.stringify(body), scheduledWallMs };
  };

  const closedLoop = arrival.kind === 'concurrency';
  const connections = closedLoop ? arrival.concurrency : (loadRunOptions.maxConcurrency ?? null);
  const pool = new Pool(url.origin, {
    connections,
    pipelining: 1,
    // Deadlines are ours (per request, in simulated time); undici's own would cut long generations short.
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 60_000,
  });

  const runAbort = new AbortController();
  setMaxListeners(0, runAbort.signal); // one listener per request in flight
  const onOuterAbort = () => runAbort.abort(loadRunOptions.signal?.reason);
  if (loadRunOptions.signal?.aborted) runAbort.abort(loadRunOptions.signal.reason);
  else loadRunOptions.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = runAbort.signal;

  const samples: RequestSample[] = [];
  let issued = 0;
  let inFlight = 0;
  let failures = 0;
  let cancelled = 0;
  let lastEndWall = 0;
  const t0 = performance.now();
  const startedAt = Date.now();

  const progressStream =
    loadRunOptions.progress === true
      ? process.stderr
      : loadRunOptions.progress === false
        ? undefined
        : (loadRunOptions.progress ?? (process.stderr.isTTY ? process.stderr : undefined));
  const progress = progressStream
    ? new Progress(progressStream, () => ({
        done: samples.length,
        failures,
        inFlight,
        total: loadRunOptions.requests,
        elapsedSeconds: (performance.now() - t0) / 1000 / scale,
        durationSeconds: loadRunOptions.durationSeconds,
      }))
    : undefined;

  /** `start`: when the run decided to send it (the closed loop's deadline check), else now. */
  const send = async (req: PlannedRequest, start = performance.now()): Promise<void> => {
    inFlight++;
    const ac = new AbortController();
    const timer = setTimeout(
      () =>
        ac.abort(
          new TimeoutError(`timed out after ${loadRunOptions.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS}ms`),
        ),
      timeoutWallMs,
    );
    const onRunAbort = () => ac.abort(signal.reason);
    signal.addEventListener('abort', onRunAbort, { once: true });
    const sample: RequestSample = {
      index: req.index,
      ok: false,
      status: 0,
      inputTokens: req.inputTokens,
      requestedOutputTokens: req.outputTokens,
      outputTokens: 0,
      startMs: (start - t0) / scale,
      scheduledMs: req.scheduledWallMs / scale,
      e2eMs: 0,
      itlMs: [],
    };
    let end = start;
    try {
      const res = await pool.request({ path, method: 'POST', headers, body: req.body, signal: ac.signal });
      sample.status = res.statusCode;
      if (res.statusCode < 200 || res.statusCode >= 300) {
        const text = await res.body.text().catch(() => '');
        end = performance.now();
        let message = text.slice(0, 300);
        try {
          const j = JSON.parse(text) as { error?: { message?: string } | string; message?: string };
          message = (typeof j.error === 'string' ? j.error : j.error?.message) ?? j.message ?? message;
        } catch {
          /* not JSON */
        }
        sample.error = `HTTP ${res.statusCode}${message ? `: ${message}` : ''}`;
      } else {
        const contentType = String(res.headers['content-type'] ?? '');
        const m = new StreamMetrics(start);
        const decoder = new TextDecoder();
        for await (const chunk of res.body) {
          m.push(performance.now(), decoder.decode(chunk as Buffer, { stream: true }));
        }
        end = performance.now();
        m.push(end, decoder.decode());
        m.end(end);
        const r = m.result();
        sample.outputTokens = r.outputTokens;
        if (r.usage) sample.reportedInputTokens = r.usage.prompt_tokens;
        if (r.ttftMs !== undefined) sample.ttftMs = r.ttftMs / scale;
        sample.itlMs = r.itlMs.map((value) => value / scale);
        if (r.error !== undefined) sample.error = `stream error: ${r.error}`;
        else if (!contentType.includes('text/event-stream') && r.contentChunks === 0)
          sample.error = `expected an event stream, got content-type ${contentType || 'none'}`;
        else if (!r.done) sample.error = 'stream ended without [DONE]';
        else if (r.contentChunks === 0) sample.error = 'no output tokens';
        else sample.ok = true;
      }
    } catch (e) {
      end = performance.now();
      if (signal.aborted && !(ac.signal.reason instanceof TimeoutError)) {
        cancelled++;
        return;
      }
      sample.error =
        ac.signal.reason instanceof TimeoutError ? ac.signal.reason.message : `transport error: ${errorMessage(e)}`;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onRunAbort);
      inFlight--;
    }
    sample.e2eMs = round((end - start) / scale);
    sample.startMs = round(sample.startMs);
    sample.scheduledMs = round(sample.scheduledMs!);
    if (sample.ttftMs !== undefined) sample.ttftMs = round(sample.ttftMs);
    for (let i = 0; i < sample.itlMs.length; i++) sample.itlMs[i] = round(sample.itlMs[i]);
    if (sample.ok && sample.ttftMs !== undefined && sample.outputTokens > 1)
      sample.tpotMs = (sample.e2eMs - sample.ttftMs) / (sample.outputTokens - 1);
    if (!sample.ok) failures++;
    lastEndWall = Math.max(lastEndWall, end - t0);
    samples.push(sample);
    try {
      loadRunOptions.onSample?.(sample);
    } catch {
      /* an observer's bug must not break the run */
    }
  };

  const budgetLeftAt = (now: number) => issued < maxRequests && !signal.aborted && now - t0 < wallBudgetMs;

  try {
    if (arrival.kind === 'concurrency') {
      const worker = async () => {
        // One clock reading decides and dates a request: none is dated past the deadline it was checked against.
        for (let now = performance.now(); budgetLeftAt(now); now = performance.now()) {
          const req = plan(issued++, now - t0);
          await send(req, now);
        }
      };
      await Promise.all(Array.from({ length: Math.min(arrival.concurrency, maxRequests) }, worker));
    } else {
      const running = new Set<Promise<void>>();
      const meanGapWallMs = (1000 / arrival.rate) * scale;
      let due = 0;
      let sinceYield = 0;
      const aborted = new Promise<void>((resolve) =>
        signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
      );
      while (issued < maxRequests && due < wallBudgetMs && !signal.aborted) {
        const target = t0 + due;
        if (target > performance.now()) {
          await sleepUntil(target, signal);
          sinceYield = 0;
        } else if (++sinceYield >= 32) {
          // Catching up on a backlog of due arrivals: let responses be read in between.
          await new Promise((resolve) => setImmediate(resolve));
          sinceYield = 0;
        }
        if (signal.aborted) break;
        while (
          loadRunOptions.maxConcurrency !== undefined &&
          running.size >= loadRunOptions.maxConcurrency &&
          !signal.aborted
        ) {
          await Promise.race([...running, aborted]);
        }
        if (signal.aborted) break;
        const p = send(plan(issued++, due)).finally(() => running.delete(p));
        running.add(p);
        due += arrival.kind === 'constant' ? meanGapWallMs : arrivals.exponential(meanGapWallMs);
      }
      await Promise.all(running);
    }
  } finally {
    loadRunOptions.signal?.removeEventListener('abort', onOuterAbort);
    progress?.stop();
    await pool.destroy().catch(() => undefined);
  }

  const endedAt = Date.now();
  samples.sort((left, right) => left.index! - right.index!);
  const wallDuration = samples.length > 0 ? lastEndWall : performance.now() - t0;
  const durationSeconds = wallDuration / 1000 / scale;
  return {
    options: loadRunOptions,
    samples,
    summary: summarize(samples, durationSeconds),
    startedAt,
    endedAt,
    aborted: signal.aborted,
    cancelled,
  };
}
