import { describe, expect, it } from 'vitest';
import { LatencyModel, SeededRandom, simConfig, startSimulator, type LatencySettings } from '../../src/sim/index.js';
import { metricsText, metricValue, postJson } from '../helpers.js';

const base: LatencySettings = {
  latencyCalculator: '',
  timeToFirstToken: 0,
  timeToFirstTokenStdDev: 0,
  interTokenLatency: 0,
  interTokenLatencyStdDev: 0,
  prefillOverhead: 0,
  prefillTimePerToken: 0,
  prefillTimeStdDev: 0,
  kvCacheTransferLatency: 0,
  kvCacheTransferLatencyStdDev: 0,
  kvCacheTransferTimePerToken: 0,
  kvCacheTransferTimeStdDev: 0,
  timeFactorUnderLoad: 1,
  maxNumSeqs: 5,
  latencyMsTruncation: false,
};

const model = (settings: Partial<LatencySettings>, seed = 42) => new LatencyModel({ ...base, ...settings }, new SeededRandom(seed));

describe('latency calculators', () => {
  it('constant: TTFT and KV transfer are the configured constants', () => {
    const m = model({ latencyCalculator: 'constant', timeToFirstToken: 100, kvCacheTransferLatency: 7, prefillTimePerToken: 99 });
    expect(m.prefillMs({ promptTokens: 1000, cachedTokens: 0, running: 1 })).toBe(100);
    expect(m.kvTransferMs(1000)).toBe(7);
  });

  it('per-token: overhead + uncached tokens x per-token, cached tokens shorten prefill', () => {
    const m = model({ latencyCalculator: 'per-token', prefillOverhead: 30, prefillTimePerToken: 0.25, kvCacheTransferTimePerToken: 0.003, timeToFirstToken: 500 });
    expect(m.prefillMs({ promptTokens: 1000, cachedTokens: 0, running: 1 })).toBeCloseTo(30 + 250, 9);
    expect(m.prefillMs({ promptTokens: 1000, cachedTokens: 800, running: 1 })).toBeCloseTo(30 + 50, 9);
    // KV transfer covers the full prompt.
    expect(m.kvTransferMs(1000)).toBeCloseTo(3, 9);
  });

  it('legacy "" calculator: per-token when time-to-first-token and its std-dev are 0, else constant', () => {
    expect(model({ prefillOverhead: 10, prefillTimePerToken: 1 }).prefillMs({ promptTokens: 5, cachedTokens: 0, running: 1 })).toBe(15);
    expect(model({ timeToFirstToken: 40, prefillOverhead: 10, prefillTimePerToken: 1 }).prefillMs({ promptTokens: 5, cachedTokens: 0, running: 1 })).toBe(40);
    expect(model({ kvCacheTransferTimePerToken: 2 }).kvTransferMs(10)).toBe(20);
    expect(model({ kvCacheTransferLatency: 9, kvCacheTransferTimePerToken: 2 }).kvTransferMs(10)).toBe(9);
  });

  it('load factor: 1 + (factor-1)(running-1)/(max-num-seqs-1), on TTFT and ITL but never on KV transfer', () => {
    const m = model({ latencyCalculator: 'constant', timeToFirstToken: 100, interTokenLatency: 10, kvCacheTransferLatency: 50, timeFactorUnderLoad: 3, maxNumSeqs: 5 });
    expect(m.loadFactor(1)).toBe(1);
    expect(m.loadFactor(3)).toBe(2);
    expect(m.loadFactor(5)).toBe(3);
    expect(m.prefillMs({ promptTokens: 1, cachedTokens: 0, running: 3 })).toBe(200);
    expect(m.interTokenMs(5)).toBe(30);
    expect(m.kvTransferMs(1)).toBe(50);
    const pt = model({ latencyCalculator: 'per-token', prefillOverhead: 10, prefillTimePerToken: 1, kvCacheTransferTimePerToken: 1, timeFactorUnderLoad: 2, maxNumSeqs: 3 });
    expect(pt.prefillMs({ promptTokens: 10, cachedTokens: 0, running: 3 })).toBe(40);
    expect(pt.kvTransferMs(10)).toBe(10);
    expect(model({ timeFactorUnderLoad: 5, maxNumSeqs: 1 }).loadFactor(1)).toBe(1);
  });

  it('std-dev: a fixed seed gives a fixed sequence, samples clamped to [0.3, 1.7] x mean', () => {
    const settings = { latencyCalculator: 'constant' as const, timeToFirstToken: 100, timeToFirstTokenStdDev: 30 };
    const a = model(settings, 9);
    const b = model(settings, 9);
    const seqA = Array.from({ length: 200 }, () => a.prefillMs({ promptTokens: 1, cachedTokens: 0, running: 1 }));
    const seqB = Array.from({ length: 200 }, () => b.prefillMs({ promptTokens: 1, cachedTokens: 0, running: 1 }));
    expect(seqA).toEqual(seqB);
    expect(Math.min(...seqA)).toBeGreaterThanOrEqual(30);
    expect(Math.max(...seqA)).toBeLessThanOrEqual(170);
    const mean = seqA.reduce((acc, value) => acc + value, 0) / seqA.length;
    expect(mean).toBeGreaterThan(90);
    expect(mean).toBeLessThan(110);
    expect(new Set(seqA).size).toBeGreaterThan(100);
    expect(model(settings, 10).prefillMs({ promptTokens: 1, cachedTokens: 0, running: 1 })).not.toBe(seqA[0]);
  });

  it('upstream millisecond truncation makes sub-ms totals 0 only when asked for', () => {
    const s = { latencyCalculator: 'per-token' as const, kvCacheTransferTimePerToken: 0.003 };
    expect(model({ ...s, latencyMsTruncation: true }).kvTransferMs(256)).toBe(0);
    expect(model(s).kvTransferMs(256)).toBeCloseTo(0.768, 9);
  });
});

describe('latency over HTTP', () => {
  it('TTFT, ITL and e2e histograms reflect the configured latencies (simulated time, time-scale applied to sleeps only)', async () => {
    const sim = await startSimulator(
      simConfig({ host: '127.0.0.1', port: 0, model: ['m'], mode: 'echo', seed: 1, timeToFirstToken: 400, interTokenLatency: 100, timeScale: 0.1 }),
    );
    try {
      const started = performance.now();
      const r = await postJson(`${sim.url}/v1/completions`, { model: 'm', prompt: 'a b c d e' });
      const wall = performance.now() - started;
      expect(r.status).toBe(200);
      // Simulated 400ms + 4 x 100ms = 800ms, slept at a tenth of it: at least 80 ms of wall time (timers never fire
      // early, bar Node's 1 ms), and the histograms report simulated time: at most the wall time × 10.
      expect(wall).toBeGreaterThanOrEqual(75);
      const text = await metricsText(sim.url);
      const ttft = metricValue(text, 'vllm:time_to_first_token_seconds_sum', { model_name: 'm' })!;
      expect(ttft).toBeGreaterThanOrEqual(0.39);
      expect(ttft).toBeLessThanOrEqual((wall / 0.1) / 1000);
      expect(metricValue(text, 'vllm:inter_token_latency_seconds_sum', { model_name: 'm' })).toBeCloseTo(0.4, 6);
      expect(metricValue(text, 'vllm:inter_token_latency_seconds_count', { model_name: 'm' })).toBe(4);
      expect(metricValue(text, 'vllm:e2e_request_latency_seconds_sum', { model_name: 'm' })).toBeGreaterThanOrEqual(0.79);
    } finally {
      await sim.close();
    }
  });
});
