import { describe, expect, it } from 'vitest';
import { costBasedPdDecider, costBasedPdDeciderParams, type CostBasedPdDeciderParams } from '../../src/decider/cost-based-pd-decider.js';
import type { DeciderEndpoint, DecisionInput, EndpointMetrics } from '../../src/decider/index.js';

function metrics(match: Partial<EndpointMetrics> = {}): EndpointMetrics {
  return { waitingQueueSize: 0, runningRequests: 0, kvCacheUsage: 0, cacheBlockSize: 16, cacheNumBlocks: 1000, updatedAt: 1, stale: false, ...match };
}

function ep(id: string, match: Partial<EndpointMetrics> = {}): DeciderEndpoint {
  return { id, address: id, port: 8000, hostPort: `${id}:8000`, labels: {}, metrics: metrics(match) };
}

interface Scenario {
  prompt: number;
  cachedTokens?: number;
  /** Tokens each prefill endpoint (by index) holds, for input.prefixMatch. */
  prefillCachedTokens?: number[];
  decode?: Partial<EndpointMetrics> | null;
  prefill?: Array<Partial<EndpointMetrics>>;
  now?: number;
}

function input(scenario: Scenario): DecisionInput {
  return {
    request: { requestId: 'r', model: 'm', targetModel: 'm', tokenCount: scenario.prompt, prompts: [], headers: {} },
    // Each scenario is one scrape: metrics stamped with its time.
    decode: scenario.decode === null ? undefined : { endpoint: ep('decode', { updatedAt: scenario.now ?? 1, ...scenario.decode }), prefix: { matchedBlocks: (scenario.cachedTokens ?? 0) / 16, totalBlocks: Math.ceil(scenario.prompt / 16), blockSizeTokens: 16 } },
    prefillCandidates: (scenario.prefill ?? [{}]).map((match, i) => ep(`prefill${i}`, { updatedAt: scenario.now ?? 1, ...match })),
    prefixMatch: scenario.prefillCachedTokens
      ? (id: string) => {
          const i = Number(/^prefill(\d+)$/.exec(id)?.[1] ?? NaN);
          const cached = scenario.prefillCachedTokens![i];
          return cached === undefined ? undefined : { matchedBlocks: cached / 16, totalBlocks: Math.ceil(scenario.prompt / 16), blockSizeTokens: 16 };
        }
      : undefined,
    now: () => scenario.now ?? 0,
  };
}

/** A decider with fixed costs (no calibration) so each boundary can be computed by hand. */
function decider(value: Partial<CostBasedPdDeciderParams> = {}) {
  const params = costBasedPdDeciderParams.parse({
    prefillMsPerToken: 1,
    prefillOverheadMs: 0,
    batchSlowdownPerRequest: 0,
    kvTransferMsPerToken: 0,
    kvTransferOverheadMs: 10,
    margin: 0,
    minUncachedTokens: 0,
    calibrate: false,
    localInterferenceWeight: 0,
    ...value,
  });
  return costBasedPdDecider.create('cost-based-pd-decider', 'cost', params);
}

describe('cost-based-pd-decider: parameters', () => {
  it('has documented defaults and rejects bad values at load time', () => {
    const d = costBasedPdDeciderParams.parse({});
    expect(d).toMatchObject({ prefillMsPerToken: 0.25, prefillOverheadMs: 30, margin: 0.1, localInterferenceWeight: 1, minUncachedTokens: 32, decodeBusyKvUsage: 0.9, calibrate: true });
    expect(costBasedPdDeciderParams.safeParse({ localInterferenceWeight: -1 }).success).toBe(false);
    expect(costBasedPdDeciderParams.safeParse({ margin: 0.95 }).success).toBe(false);
    expect(costBasedPdDeciderParams.safeParse({ prefillMsPerToken: 0 }).success).toBe(false);
    expect(costBasedPdDeciderParams.safeParse({ bypassUncachedRatio: 2 }).success).toBe(false);
  });
});

