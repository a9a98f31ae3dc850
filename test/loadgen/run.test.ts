import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runLoad, statSummary, type LoadRunOptions, type RequestSample, type WorkloadProfile } from '../../src/loadgen/index.js';
import { simConfig, startSimulator, type SimConfig, type SimulatorHandle } from '../../src/sim/index.js';
import { postJson, waitFor } from '../helpers.js';

const handles: Array<{ close: () => Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((headers) => headers.close()));
});

async function sim(overrides: Partial<SimConfig> = {}): Promise<SimulatorHandle> {
  const s = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, seed: 1, maxNumSeqs: 16, maxModelLen: 8192, kvCacheSize: 4096, ...overrides }));
  handles.push({ close: () => s.close(1_000) });
  return s;
}

function profile(params: Partial<WorkloadProfile> = {}): WorkloadProfile {
  return { name: 'test', description: '', api: 'completions', inputTokens: { kind: 'fixed', value: 32 }, outputTokens: { kind: 'fixed', value: 4 }, ...params };
}

function opts(settings: { url: string }, options: Partial<LoadRunOptions>): LoadRunOptions {
  return { baseUrl: settings.url, model: 'sim-model', profile: profile(), arrival: { kind: 'concurrency', concurrency: 1 }, progress: false, ...options };
}

/** Largest number of requests in flight at once, from the samples' [start, start + e2e] intervals. */
function maxOverlap(samples: RequestSample[]): number {
  const edges = samples.flatMap((sample) => [
    [sample.startMs, 1],
    [sample.startMs + sample.e2eMs, -1],
  ]);
  edges.sort((left, right) => left[0]! - right[0]! || left[1]! - right[1]!);
  let cur = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (cur += d!));
  return max;
}

interface Recorded {
  promptTokens?: number;
  cachedTokens?: number;
  status?: number;
  body: { prompt?: string; max_tokens?: number; min_tokens?: number; ignore_eos?: boolean; stream_options?: unknown };
}

async function records(handle: SimulatorHandle): Promise<Recorded[]> {
  return (handle.engine.recentRequests() as unknown as Recorded[]).slice();
}

// Timing assertions are one-sided: a timer never fires early (bar Node's 1 ms), but a loaded machine delays anything
// by any amount, so measured latencies are checked against their lower bounds and against each other, never against
// an upper margin.

