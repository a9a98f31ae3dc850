/**
 * `cost-based-pd-decider`: disaggregate when remote prefill is expected to give the earlier first token.
 *
 * For the decode pick and each eligible prefill endpoint it estimates time to first token from the scraped metrics:
 *
 *   work(ep, tokens)  = (prefillOverheadMs + tokens × msPerToken) × (1 + batchSlowdownPerRequest × running(ep))
 *   queue(decode)     = waiting(decode) × work(decode, meanComputedTokens(decode))
 *   queue(p)          = (waiting(p) + running(p) / 2) × work(p, meanComputedTokens(p))      p a prefill endpoint
 *   local             = queue(decode) + work(decode, uncached)            uncached = prompt − cached on the decode pick
 *   remote            = min over prefill endpoints of [queue(p) + work(p, prompt − cached on p)] + kvTransferMs(prompt)
 *   kvTransferMs(n)   = kvTransferOverheadMs + n × kvTransferMsPerToken
 *   interference      = localInterferenceWeight × work(decode, uncached)   when the decode pick is busy, else 0
 *
 * and disaggregates when remote < local × (1 − margin) (`remote-faster`); or, when remote prefill is not faster,
 * when remote < (local + interference) × (1 − margin) (`decode-interference`); else not (`local-faster`).
 *
 * Prefill is compute-bound, so an endpoint's queue is the prefill work ahead of the request: its waiting requests (vLLM
 * V1 counts a request as running once a step has taken its first chunk) and, on a prefill endpoint, about half the work
 * of the prefills in progress (its running requests). Requests are charged for the tokens they compute: the mean
 * prompt less prefix-cache hits. The remote side pays for the prompt less what the prefill endpoint is believed to
 * hold (the approximate prefix index, when the EPP has one) and for moving the whole prompt's KV cache.
 *
 * The interference term is what time-to-first-token alone misses: a prefill run on a decode pod stalls every
 * sequence decoding there, and every request queued behind it, for its duration (the inter-token latency spike P/D
 * exists to remove). Charged once (not per stalled sequence), it makes remote prefill the choice while the prefill pool
 * keeps up (remote no slower than local + the stall) and hands prefills back to decode pods as the prefill queue
 * grows, instead of letting it grow without bound as a fixed threshold does. 0 optimises TTFT alone.
 *
 * Calibration (`calibrate: true`, the default): msPerToken is learnt from the model servers' own counters, as an
 * exponentially weighted average of (Δ vllm:request_prefill_time_seconds_sum − Δcount × overhead) / (Δ prompt tokens −
 * Δ prefix-cache hits) between scrapes, and kvTransferMsPerToken from Δ vllm:nixl_xfer_time_seconds on decode pods,
 * so the estimate follows the real hardware and load. Configured values are the starting point and the fallback.
 *
 * Bounds, checked before the cost model, in this order (Dynamo's conditional disaggregation, plus our floor):
 * 1. `minUncachedTokens`: an uncached suffix shorter than this is always prefilled locally (`below-threshold`).
 * 2. Decode-busy veto: decode KV usage ≥ `decodeBusyKvUsage` → remote prefill (`decode-busy`), so a saturated decode
 *    pod is not also asked to prefill. It vetoes the bypasses below.
 * 3. ISL bypass: uncached < `bypassUncachedTokens` AND uncached/prompt < `bypassUncachedRatio` → local (`cached`);
 *    Dynamo's `isl_bounding` is 2048 and 0.7. 0 turns a bound off; with one bound set, it alone decides.
 * 4. Prefill-busy bypass: the best prefill endpoint's estimated queue wait ≥ `prefillBusyQueueMs`, or its waiting
 *    requests ≥ `prefillBusyWaiting` → local (`prefill-busy`).
 * 5. Stale metrics on the decode pick or every prefill endpoint: fall back to `uncached ≥ staleNonCachedTokens`
 *    (`stale-metrics`), since the cost model would be guessing.
 */
import { z } from 'zod';
import type { DeciderDefinition, DeciderEndpoint, Decision, DecisionInput, EndpointMetrics } from './types.js';

const nonNegative = z.number().min(0, 'must be >= 0');
const nonNegativeInt = z.number().int().min(0, 'must be >= 0');