describe('cost-based-pd-decider: cost comparison', () => {
  it('remote wins when the decode pod has prefill work queued and the prefill pool is idle', () => {
    // local = 2 waiting x 100 tokens + 100 = 300 ms; remote = 100 + 10 transfer = 110 ms
    const r = decider().decide(input({ prompt: 100, decode: { waitingQueueSize: 2 } }));
    expect(r).toMatchObject({ disaggregate: true, reason: 'remote-faster', detail: { localMs: 300, remoteMs: 110, uncachedTokens: 100 } });
  });

  it('local wins when the prompt is mostly cached on the decode pick', () => {
    // local = 16 ms (16 uncached); remote = 100 + 10 = 110 ms
    const r = decider().decide(input({ prompt: 100, cachedTokens: 84 }));
    expect(r).toMatchObject({ disaggregate: false, reason: 'local-faster', detail: { localMs: 16, remoteMs: 110 } });
  });

  it('the margin boundary: remote must beat local x (1 - margin) strictly', () => {
    // local = queue 1 x 100 + 100 = 200; remote = 100 + kv; margin 0.25 -> remote must be < 150
    expect(decider({ margin: 0.25, kvTransferOverheadMs: 50 }).decide(input({ prompt: 100, decode: { waitingQueueSize: 1 } }))).toMatchObject({ disaggregate: false, reason: 'local-faster' });
    expect(decider({ margin: 0.25, kvTransferOverheadMs: 49.9 }).decide(input({ prompt: 100, decode: { waitingQueueSize: 1 } }))).toMatchObject({ disaggregate: true, reason: 'remote-faster' });
  });

  it('picks the prefill endpoint with the least work ahead', () => {
    const r = decider().decide(input({ prompt: 100, decode: { waitingQueueSize: 5 }, prefill: [{ waitingQueueSize: 3 }, { waitingQueueSize: 1 }, { waitingQueueSize: 2 }] }));
    expect(r.detail).toMatchObject({ prefillEndpoint: 'prefill1:8000', prefillQueueMs: 100 });
  });

  it('counts half the work of the prefills in progress on a prefill endpoint (its running requests), not on the decode pick', () => {
    // prefill: 4 running x 100 tokens / 2 = 200 ms ahead; remote = 200 + 100 + 10 = 310; local = 1 waiting x 100 + 100 = 200
    const r = decider().decide(input({ prompt: 100, decode: { waitingQueueSize: 1, runningRequests: 50 }, prefill: [{ runningRequests: 4 }] }));
    expect(r).toMatchObject({ disaggregate: false, reason: 'local-faster', detail: { prefillQueueMs: 200, remoteMs: 310, localMs: 200 } });
  });

  it('charges the remote side only for what the prefill endpoint does not hold, and picks by it', () => {
    // prompt 1000, decode pick holds 0: local 1000 (+ 1 waiting x 1000 = 2000). prefill0 holds 0 (remote 1010), prefill1 holds 800 (remote 210)
    const r = decider().decide(input({ prompt: 1000, decode: { waitingQueueSize: 1 }, prefill: [{}, {}], prefillCachedTokens: [0, 800] }));
    expect(r).toMatchObject({ disaggregate: true, reason: 'remote-faster', detail: { prefillEndpoint: 'prefill1:8000', prefillComputeTokens: 200, remoteMs: 210 } });
    // Without a prefix index the full prompt is charged.
    expect(decider().decide(input({ prompt: 1000, decode: { waitingQueueSize: 1 }, prefill: [{}, {}] })).detail).toMatchObject({ prefillComputeTokens: 1000, remoteMs: 1010 });
  });

  it('decode interference: remote wins, though not faster, when it beats local TTFT + the stall of the decodes running there', () => {
    // local = 100 (idle queue), remote = 100 + 10 = 110: not faster. Busy decode pick (running 3): interference 100 x w.
    const busy = { prompt: 100, decode: { runningRequests: 3 } };
    expect(decider({ localInterferenceWeight: 1 }).decide(input(busy))).toMatchObject({ disaggregate: true, reason: 'decode-interference', detail: { localMs: 100, remoteMs: 110, interferenceMs: 100 } });
    // Boundary: remote < (local + w x work) strictly: w = 0.1 -> 110 is not < 110
    expect(decider({ localInterferenceWeight: 0.1 }).decide(input(busy))).toMatchObject({ disaggregate: false, reason: 'local-faster' });
    expect(decider({ localInterferenceWeight: 0.11 }).decide(input(busy))).toMatchObject({ disaggregate: true, reason: 'decode-interference' });
    // An idle decode pick suffers no stall: local wins.
    expect(decider({ localInterferenceWeight: 1 }).decide(input({ prompt: 100 }))).toMatchObject({ disaggregate: false, reason: 'local-faster', detail: { interferenceMs: 0 } });
    // A prefill backlog larger than the stall hands the prefill back to the decode pod: queue 2 x 100 -> remote 310 > 200.
    expect(decider({ localInterferenceWeight: 1 }).decide(input({ ...busy, prefill: [{ waitingQueueSize: 2 }] }))).toMatchObject({ disaggregate: false, reason: 'local-faster' });
  });

  it('batch slowdown scales prefill work with the running requests', () => {
    // decode running 100 -> local work x2 = 200; remote = 100 + 10
    const d = decider({ batchSlowdownPerRequest: 0.01 });
    expect(d.decide(input({ prompt: 100, decode: { runningRequests: 100 } }))).toMatchObject({ disaggregate: true, detail: { localMs: 200, remoteMs: 110 } });
    expect(d.decide(input({ prompt: 100, decode: { runningRequests: 5 } }))).toMatchObject({ disaggregate: false, detail: { localMs: 105 } });
  });
});