describe('runLoad against the simulator', () => {
  it('measures TTFT, ITL and TPOT matching the configured latencies', async () => {
    const s = await sim({ timeToFirstToken: 80, interTokenLatency: 10 });
    const wallStart = performance.now();
    const r = await runLoad(opts(s, { profile: profile({ outputTokens: { kind: 'fixed', value: 20 } }), arrival: { kind: 'concurrency', concurrency: 2 }, requests: 8 }));
    expect(r.samples.every((sample) => sample.ok)).toBe(true);
    const ttft = r.summary.latency.timeToFirstToken;
    const itl = r.summary.latency.interTokenLatency;
    const tpot = r.summary.latency.timePerOutputToken;
    expect(ttft.count).toBe(8);
    // Node timers may fire up to 1 ms early by performance.now(), in the simulator's sleeps as anywhere.
    expect(ttft.p50 * 1000).toBeGreaterThanOrEqual(79);
    expect(itl.count).toBe(8 * 19);
    expect(itl.mean * 1000).toBeGreaterThan(9.5);
    expect(tpot.mean * 1000).toBeGreaterThan(9.5);
    // Each request's parts add up within it, and no request ends after the run did.
    const wallMs = performance.now() - wallStart;
    for (const x of r.samples) {
      expect(x.ttftMs!).toBeLessThanOrEqual(x.e2eMs);
      expect(x.ttftMs! + x.itlMs!.reduce((acc, right) => acc + right, 0)).toBeLessThanOrEqual(x.e2eMs + 1e-6);
      expect(x.startMs + x.e2eMs).toBeLessThanOrEqual(wallMs);
    }
    expect(r.summary.requests.outputLength.mean).toBe(20);
    expect(r.summary.latency.requestLatency.p50 * 1000).toBeGreaterThanOrEqual(80 + 19 * 10 - 5);
    expect(r.summary.throughput.outputTokensPerSec).toBeCloseTo((8 * 20) / r.summary.durationSeconds, 6);
  });

  it.each(['completions', 'chat'] as const)('%s: the prompt tokens the simulator counts equal the drawn input lengths', async (api) => {
    const s = await sim({ timeToFirstToken: 1, interTokenLatency: 1 });
    const r = await runLoad(
      opts(s, { profile: profile({ api, inputTokens: { kind: 'uniform', min: 6, max: 400 }, outputTokens: { kind: 'uniform', min: 1, max: 5 } }), arrival: { kind: 'concurrency', concurrency: 4 }, requests: 30 }),
    );
    expect(r.samples.filter((sample) => !sample.ok)).toEqual([]);
    expect(new Set(r.samples.map((sample) => sample.inputTokens)).size).toBeGreaterThan(20);
    for (const x of r.samples) {
      expect(x.reportedInputTokens).toBe(x.inputTokens);
      expect(x.outputTokens).toBe(x.requestedOutputTokens);
    }
    const rec = await records(s);
    expect(rec.map((recorded) => recorded.promptTokens).sort()).toEqual(r.samples.map((sample) => sample.inputTokens).sort());
    for (const x of rec) {
      expect(x.body.ignore_eos).toBe(true);
      expect(x.body.min_tokens).toBe(x.body.max_tokens);
      expect(x.body.stream_options).toEqual({ include_usage: true });
    }
  });

  it('shared prefixes hit the prefix cache, everything after them misses, also across runs', async () => {
    const s = await sim({ timeToFirstToken: 1, interTokenLatency: 1, blockSize: 16 });
    const p = profile({ inputTokens: { kind: 'fixed', value: 64 }, sharedPrefix: { groups: 2, prefixTokens: 32 } });
    const first = await runLoad(opts(s, { profile: p, requests: 12 }));
    expect(first.samples.every((sample) => sample.ok)).toBe(true);
    const cached = (await records(s)).map((recorded) => recorded.cachedTokens);
    // Each group's first request fills the cache; later ones hit exactly the two prefix blocks.
    expect(cached.filter((count) => count === 0).length).toBe(2);
    expect(cached.filter((count) => count === 32).length).toBe(10);
    s.engine.clearRecords();
    await runLoad(opts(s, { profile: profile({ inputTokens: { kind: 'fixed', value: 64 } }), requests: 4 }));
    await runLoad(opts(s, { profile: profile({ inputTokens: { kind: 'fixed', value: 64 } }), requests: 4 }));
    expect((await records(s)).map((recorded) => recorded.cachedTokens)).toEqual(Array(8).fill(0));
  });

  it('constant arrivals are evenly spaced', async () => {
    const s = await sim({ timeToFirstToken: 1, interTokenLatency: 1 });
    const r = await runLoad(opts(s, { arrival: { kind: 'constant', rate: 50 }, requests: 30 }));
    expect(r.samples).toHaveLength(30);
    r.samples.forEach((sample, i) => expect(sample.scheduledMs).toBeCloseTo(i * 20, 6));
    // Sends follow the schedule: never before their time (a loaded machine may send some late).
    for (const x of r.samples) expect(x.startMs).toBeGreaterThanOrEqual(x.scheduledMs! - 1);
  });

  it('poisson arrivals have exponential gaps, reproducible from the seed', async () => {
    const s = await sim({ timeToFirstToken: 1, interTokenLatency: 1 });
    const o = opts(s, { arrival: { kind: 'poisson', rate: 200 }, requests: 100, seed: 11 });
    const a = await runLoad(o);
    const b = await runLoad(o);
    expect(a.samples.map((sample) => sample.scheduledMs)).toEqual(b.samples.map((sample) => sample.scheduledMs));
    const gaps = a.samples.slice(1).map((sample, i) => sample.scheduledMs! - a.samples[i]!.scheduledMs!);
    const g = statSummary(gaps);
    expect(g.mean).toBeGreaterThan(5 * 0.75);
    expect(g.mean).toBeLessThan(5 * 1.25);
    expect(g.stddev / g.mean).toBeGreaterThan(0.7); // exponential: coefficient of variation 1
    expect(g.stddev / g.mean).toBeLessThan(1.3);
    for (const x of a.samples) expect(x.startMs).toBeGreaterThanOrEqual(x.scheduledMs! - 1);
    const c = await runLoad({ ...o, seed: 12 });
    expect(c.samples.map((sample) => sample.scheduledMs)).not.toEqual(a.samples.map((sample) => sample.scheduledMs));
  });

  it('the closed loop keeps exactly N in flight and never more', async () => {
    const s = await sim({ timeToFirstToken: 20, interTokenLatency: 5 });
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, s.engine.scheduler.running + s.engine.scheduler.waiting)), 1);
    try {
      const r = await runLoad(opts(s, { arrival: { kind: 'concurrency', concurrency: 3 }, requests: 15 }));
      expect(r.samples).toHaveLength(15);
      expect(r.samples.every((sample) => sample.ok)).toBe(true);
      expect(maxOverlap(r.samples)).toBe(3);
    } finally {
      clearInterval(poll);
    }
    expect(peak).toBe(3);
  });

  it('a duration bound stops starting requests at the (simulated) deadline', async () => {
    const s = await sim({ timeToFirstToken: 10, interTokenLatency: 2 });
    const r = await runLoad(opts(s, { arrival: { kind: 'concurrency', concurrency: 2 }, durationSeconds: 0.2 }));
    // How many fit in 200 ms depends on the machine; that none starts after it does not.
    expect(r.samples.length).toBeGreaterThanOrEqual(2);
    for (const x of r.samples) expect(x.startMs).toBeLessThan(200);
  });

  it('time scale: a simulator at --time-scale 0.1 is measured in simulated time', async () => {
    const s = await sim({ timeScale: 0.1, timeToFirstToken: 500, interTokenLatency: 50 });
    const wallStart = performance.now();
    const r = await runLoad(opts(s, { profile: profile({ outputTokens: { kind: 'fixed', value: 10 } }), arrival: { kind: 'constant', rate: 10 }, durationSeconds: 2, timeScale: 0.1 }));
    const wallMs = performance.now() - wallStart;
    expect(r.samples).toHaveLength(20); // 2 simulated seconds at 10/s
    expect(r.samples.every((sample) => sample.ok)).toBe(true);
    r.samples.forEach((sample, i) => expect(sample.scheduledMs).toBeCloseTo(i * 100, 6));
    const ttft = r.summary.latency.timeToFirstToken;
    // One wall millisecond of timer jitter is 10 simulated ones.
    expect(ttft.p50 * 1000).toBeGreaterThanOrEqual(490);
    expect(r.summary.latency.interTokenLatency.mean * 1000).toBeGreaterThan(45);
    expect(r.summary.latency.requestLatency.p50 * 1000).toBeGreaterThanOrEqual(930);
    // 1.9 s of arrivals plus one ~0.95 s request, in simulated time: the run's duration is the wall time × 10.
    expect(r.summary.durationSeconds).toBeGreaterThan(2.8);
    expect(r.summary.durationSeconds).toBeLessThanOrEqual(wallMs / 0.1 / 1000);
    expect(r.summary.throughput.requestsPerSec).toBeCloseTo(20 / r.summary.durationSeconds, 6);
  });
});