export const costBasedPdDeciderParams = z.object({
  prefillMsPerToken: z.number().positive('must be > 0').default(0.25),
  prefillOverheadMs: nonNegative.default(30),
  batchSlowdownPerRequest: nonNegative.default(0.004),
  kvTransferMsPerToken: nonNegative.default(0.003),
  kvTransferOverheadMs: nonNegative.default(2),
  margin: z.number().min(0, 'must be >= 0').max(0.9, 'must be <= 0.9').default(0.1),
  localInterferenceWeight: nonNegative.default(1),
  minUncachedTokens: nonNegativeInt.default(32),
  decodeBusyKvUsage: z.number().min(0).max(1.01, 'must be <= 1 (a share of KV capacity), or above 1 to disable').default(0.9),
  bypassUncachedTokens: nonNegativeInt.default(0),
  bypassUncachedRatio: z.number().min(0).max(1, 'must be between 0 and 1').default(0),
  prefillBusyQueueMs: nonNegative.default(0),
  prefillBusyWaiting: nonNegativeInt.default(0),
  staleNonCachedTokens: nonNegativeInt.default(256),
  calibrate: z.boolean().default(true),
  calibrationHalfLifeMs: z.number().positive('must be > 0').default(30_000),
});

export type CostBasedPdDeciderParams = z.infer<typeof costBasedPdDeciderParams>;

interface Snapshot {
  /** The scrape these counters came from (EndpointMetrics.updatedAt). */
  updatedAt: number;
  /** When the endpoint was last seen by the decider. */
  seenAt: number;
  prefillSum: number;
  prefillCount: number;
  promptSum: number;
  promptCount: number;
  hits: number;
  xferSum: number;
  xferCount: number;
}

/** An exponentially weighted average whose weight decays with time, not with samples. */
class DecayingAverage {
  private value: number | undefined;
  private at = 0;

  constructor(private readonly halfLifeMs: number) {}

  add(sample: number, weight: number, now: number): void {
    if (!Number.isFinite(sample) || weight <= 0) return;
    if (this.value === undefined) {
      this.value = sample;
    } else {
      const decay = Math.pow(0.5, Math.max(0, now - this.at) / this.halfLifeMs);
      // Old knowledge fades with time; a sample carries more weight the more requests it covers.
      const keep = decay * (1 - Math.min(0.9, weight / 50));
      this.value = keep * this.value + (1 - keep) * sample;
    }
    this.at = now;
  }

  get(): number | undefined {
    return this.value;
  }
}

/** Learns per-token costs from the deltas of the model servers' cumulative counters between scrapes. */
export class CostCalibration {
  private readonly last = new Map<string, Snapshot>();
  readonly prefillMsPerToken: DecayingAverage;
  readonly kvMsPerToken: DecayingAverage;
  private readonly meanComputed = new Map<string, DecayingAverage>();

  constructor(
    private readonly halfLifeMs: number,
    private readonly overheadMs: number,
    private readonly kvOverheadMs: number,
    private readonly batchSlowdownPerRequest = 0,
  ) {
    this.prefillMsPerToken = new DecayingAverage(halfLifeMs);
    this.kvMsPerToken = new DecayingAverage(halfLifeMs);
  }

  private lastPrune = 0;

  /** Drops what was learnt about endpoints not seen for ten half-lives (pods that left the pool), at most once a minute. */
  private forgetGone(now: number): void {
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    const horizon = now - Math.max(10 * this.halfLifeMs, 60_000);
    for (const [id, snap] of this.last) {
      if (snap.seenAt < horizon) {
        this.last.delete(id);
        this.meanComputed.delete(id);
      }
    }
  }

  /** Endpoints the calibration holds state for (tests, debugging). */
  get trackedEndpoints(): number {
    return this.last.size;
  }

  /** Mean prompt tokens an endpoint computed per request (prompt less prefix-cache hits), as recently observed. */
  meanComputedTokens(id: string): number | undefined {
    return this.meanComputed.get(id)?.get();
  }