describe('cost-based-pd-decider: bounds, each at its boundary', () => {
  const busyDecode = { waitingQueueSize: 10 };

  it('no decode endpoint or no prefill endpoint: local', () => {
    expect(decider().decide(input({ prompt: 100, decode: null }))).toMatchObject({ disaggregate: false, reason: 'no-decode-endpoint' });
    expect(decider().decide(input({ prompt: 100, prefill: [] }))).toMatchObject({ disaggregate: false, reason: 'no-prefill-endpoint' });
  });

  it('minUncachedTokens: below stays local, equal goes to the cost model', () => {
    const d = decider({ minUncachedTokens: 64 });
    expect(d.decide(input({ prompt: 63, decode: busyDecode }))).toMatchObject({ disaggregate: false, reason: 'below-threshold' });
    expect(d.decide(input({ prompt: 64, decode: busyDecode }))).toMatchObject({ disaggregate: true, reason: 'remote-faster' });
    expect(d.decide(input({ prompt: 96, cachedTokens: 96, decode: busyDecode }))).toMatchObject({ disaggregate: false, reason: 'cached' });
  });

  it('decode-busy veto: KV usage at the threshold forces remote prefill, even when the cost model says local', () => {
    const d = decider({ decodeBusyKvUsage: 0.8 });
    expect(d.decide(input({ prompt: 100, cachedTokens: 80, decode: { kvCacheUsage: 0.8 } }))).toMatchObject({ disaggregate: true, reason: 'decode-busy' });
    expect(d.decide(input({ prompt: 100, cachedTokens: 80, decode: { kvCacheUsage: 0.79 } }))).toMatchObject({ disaggregate: false, reason: 'local-faster' });
  });

  it('decode-busy vetoes the ISL and prefill-busy bypasses', () => {
    const d = decider({ decodeBusyKvUsage: 0.8, bypassUncachedTokens: 2048, prefillBusyWaiting: 1 });
    expect(d.decide(input({ prompt: 100, decode: { kvCacheUsage: 0.9 }, prefill: [{ waitingQueueSize: 5 }] }))).toMatchObject({ disaggregate: true, reason: 'decode-busy' });
  });

  it('ISL bypass (Dynamo isl_bounding): uncached below both bounds stays local; at either bound the cost model decides', () => {
    const d = decider({ bypassUncachedTokens: 2048, bypassUncachedRatio: 0.7 });
    // uncached 1000 of 4000 (ratio 0.25): both bounds hold -> local
    expect(d.decide(input({ prompt: 4000, cachedTokens: 3008, decode: busyDecode }))).toMatchObject({ disaggregate: false, reason: 'cached' });
    // uncached exactly 2048: token bound fails -> cost model
    expect(d.decide(input({ prompt: 4096, cachedTokens: 2048, decode: busyDecode }))).toMatchObject({ disaggregate: true, reason: 'remote-faster' });
    // ratio exactly 0.7: 700 of 1000 uncached -> cost model
    expect(d.decide(input({ prompt: 1000, cachedTokens: 300, decode: busyDecode }))).toMatchObject({ disaggregate: true, reason: 'remote-faster' });
    // one bound alone
    expect(decider({ bypassUncachedTokens: 512 }).decide(input({ prompt: 511, decode: busyDecode }))).toMatchObject({ reason: 'cached' });
    expect(decider({ bypassUncachedTokens: 512 }).decide(input({ prompt: 512, decode: busyDecode }))).toMatchObject({ reason: 'remote-faster' });
  });

  it('prefill-busy bypass: by estimated queue wait or by waiting requests, at the threshold', () => {
    // best prefill queue: 2 waiting x 100 tokens x 1 ms = 200 ms
    const byQueue = (ms: number) => decider({ prefillBusyQueueMs: ms }).decide(input({ prompt: 100, decode: { waitingQueueSize: 20 }, prefill: [{ waitingQueueSize: 2 }] }));
    expect(byQueue(200)).toMatchObject({ disaggregate: false, reason: 'prefill-busy' });
    expect(byQueue(201)).toMatchObject({ disaggregate: true, reason: 'remote-faster' });
    const byWaiting = (count: number) => decider({ prefillBusyWaiting: count }).decide(input({ prompt: 100, decode: { waitingQueueSize: 20 }, prefill: [{ waitingQueueSize: 2 }] }));
    expect(byWaiting(2)).toMatchObject({ reason: 'prefill-busy' });
    expect(byWaiting(3)).toMatchObject({ reason: 'remote-faster' });
  });

  it('stale metrics fall back to a token threshold', () => {
    const d = decider({ staleNonCachedTokens: 256 });
    expect(d.decide(input({ prompt: 256, decode: { stale: true } }))).toMatchObject({ disaggregate: true, reason: 'stale-metrics' });
    expect(d.decide(input({ prompt: 255, decode: { stale: true } }))).toMatchObject({ disaggregate: false, reason: 'stale-metrics' });
    expect(d.decide(input({ prompt: 300, prefill: [{ stale: true }, { stale: true }] }))).toMatchObject({ disaggregate: true, reason: 'stale-metrics' });
  });
});