describe('failures never hang the run', () => {
  it('counts HTTP errors injected with X-Return-Error', async () => {
    const s = await sim();
    const r = await runLoad(opts(s, { headers: { 'X-Return-Error': '503' }, requests: 5, arrival: { kind: 'concurrency', concurrency: 2 } }));
    expect(r.summary.requests).toMatchObject({ total: 5, failures: 5 });
    expect(r.samples.every((sample) => sample.status === 503 && sample.error?.startsWith('HTTP 503: Simulated error'))).toBe(true);
    expect(r.summary.throughput.outputTokensPerSec).toBe(0);
    expect(r.summary.latency.timeToFirstToken.count).toBe(0);
  });

  it('counts the errors a simulator returns for part of a run (/admin/config return-error-count)', async () => {
    const s = await sim({ timeToFirstToken: 1, interTokenLatency: 1 });
    expect((await postJson(`${s.url}/admin/config`, { 'return-error': 500, 'return-error-count': 3 })).status).toBe(200);
    const r = await runLoad(opts(s, { requests: 10 }));
    expect(r.summary.requests).toMatchObject({ total: 10, failures: 3 });
    expect(r.samples.slice(0, 3).every((sample) => !sample.ok && sample.status === 500)).toBe(true);
    expect(r.summary.latency.timeToFirstToken.count).toBe(7);
  });

  it('counts dropped connections and an unreachable server as transport errors', async () => {
    const s = await sim();
    expect((await postJson(`${s.url}/admin/config`, { 'drop-connections': true })).status).toBe(200);
    const r = await runLoad(opts(s, { requests: 3 }));
    expect(r.summary.requests.failures).toBe(3);
    expect(r.samples[0]!.error).toMatch(/^transport error/);
    const closed = createServer();
    await new Promise<void>((res) => closed.listen(0, '127.0.0.1', res));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((res) => closed.close(res));
    const u = await runLoad({ ...opts(s, { requests: 2 }), baseUrl: `http://127.0.0.1:${port}` });
    expect(u.samples.map((sample) => sample.ok)).toEqual([false, false]);
    expect(u.samples[0]!.error).toMatch(/ECONNREFUSED/);
  });

  it('times out hung requests at the per-request deadline (scaled by the time scale)', async () => {
    const s = await sim();
    expect((await postJson(`${s.url}/admin/config`, { hang: true })).status).toBe(200);
    // 10 simulated minutes at a time scale of 1/10000 are 60 ms of wall time; unscaled, the test would time out.
    const r = await runLoad(opts(s, { requests: 3, arrival: { kind: 'concurrency', concurrency: 3 }, requestTimeoutMs: 600_000, timeScale: 0.0001 }));
    expect(r.samples.map((sample) => sample.error)).toEqual(Array(3).fill('timed out after 600000ms'));
    for (const x of r.samples) expect(x.e2eMs).toBeGreaterThanOrEqual(599_000);
  });

  it('an abort stops a closed-loop run at once; requests in flight are cancelled, not failed', async () => {
    // Ten minutes to a first token: only the abort can end this run within the test's bound.
    const s = await sim({ timeToFirstToken: 600_000 });
    const ac = new AbortController();
    const running = runLoad(opts(s, { requests: 50, arrival: { kind: 'concurrency', concurrency: 5 }, signal: ac.signal, requestTimeoutMs: 3_600_000 }));
    await waitFor(() => s.engine.scheduler.running === 5, 5_000, 'five requests running');
    ac.abort();
    const r = await running;
    expect(r).toMatchObject({ aborted: true, cancelled: 5, samples: [] });
    await waitFor(() => s.engine.scheduler.running === 0, 5_000, 'the simulator to see the cancellations');
  });

  it('an abort stops an open-loop run waiting for its next arrival; a pre-aborted run returns at once', async () => {
    const s = await sim({ timeToFirstToken: 1, interTokenLatency: 1 });
    const ac = new AbortController();
    let finished = 0;
    const running = runLoad(opts(s, { arrival: { kind: 'constant', rate: 0.1 }, durationSeconds: 600, signal: ac.signal, onSample: () => finished++ }));
    await waitFor(() => finished === 1, 5_000, 'the first request');
    ac.abort();
    const r = await running;
    expect(r.aborted).toBe(true);
    expect(r.samples).toHaveLength(1);
    expect(r.samples[0]!.ok).toBe(true);
    const pre = await runLoad(opts(s, { requests: 5, signal: AbortSignal.abort() }));
    expect(pre.samples).toEqual([]);
    expect(pre.aborted).toBe(true);
  });

  it('an open-loop cap on requests in flight makes later arrivals wait', async () => {
    const s = await sim({ timeToFirstToken: 30, interTokenLatency: 1 });
    const r = await runLoad(opts(s, { arrival: { kind: 'constant', rate: 1000 }, requests: 8, maxConcurrency: 2 }));
    expect(r.samples.every((sample) => sample.ok)).toBe(true);
    expect(maxOverlap(r.samples)).toBe(2);
    expect(r.samples[7]!.startMs - r.samples[7]!.scheduledMs!).toBeGreaterThan(60);
  });

  it('rejects invalid options with every problem named', async () => {
    await expect(runLoad({ baseUrl: 'nope', model: '', profile: profile({ inputTokens: { kind: 'uniform', min: 5, max: 1 } }), arrival: { kind: 'constant', rate: 0 } })).rejects.toThrow(
      /baseUrl "nope" is not a URL; model is required; profile.inputTokens: .*; arrival.*; give requests, durationSeconds or both/,
    );
  });
});