  observe(ep: DeciderEndpoint, now: number): void {
    const m = ep.metrics;
    if (m.stale || !m.prefillTime || !m.promptTokens) return;
    const prev = this.last.get(ep.id);
    // Counters change only when a scrape lands: most decisions between two scrapes have nothing to learn.
    if (prev && prev.updatedAt === m.updatedAt) {
      prev.seenAt = now;
      return;
    }
    this.forgetGone(now);
    const snap: Snapshot = {
      updatedAt: m.updatedAt,
      seenAt: now,
      prefillSum: m.prefillTime.sum,
      prefillCount: m.prefillTime.count,
      promptSum: m.promptTokens.sum,
      promptCount: m.promptTokens.count,
      hits: m.prefixCacheHits ?? 0,
      xferSum: m.kvTransferTime?.sum ?? 0,
      xferCount: m.kvTransferTime?.count ?? 0,
    };
    this.last.set(ep.id, snap);
    if (!prev || snap.promptCount < prev.promptCount || snap.prefillCount < prev.prefillCount) return; // first sight or restart
    const dCount = snap.promptCount - prev.promptCount;
    if (dCount <= 0) return;
    const dPrompt = snap.promptSum - prev.promptSum;
    const dHits = Math.max(0, snap.hits - prev.hits);
    let avg = this.meanComputed.get(ep.id);
    if (!avg) this.meanComputed.set(ep.id, (avg = new DecayingAverage(this.halfLifeMs)));
    avg.add(Math.max(0, dPrompt - dHits) / dCount, dCount, now);
    const dXferCount = snap.xferCount - prev.xferCount;
    const dPrefillCount = snap.prefillCount - prev.prefillCount;
    // Prefill time of requests whose KV came from a prefiller is transfer time, not compute: learn from pods that
    // computed their own prefills in this interval.
    if (dXferCount === 0 && dPrefillCount > 0) {
      const uncached = dPrompt - dHits;
      const computeMs = (snap.prefillSum - prev.prefillSum) * 1000 - dPrefillCount * this.overheadMs;
      // Remove the batch slowdown the pod was under, so the sample is the unloaded cost the model scales again.
      const slowdown = 1 + this.batchSlowdownPerRequest * m.runningRequests;
      if (uncached > 0 && computeMs > 0) this.prefillMsPerToken.add(computeMs / uncached / slowdown, dPrefillCount, now);
    }
    if (dXferCount > 0 && dPrompt > 0) {
      const xferMs = (snap.xferSum - prev.xferSum) * 1000 - dXferCount * this.kvOverheadMs;
      // Decode pods also serve local requests; the transfer average covers only pulled prompts.
      if (xferMs >= 0) this.kvMsPerToken.add(xferMs / dXferCount / Math.max(1, dPrompt / dCount), dXferCount, now);
    }
  }
}