describe('cost-based-pd-decider: calibration from model-server metrics', () => {
  it('learns the per-token prefill cost from prefill pods and the KV transfer cost from decode pods', () => {
    const d = costBasedPdDecider.create('cost-based-pd-decider', 'cost', costBasedPdDeciderParams.parse({ prefillOverheadMs: 10, kvTransferOverheadMs: 0, minUncachedTokens: 0, calibrationHalfLifeMs: 1000 }));
    const step = (i: number) => ({
      // Prefill pod: each interval 10 prefills of 1000 tokens, none cached, 10 ms overhead + 0.5 ms/token each.
      prefill: [{ prefillTime: { sum: (i * 10 * 510) / 1000, count: i * 10 }, promptTokens: { sum: i * 10 * 1000, count: i * 10 }, prefixCacheHits: 0 }],
      // Decode pod: 10 pulled prompts of 1000 tokens per interval, 4 ms each.
      decode: { prefillTime: { sum: (i * 10 * 4) / 1000, count: i * 10 }, promptTokens: { sum: i * 10 * 1000, count: i * 10 }, kvTransferTime: { sum: (i * 10 * 4) / 1000, count: i * 10 } },
    });
    let last;
    for (let i = 1; i <= 20; i++) last = d.decide(input({ prompt: 1000, now: i * 1000, ...step(i) }));
    expect(d.calibration.prefillMsPerToken.get()).toBeCloseTo(0.5, 6);
    expect(d.calibration.kvMsPerToken.get()).toBeCloseTo(0.004, 6);
    expect(d.calibration.meanComputedTokens('prefill0')).toBeCloseTo(1000, 6);
    expect(last!.detail).toMatchObject({ msPerToken: 0.5, calibrated: true, kvTransferMs: 4 });
  });

  it('the queue estimate charges each request for the tokens it computed (prompt less prefix-cache hits)', () => {
    const d = costBasedPdDecider.create('x', 'x', costBasedPdDeciderParams.parse({ prefillOverheadMs: 0, prefillMsPerToken: 1, calibrate: true, calibrationHalfLifeMs: 1000, localInterferenceWeight: 0 }));
    // Each interval: 10 prompts of 1000 tokens, 600 of them prefix-cache hits, 400 ms each.
    const at = (i: number) => ({ prefillTime: { sum: i * 10 * 0.4, count: i * 10 }, promptTokens: { sum: i * 10 * 1000, count: i * 10 }, prefixCacheHits: i * 10 * 600, waitingQueueSize: 2 });
    let last;
    for (let i = 1; i <= 5; i++) last = d.decide(input({ prompt: 100, now: i * 1000, prefill: [at(i)] }));
    expect(d.calibration.meanComputedTokens('prefill0')).toBeCloseTo(400, 6);
    // 2 waiting x 400 computed tokens x 1 ms
    expect(last!.detail).toMatchObject({ prefillQueueMs: 800 });
  });

  it('learns only from new scrapes, and forgets endpoints that left the pool', () => {
    const d = costBasedPdDecider.create('x', 'x', costBasedPdDeciderParams.parse({ prefillOverheadMs: 0, calibrationHalfLifeMs: 1000 }));
    const m = (count: number, updatedAt: number) => ({ prefillTime: { sum: count * 0.1, count }, promptTokens: { sum: count * 100, count }, updatedAt });
    d.decide(input({ prompt: 100, now: 1_000, prefill: [m(10, 1_000)] }));
    d.decide(input({ prompt: 100, now: 2_000, prefill: [m(20, 2_000)] }));
    expect(d.calibration.prefillMsPerToken.get()).toBeCloseTo(1, 6);
    // The same scrape seen again (counters changed under the same stamp cannot happen): nothing new is learnt.
    d.decide(input({ prompt: 100, now: 2_500, prefill: [m(1000, 2_000)] }));
    expect(d.calibration.prefillMsPerToken.get()).toBeCloseTo(1, 6);
    expect(d.calibration.trackedEndpoints).toBe(1);
    expect(d.calibration.meanComputedTokens('prefill0')).toBeCloseTo(100, 6);
    // prefill0 leaves the pool; an hour later a scrape of another prefill endpoint prunes what was learnt about it.
    const later = 3_600_000;
    const other = { id: 'other', address: 'o', port: 1, hostPort: 'o:1', labels: {}, metrics: { waitingQueueSize: 0, runningRequests: 0, kvCacheUsage: 0, cacheBlockSize: 16, cacheNumBlocks: 1, stale: false, ...m(5, later) } };
    d.decide({ ...input({ prompt: 100, now: later }), prefillCandidates: [other] });
    expect(d.calibration.trackedEndpoints).toBe(1);
    expect(d.calibration.meanComputedTokens('prefill0')).toBeUndefined();
  });

  it('follows a change in speed, and ignores counter resets', () => {
    const d = costBasedPdDecider.create('x', 'x', costBasedPdDeciderParams.parse({ prefillOverheadMs: 0, calibrationHalfLifeMs: 1000 }));
    let t = 0;
    let sum = 0;
    let count = 0;
    const feed = (msPerToken: number) => {
      sum += (10 * 100 * msPerToken) / 1000;
      count += 10;
      t += 1000;
      d.decide(input({ prompt: 100, now: t, prefill: [{ prefillTime: { sum, count }, promptTokens: { sum: count * 100, count } }] }));
    };
    for (let i = 0; i < 10; i++) feed(1);
    expect(d.calibration.prefillMsPerToken.get()).toBeCloseTo(1, 3);
    for (let i = 0; i < 15; i++) feed(0.2);
    expect(d.calibration.prefillMsPerToken.get()!).toBeLessThan(0.25);
    // Restart: counters drop; the sample is skipped rather than read as a negative cost.
    sum = 0;
    count = 0;
    const before = d.calibration.prefillMsPerToken.get();
    feed(5);
    expect(d.calibration.prefillMsPerToken.get()).toBe(before);
  });
});
