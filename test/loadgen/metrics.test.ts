import { Writable } from 'node:stream';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  CHAT_TEMPLATE_TOKENS,
  Progress,
  PromptFactory,
  Rng,
  STAT_KEYS,
  SseParser,
  WORKLOAD_PRESETS,
  drawLength,
  formatLengthDistribution,
  inferencePerfReport,
  inferencePath,
  markdownSummary,
  meetsSlo,
  metricsFromSseTimeline,
  parseLengthDistribution,
  percentileOf,
  progressLine,
  sloGoodput,
  statSummary,
  summarize,
  workloadProfileSchema,
  type RequestSample,
  type RunResult,
  type RunSummary,
} from '../../src/loadgen/index.js';
import { renderPrompt, tokenize } from '../../src/sim/index.js';

const ev = (obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`;
const chat = (content: string) => ev({ choices: [{ index: 0, delta: { content } }] });

describe('metricsFromSseTimeline', () => {
  const timeline = [
    { atMs: 100, data: ev({ choices: [{ index: 0, delta: { role: 'assistant' } }] }) },
    { atMs: 150, data: chat('Hel') },
    // Two events in one network chunk: the second has a zero gap.
    { atMs: 170, data: chat('lo') + chat(' world') },
    // An event split across chunks counts when it completes.
    { atMs: 200, data: 'data: {"choices":[{"index":0,"delta":{"content":"!"}}' },
    { atMs: 205, data: ']}\n\n' },
    {
      atMs: 210,
      data: ev({ choices: [{ index: 0, delta: {}, finish_reason: 'length' }] }) + ev({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 7 } }) + 'data: [DONE]\n\n',
    },
  ];

  it('TTFT at the first content chunk, ITL between content chunks, output tokens from usage, TPOT', () => {
    const m = metricsFromSseTimeline(0, timeline);
    expect(m.ttftMs).toBe(150);
    expect(m.itlMs).toEqual([20, 0, 35]);
    expect(m.contentChunks).toBe(4);
    expect(m.usage).toEqual({ prompt_tokens: 12, completion_tokens: 7 });
    expect(m.outputTokens).toBe(7);
    expect(m.done).toBe(true);
    expect(m.error).toBeUndefined();
    expect(m.e2eMs).toBe(210);
    expect(m.tpotMs).toBe((210 - 150) / (7 - 1));
  });

  it('counts content chunks when there is no usage chunk; start time is the origin', () => {
    const m = metricsFromSseTimeline(40, timeline.slice(0, 5).concat([{ atMs: 230, data: 'data: [DONE]\n\n' }]));
    expect(m.ttftMs).toBe(110);
    expect(m.usage).toBeUndefined();
    expect(m.outputTokens).toBe(4);
    expect(m.e2eMs).toBe(190);
    expect(m.tpotMs).toBeCloseTo((190 - 110) / 3, 10);
  });

  it('accepts bare payloads, completions chunks, CRLF, comments and reasoning text', () => {
    const m = metricsFromSseTimeline(0, [
      { atMs: 10, data: ': keep-alive\r\n\r\n' },
      { atMs: 20, data: JSON.stringify({ choices: [{ index: 0, text: 'a' }] }) },
      { atMs: 25, data: 'data: {"choices":[{"index":0,"text":"b"}]}\r\n\r\n' },
      { atMs: 31, data: JSON.stringify({ choices: [{ index: 0, delta: { reasoning_content: 'hmm' } }] }) },
      { atMs: 32, data: JSON.stringify({ choices: [{ index: 0, text: '' }] }) },
      { atMs: 40, data: '[DONE]' },
    ]);
    expect(m.ttftMs).toBe(20);
    expect(m.itlMs).toEqual([5, 6]);
    expect(m.outputTokens).toBe(3);
    expect(m.done).toBe(true);
  });

  it('reports stream errors (JSON error object or an error event) and a missing [DONE]', () => {
    const a = metricsFromSseTimeline(0, [
      { atMs: 5, data: chat('x') },
      { atMs: 9, data: ev({ error: { message: 'engine died', code: 500 } }) },
    ]);
    expect(a.error).toBe('engine died');
    expect(a.done).toBe(false);
    const b = metricsFromSseTimeline(0, [{ atMs: 5, data: 'event: error\ndata: overloaded\n\n' }]);
    expect(b.error).toBe('overloaded');
    expect(b.ttftMs).toBeUndefined();
    expect(b.outputTokens).toBe(0);
    const c = metricsFromSseTimeline(0, [{ atMs: 5, data: chat('x') }]);
    expect(c.done).toBe(false);
    expect(c.tpotMs).toBeUndefined();
  });

  it('the parser delivers a final event without its blank line and waits on a split CRLF', () => {
    const p = new SseParser();
    expect(p.push('data: one\r')).toEqual([]);
    expect(p.push('\n\r\nevent: x\ndata: a\ndata: b')).toEqual([{ data: 'one' }]);
    expect(p.end()).toEqual([{ event: 'x', data: 'a\nb' }]);
  });
});

describe('percentileOf (linear interpolation between closest ranks)', () => {
  it('gives exact values on small arrays', () => {
    const s = [1, 2, 3, 4];
    expect(percentileOf(s, 0)).toBe(1);
    expect(percentileOf(s, 25)).toBe(1.75);
    expect(percentileOf(s, 50)).toBe(2.5);
    expect(percentileOf(s, 90)).toBeCloseTo(3.7, 12);
    expect(percentileOf(s, 99.9)).toBeCloseTo(3.997, 12);
    expect(percentileOf(s, 100)).toBe(4);
    expect(percentileOf([10, 20], 0.1)).toBeCloseTo(10.01, 12);
    expect(percentileOf([5], 99)).toBe(5);
    expect(percentileOf([], 50)).toBeNaN();
  });

  it('statSummary has every statistic; empty input is all zeros with count 0', () => {
    const s = statSummary([3, 1, 2]);
    expect(s).toMatchObject({ count: 3, min: 1, max: 3, mean: 2, p50: 2, p25: 1.5, p75: 2.5 });
    expect(s.stddev).toBeCloseTo(Math.sqrt(2 / 3), 12);
    const e = statSummary([]);
    for (const k of STAT_KEYS) expect(e[k]).toBe(0);
    expect(e.count).toBe(0);
  });
});

function sample(params: Partial<RequestSample>): RequestSample {
  return { ok: true, status: 200, inputTokens: 100, outputTokens: 11, startMs: 0, e2eMs: 0, itlMs: [], ...params };
}

describe('summarize', () => {
  const samples = [
    sample({ inputTokens: 100, outputTokens: 11, ttftMs: 100, e2eMs: 300, itlMs: Array(10).fill(20), tpotMs: 20 }),
    sample({ inputTokens: 200, outputTokens: 1, ttftMs: 50, e2eMs: 50 }),
    sample({ ok: false, status: 503, error: 'HTTP 503', inputTokens: 999, outputTokens: 0, e2eMs: 3 }),
  ];
  const s = summarize(samples, 2);

  it('counts requests and failures, lengths over successes', () => {
    expect(s.durationSeconds).toBe(2);
    expect(s.requests.total).toBe(3);
    expect(s.requests.failures).toBe(1);
    expect(s.requests.inputLength).toMatchObject({ count: 2, min: 100, max: 200, mean: 150 });
    expect(s.requests.outputLength).toMatchObject({ count: 2, mean: 6 });
  });

  it('latencies in seconds: TTFT, TPOT (≥ 2 tokens only), normalized TPOT, ITL over all gaps, request latency', () => {
    expect(s.latency.timeToFirstToken).toMatchObject({ count: 2, min: 0.05, max: 0.1 });
    expect(s.latency.timeToFirstToken.mean).toBeCloseTo(0.075, 12);
    expect(s.latency.timePerOutputToken).toMatchObject({ count: 1 });
    expect(s.latency.timePerOutputToken.mean).toBeCloseTo(0.02, 12);
    expect(s.latency.interTokenLatency.count).toBe(10);
    expect(s.latency.interTokenLatency.p99).toBeCloseTo(0.02, 12);
    expect(s.latency.normalizedTimePerOutputToken.count).toBe(2);
    expect(s.latency.normalizedTimePerOutputToken.max).toBeCloseTo(0.05, 12);
    expect(s.latency.normalizedTimePerOutputToken.min).toBeCloseTo(0.3 / 11, 12);
    expect(s.latency.requestLatency).toMatchObject({ count: 2, min: 0.05, max: 0.3 });
  });

  it('throughput per simulated second of the duration, successes only', () => {
    expect(s.throughput.requestsPerSec).toBe(1);
    expect(s.throughput.outputTokensPerSec).toBe(6);
    expect(s.throughput.totalTokensPerSec).toBe(156);
    expect(s.throughput.inputTokensPerSec).toBe(150);
  });

  it('TPOT is derived when a sample does not carry it', () => {
    const t = summarize([sample({ outputTokens: 5, ttftMs: 10, e2eMs: 50 })], 1);
    expect(t.latency.timePerOutputToken.mean).toBeCloseTo(0.01, 12);
  });
});

/** A run with the given per-request TTFTs and one TPOT, scaled to an output-token rate. */
function run(ttftMs: number[], tpotMs: number, outputTokensPerSec: number, failed = 0): RunSummary {
  const samples = ttftMs.map((time) => sample({ outputTokens: 11, ttftMs: time, tpotMs, e2eMs: time + 10 * tpotMs }));
  for (let i = 0; i < failed; i++) samples.push(sample({ ok: false, status: 500, outputTokens: 0 }));
  return summarize(samples, (11 * ttftMs.length) / outputTokensPerSec);
}

describe('SLO gates and goodput', () => {
  const runs = [
    run(Array(10).fill(100), 10, 100),
    run([...Array(9).fill(100), 900], 20, 300), // TTFT p50 100, p90 180, p95 540, p99 828
    run(Array(10).fill(300), 50, 500),
  ];

  it('applies each gate at the chosen percentile', () => {
    expect(runs[1]!.latency.timeToFirstToken.p90 * 1000).toBeCloseTo(180, 9);
    expect(runs[1]!.latency.timeToFirstToken.p95 * 1000).toBeCloseTo(540, 9);
    expect(runs.map((runSummary) => meetsSlo(runSummary, { ttftMs: 200, tpotMs: 25, percentile: 90 }))).toEqual([true, true, false]);
    expect(runs.map((runSummary) => meetsSlo(runSummary, { ttftMs: 200, tpotMs: 25, percentile: 95 }))).toEqual([true, false, false]);
    expect(runs.map((runSummary) => meetsSlo(runSummary, { ttftMs: 200, percentile: 50 }))).toEqual([true, true, false]);
    expect(runs.map((runSummary) => meetsSlo(runSummary, { tpotMs: 20, percentile: 99 }))).toEqual([true, true, false]);
    expect(runs.map((runSummary) => meetsSlo(runSummary, { tpotMs: 19.9, percentile: 99 }))).toEqual([true, false, false]);
    expect(runs.map((runSummary) => meetsSlo(runSummary, { ttftMs: 827, percentile: 99 }))).toEqual([true, false, true]);
  });

  it('goodput is the highest output-token rate among passing runs', () => {
    const goodput = (slo: Parameters<typeof sloGoodput>[1]) => {
      const g = sloGoodput(runs, slo);
      return { ...g, outputTokensPerSec: Math.round(g.outputTokensPerSec * 1e6) / 1e6 };
    };
    expect(goodput({ ttftMs: 200, tpotMs: 25, percentile: 90 })).toEqual({ outputTokensPerSec: 300, bestRun: 1 });
    expect(goodput({ ttftMs: 200, tpotMs: 25, percentile: 95 })).toEqual({ outputTokensPerSec: 100, bestRun: 0 });
    expect(goodput({ ttftMs: 400, tpotMs: 60, percentile: 50 })).toEqual({ outputTokensPerSec: 500, bestRun: 2 });
    expect(goodput({ ttftMs: 150, percentile: 99 })).toEqual({ outputTokensPerSec: 100, bestRun: 0 });
    expect(sloGoodput(runs, { tpotMs: 5, percentile: 90 })).toEqual({ outputTokensPerSec: 0 });
    expect(sloGoodput([], { tpotMs: 5, percentile: 90 })).toEqual({ outputTokensPerSec: 0 });
  });

  it('a run without successes never passes; failure rate gate is optional', () => {
    const dead = summarize([sample({ ok: false, status: 503, outputTokens: 0 })], 1);
    expect(meetsSlo(dead, { percentile: 90 })).toBe(false);
    expect(meetsSlo(dead, { ttftMs: 1e9, percentile: 90 })).toBe(false);
    const flaky = run(Array(8).fill(100), 10, 100, 2);
    expect(meetsSlo(flaky, { ttftMs: 200, percentile: 90 })).toBe(true);
    expect(meetsSlo(flaky, { ttftMs: 200, percentile: 90, maxFailureRate: 0.1 })).toBe(false);
    expect(meetsSlo(flaky, { ttftMs: 200, percentile: 90, maxFailureRate: 0.2 })).toBe(true);
  });
});

function fakeResult(): RunResult {
  const samples = [
    sample({ index: 0, inputTokens: 5000, outputTokens: 250, ttftMs: 1100, e2eMs: 2500, itlMs: [5, 6, 7], tpotMs: 5.6 }),
    sample({ index: 1, ok: false, status: 503, error: 'HTTP 503: busy | try later', outputTokens: 0, e2eMs: 2 }),
  ];
  return {
    options: {
      baseUrl: 'http://127.0.0.1:8080',
      model: 'm',
      profile: WORKLOAD_PRESETS['pd-guide-5k-250']!,
      arrival: { kind: 'constant', rate: 45 },
      durationSeconds: 120,
      timeScale: 0.1,
      seed: 7,
    },
    samples,
    summary: summarize(samples, 3),
    startedAt: 1_700_000_000_000,
    endedAt: 1_700_000_000_300,
    aborted: false,
    cancelled: 0,
  };
}

describe('inference-perf report', () => {
  const report = inferencePerfReport(fakeResult(), { host: { type: ['prefill', 'decode'] }, load: { topology: '1P1D' } }) as any;
  const statKeys = ['units', 'min', 'max', 'mean', 'stddev', 'p0p1', 'p1', 'p5', 'p10', 'p25', 'p50', 'p75', 'p90', 'p95', 'p99', 'p99p9'];

  it('has every latency block with all statistics and its units', () => {
    const units: Record<string, string> = {
      time_to_first_token: 's',
      time_per_output_token: 's/token',
      normalized_time_per_output_token: 's/token',
      inter_token_latency: 's/token',
      request_latency: 's',
    };
    expect(Object.keys(report.metrics.latency).sort()).toEqual(Object.keys(units).sort());
    for (const [k, u] of Object.entries(units)) {
      expect(Object.keys(report.metrics.latency[k]).sort()).toEqual([...statKeys].sort());
      expect(report.metrics.latency[k].units).toBe(u);
    }
    expect(report.metrics.latency.time_to_first_token.mean).toBeCloseTo(1.1, 12);
    expect(report.metrics.latency.inter_token_latency.max).toBeCloseTo(0.007, 12);
  });

  it('has requests, throughput, time and the scenario (load, data, server) with the caller\'s entries merged', () => {
    expect(report.version).toBe('0.1');
    expect(report.metrics.requests).toMatchObject({ total: 2, failures: 1, incomplete: 0 });
    expect(report.metrics.requests.input_length).toMatchObject({ units: 'count', mean: 5000 });
    expect(report.metrics.requests.output_length).toMatchObject({ units: 'count', p50: 250 });
    expect(Object.keys(report.metrics.throughput).sort()).toEqual(['input_tokens_per_sec', 'output_tokens_per_sec', 'requests_per_sec', 'total_tokens_per_sec']);
    expect(report.metrics.throughput.output_tokens_per_sec).toBeCloseTo(250 / 3, 9);
    expect(report.metrics.time).toEqual({ duration: 3, start: 1_700_000_000, stop: 1_700_000_000.3 });
    expect(report.metrics.metadata.time_scale).toBe(0.1);
    expect(report.scenario.model).toEqual({ name: 'm' });
    expect(report.scenario.load).toMatchObject({ name: 'pd-router-loadgen', type: 'constant', stages: [{ rate: 45, duration: 120 }], topology: '1P1D' });
    expect(report.scenario.data).toMatchObject({ type: 'random', input_distribution: { min: 5000, max: 5000, mean: 5000, std: 0 } });
    expect(report.scenario.server).toMatchObject({ model_name: 'm', base_url: 'http://127.0.0.1:8080', ignore_eos: true, api: { type: 'completion', streaming: true } });
    expect(report.scenario.host).toEqual({ type: ['prefill', 'decode'] });
  });

  it('survives YAML and JSON round trips unchanged', () => {
    expect(parseYaml(toYaml(report))).toEqual(report);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('the Markdown summary shows the set-up, throughput, latencies in ms and failures', () => {
    const md = markdownSummary(fakeResult());
    expect(md).toContain('# Load run: pd-guide-5k-250');
    expect(md).toContain('constant 45 req/s');
    expect(md).toContain('simulated (time scale 0.1)');
    expect(md).toMatch(/\| TTFT \| 1100\.00 \|/);
    expect(md).toContain('| HTTP 503: busy \\| try later | 1 |');
  });
});

describe('workload profiles, lengths and prompts', () => {
  it('presets validate and include the upstream profiles', () => {
    for (const name of ['pd-guide-5k-250', 'random-10k-1k', 'prefill-heavy', 'decode-heavy', 'shared-prefix']) {
      expect(workloadProfileSchema.safeParse(WORKLOAD_PRESETS[name]).success, name).toBe(true);
    }
    expect(WORKLOAD_PRESETS['pd-guide-5k-250']!.suggested!.arrival).toEqual({ kind: 'constant', rate: 45 });
  });

  it('length distributions: fixed, uniform bounds, normal and lognormal moments, clamping, text forms', () => {
    const rng = new Rng(3);
    expect(drawLength({ kind: 'fixed', value: 42 }, rng)).toBe(42);
    const draw = (distribution: Parameters<typeof drawLength>[0], count = 20_000) => Array.from({ length: count }, () => drawLength(distribution, rng));
    const u = draw({ kind: 'uniform', min: 10, max: 20 });
    expect(Math.min(...u)).toBe(10);
    expect(Math.max(...u)).toBe(20);
    const n = statSummary(draw({ kind: 'normal', mean: 1000, std: 100, min: 1, max: 5000 }));
    expect(n.mean).toBeGreaterThan(990);
    expect(n.mean).toBeLessThan(1010);
    expect(n.stddev).toBeGreaterThan(95);
    expect(n.stddev).toBeLessThan(105);
    const l = statSummary(draw({ kind: 'lognormal', mean: 500, std: 200, min: 1, max: 100_000 }));
    expect(l.mean).toBeGreaterThan(485);
    expect(l.mean).toBeLessThan(515);
    expect(l.stddev).toBeGreaterThan(180);
    expect(l.stddev).toBeLessThan(220);
    const c = draw({ kind: 'normal', mean: 100, std: 100, min: 80, max: 120 }, 1000);
    expect(Math.min(...c)).toBe(80);
    expect(Math.max(...c)).toBe(120);
    for (const t of ['5000', '100-200', 'normal:1000,200,500,1500', 'lognormal:1000,200,500,1500']) {
      expect(formatLengthDistribution(parseLengthDistribution(t))).toBe(t);
    }
    expect(() => parseLengthDistribution('200-100')).toThrow(/min exceeds max/);
    expect(() => parseLengthDistribution('lots')).toThrow(/not a length distribution/);
  });

  it('the RNG is deterministic per seed and stream', () => {
    const a = new Rng(5, 1);
    const b = new Rng(5, 1);
    const c = new Rng(5, 2);
    const xs = Array.from({ length: 5 }, () => a.nextU32());
    expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.nextU32())).not.toEqual(xs);
  });

  it('prompts have the exact length the simulator tokenizer counts, chat rendering included', () => {
    const rng = new Rng(1);
    for (const n of [1, 2, 7, 64, 513]) {
      const p = new PromptFactory('completions', 1, 9).build(n, n, 0, rng);
      expect(p.tokens).toBe(n);
      expect(tokenize(renderPrompt('completions', { prompt: p.text })).length).toBe(n);
    }
    for (const n of [6, 7, 50, 1000]) {
      const p = new PromptFactory('chat', 1, 9).build(n, n, 0, rng);
      expect(tokenize(renderPrompt('chat', { messages: [{ role: 'user', content: p.text }] })).length).toBe(n);
    }
    // Too short for the chat rendering: raised to the minimum.
    expect(new PromptFactory('chat', 1, 9).build(0, 3, 0, rng).tokens).toBe(CHAT_TEMPLATE_TOKENS + 1);
  });

  it('prompts are unique right after the shared prefix, which is common to a group', () => {
    const f = new PromptFactory('completions', 1, 123, { groups: 2, prefixTokens: 20 });
    const rng = new Rng(1);
    const words = Array.from({ length: 1000 }, (_, i) => f.build(i, 40, i % 2, rng).text.split(' '));
    expect(new Set(words.map((items) => items.slice(0, 25).join(' '))).size).toBe(1000);
    expect(words[0]!.slice(0, 20)).toEqual(words[2]!.slice(0, 20));
    expect(words[0]!.slice(0, 20)).not.toEqual(words[1]!.slice(0, 20));
    expect(f.minTokens).toBe(21);
    // Another run (another nonce) of the same seed shares the prefixes but not the prompts.
    const g = new PromptFactory('completions', 1, 124, { groups: 2, prefixTokens: 20 });
    const other = g.build(0, 40, 0, new Rng(1)).text.split(' ');
    expect(other.slice(0, 20)).toEqual(words[0]!.slice(0, 20));
    expect(other.slice(0, 25)).not.toEqual(words[0]!.slice(0, 25));
  });

  it('inference paths accept base URLs with or without /v1', () => {
    expect(inferencePath('http://h:1', 'chat')).toBe('/v1/chat/completions');
    expect(inferencePath('http://h:1/v1/', 'completions')).toBe('/v1/completions');
    expect(inferencePath('http://h:1/prefix', 'completions')).toBe('/prefix/v1/completions');
  });
});

describe('progress', () => {
  it('a bar with done/total, rate, in-flight, failures and elapsed time', () => {
    const line = progressLine({ done: 5, total: 10, failures: 1, inFlight: 2, elapsedSeconds: 2.5 }, true);
    expect(line).toContain(' 50% ');
    expect(line).toContain('5/10 requests | 2.00 req/s | 2 in flight | 1 failed | 2.5s');
    expect(progressLine({ done: 3, failures: 0, inFlight: 0, elapsedSeconds: 3, durationSeconds: 6 }, false)).toBe(
      'loadgen: 3 requests | 1.00 req/s | 0 in flight | 0 failed | 3.0/6.0s',
    );
  });

  it('rewrites one line on a TTY, ends with a newline', () => {
    let out = '';
    const stream = Object.assign(
      new Writable({
        write(chunk, _enc, cb) {
          out += String(chunk);
          cb();
        },
      }),
      { isTTY: true },
    );
    const p = new Progress(stream, () => ({ done: 1, total: 2, failures: 0, inFlight: 1, elapsedSeconds: 1 }), 60_000);
    p.stop();
    expect(out.startsWith('\r')).toBe(true);
    expect(out.endsWith('\n')).toBe(true);
    expect(out).toContain('1/2 requests');
  });
});