export function createCostBasedDecider(type: string, name: string, params: CostBasedPdDeciderParams) {
  const calibration = new CostCalibration(params.calibrationHalfLifeMs, params.prefillOverheadMs, params.kvTransferOverheadMs, params.batchSlowdownPerRequest);
  const msPerToken = () => (params.calibrate ? (calibration.prefillMsPerToken.get() ?? params.prefillMsPerToken) : params.prefillMsPerToken);
  const kvMsPerToken = () => (params.calibrate ? (calibration.kvMsPerToken.get() ?? params.kvTransferMsPerToken) : params.kvTransferMsPerToken);
  const work = (metrics: EndpointMetrics, tokens: number) => (params.prefillOverheadMs + tokens * msPerToken()) * (1 + params.batchSlowdownPerRequest * metrics.runningRequests);
  /** Prefill work ahead of a new request on an endpoint; on prefill endpoints the running requests are prefills in progress. */
  const queue = (ep: DeciderEndpoint, fallbackTokens: number, prefillEndpoint: boolean) =>
    (ep.metrics.waitingQueueSize + (prefillEndpoint ? ep.metrics.runningRequests / 2 : 0)) * work(ep.metrics, calibration.meanComputedTokens(ep.id) ?? fallbackTokens);

  return {
    type,
    name,
    /** Exposed for tests and the debug header: what the decider currently believes. */
    calibration,
    decide(input: DecisionInput): Decision {
      const now = input.now();
      if (!input.decode) return { disaggregate: false, reason: 'no-decode-endpoint' };
      const candidates = input.prefillCandidates;
      if (params.calibrate) {
        calibration.observe(input.decode.endpoint, now);
        for (const c of candidates) calibration.observe(c, now);
      }
      if (candidates.length === 0) return { disaggregate: false, reason: 'no-prefill-endpoint' };
      const prompt = input.request.tokenCount;
      const pm = input.decode.prefix;
      const cached = pm ? Math.min(prompt, pm.matchedBlocks * pm.blockSizeTokens) : 0;
      const uncached = Math.max(0, prompt - cached);
      const base = { promptTokens: prompt, cachedTokens: cached, uncachedTokens: uncached };
      if (uncached < params.minUncachedTokens) return { disaggregate: false, reason: uncached === 0 && prompt > 0 ? 'cached' : 'below-threshold', detail: { ...base, minUncachedTokens: params.minUncachedTokens } };

      const decodeMetrics = input.decode.endpoint.metrics;
      if (!decodeMetrics.stale && decodeMetrics.kvCacheUsage >= params.decodeBusyKvUsage) {
        return { disaggregate: true, reason: 'decode-busy', detail: { ...base, decodeKvUsage: decodeMetrics.kvCacheUsage, decodeBusyKvUsage: params.decodeBusyKvUsage } };
      }
      const tokenBound = params.bypassUncachedTokens === 0 || uncached < params.bypassUncachedTokens;
      const ratioBound = params.bypassUncachedRatio === 0 || (prompt > 0 && uncached / prompt < params.bypassUncachedRatio);
      if ((params.bypassUncachedTokens > 0 || params.bypassUncachedRatio > 0) && tokenBound && ratioBound) {
        return { disaggregate: false, reason: 'cached', detail: { ...base, bypassUncachedTokens: params.bypassUncachedTokens, bypassUncachedRatio: params.bypassUncachedRatio } };
      }

      const fresh = candidates.filter((endpoint) => !endpoint.metrics.stale);
      if (decodeMetrics.stale || fresh.length === 0) {
        const yes = uncached >= params.staleNonCachedTokens;
        return { disaggregate: yes, reason: 'stale-metrics', detail: { ...base, staleNonCachedTokens: params.staleNonCachedTokens } };
      }
      let best: { ep: DeciderEndpoint; queueMs: number; totalMs: number; computeTokens: number } | undefined;
      for (const ep of fresh) {
        const pmp = input.prefixMatch?.(ep.id);
        const computeTokens = pmp ? Math.max(0, prompt - pmp.matchedBlocks * pmp.blockSizeTokens) : prompt;
        const queueMs = queue(ep, prompt, true);
        const totalMs = queueMs + work(ep.metrics, computeTokens);
        if (!best || totalMs < best.totalMs) best = { ep, queueMs, totalMs, computeTokens };
      }
      const busy = (params.prefillBusyQueueMs > 0 && best!.queueMs >= params.prefillBusyQueueMs) || (params.prefillBusyWaiting > 0 && best!.ep.metrics.waitingQueueSize >= params.prefillBusyWaiting);
      const transferMs = params.kvTransferOverheadMs + prompt * kvMsPerToken();
      const remoteMs = best!.totalMs + transferMs;
      const localWorkMs = work(decodeMetrics, uncached);
      const localMs = queue(input.decode.endpoint, uncached, false) + localWorkMs;
      const decodeBusy = decodeMetrics.runningRequests + decodeMetrics.waitingQueueSize > 0;
      const interferenceMs = decodeBusy ? params.localInterferenceWeight * localWorkMs : 0;
      const detail = {
        ...base,
        localMs: round(localMs),
        remoteMs: round(remoteMs),
        interferenceMs: round(interferenceMs),
        prefillComputeTokens: best!.computeTokens,
        prefillQueueMs: round(best!.queueMs),
        kvTransferMs: round(transferMs),
        prefillEndpoint: best!.ep.hostPort,
        msPerToken: round(msPerToken(), 5),
        calibrated: params.calibrate && calibration.prefillMsPerToken.get() !== undefined,
      };
      if (busy) return { disaggregate: false, reason: 'prefill-busy', detail: { ...detail, prefillBusyQueueMs: params.prefillBusyQueueMs, prefillBusyWaiting: params.prefillBusyWaiting } };
      if (remoteMs < localMs * (1 - params.margin)) return { disaggregate: true, reason: 'remote-faster', detail };
      if (remoteMs < (localMs + interferenceMs) * (1 - params.margin)) return { disaggregate: true, reason: 'decode-interference', detail };
      return { disaggregate: false, reason: 'local-faster', detail };
    },
  };
}

function round(count: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(count * f) / f;
}

export type CostBasedPdDecider = ReturnType<typeof createCostBasedDecider>;

export const costBasedPdDecider: DeciderDefinition<CostBasedPdDeciderParams, CostBasedPdDecider> = {
  params: costBasedPdDeciderParams,
  description:
    'Disaggregates when estimated remote TTFT (prefill queue + prefill + KV transfer) beats local TTFT on the decode pick, counting the stall a local prefill causes to the decodes running there, by a margin.',
  create: createCostBasedDecider,
};