describe('stream errors from a non-simulator server', () => {
  let server: Server;
  async function fake(): Promise<string> {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (def) => (body += def));
      req.on('end', () => {
        const model = (JSON.parse(body) as { model: string }).model;
        const chunk = (value: string) => `data: ${JSON.stringify({ choices: [{ index: 0, text: value }] })}\n\n`;
        if (model === 'json') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"choices":[{"text":"hi"}]}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        if (model === 'error') res.end(chunk('a') + `data: ${JSON.stringify({ error: { message: 'engine died' } })}\n\n`);
        else if (model === 'nodone') res.end(chunk('a') + chunk('b'));
        else if (model === 'empty') res.end('data: [DONE]\n\n');
        else res.end(chunk('a') + chunk('b') + chunk('c') + 'data: [DONE]\n\n'); // no usage chunk
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    handles.push({ close: () => new Promise((resolve) => server.close(() => resolve())) });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it.each([
    ['error', false, 'stream error: engine died'],
    ['nodone', false, 'stream ended without [DONE]'],
    ['empty', false, 'no output tokens'],
    ['json', false, 'expected an event stream, got content-type application/json'],
    ['nousage', true, undefined],
  ])('model %s: ok=%s %s', async (model, ok, error) => {
    const url = await fake();
    const r = await runLoad(opts({ url }, { model, requests: 1 }));
    expect(r.samples[0]).toMatchObject({ ok, status: 200 });
    expect(r.samples[0]!.error).toBe(error);
    if (ok) expect(r.samples[0]!.outputTokens).toBe(3);
  });
});
