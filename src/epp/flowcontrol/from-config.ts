/**
 * From the EndpointPickerConfig's resolved `flowControl:` / `saturationDetector:` settings and the EPP flags to the
 * gate's settings and its saturation detector.
 *
 * Defaults (GAIE v1.5 `flowcontrol/registry/config.go`): band fairness `global-strict-fairness-policy`, ordering
 * `fcfs-ordering-policy`, band maxBytes 1G; no global bound; usage limit `static-usage-limit-policy` (ceiling 1). Where upstream sets no bound (a band's maxRequests, the
 * request TTL when the config gives none, the number of flows) pd-router's flags give one.
 *
 * Saturation (GAIE v1.5 `framework/plugins/flowcontrol/saturationdetector`):
 * - `utilization-detector` and GAIE v1.4's threshold form: the mean over endpoints of
 *   max(waiting / queueDepthThreshold, kvCacheUsage / kvCacheUtilThreshold), a stale endpoint counting 1; no endpoint
 *   is saturation 1.
 * - `concurrency-detector`: requests (or tokens) the gate dispatched and not yet completed, over maxConcurrency (or
 *   maxTokenConcurrency) times the number of endpoints; hybrid takes the larger of the two.
 */
import type { FlowControlSettings } from '../config/flow-control-section.js';
import type { Endpoint } from '../framework/types.js';
import { DEFAULT_FAIRNESS_POLICY, DEFAULT_ORDERING_POLICY } from '../plugins/flow-control/policies.js';
import {
  DEFAULT_EVICTION_CONFIRMATION_TIMEOUT_MS,
  DEFAULT_MAX_REVOCATIONS_PER_DECISION,
  EVICTION_ENGINE_RECLAIM_BUDGET_MS,
  EVICTION_LEADING_SENSOR_GRACE_MS,
  type EvictionSettings,
} from './eviction.js';
import type { BandSettings, FlowGateSettings, InFlight } from './gate.js';
import {
  FAIRNESS_POLICIES,
  ORDERING_POLICIES,
  priorityHoldback,
  programAwareFairness,
  type FairnessPolicy,
  type ProgramAwareObserver,
  softReflectiveCeiling,
  staticUsageLimit,
  type UsageLimitPolicy,
} from './policies.js';

export const DEFAULT_BAND_MAX_BYTES = 1_000_000_000;

export interface FlowControlFlags {
  flowControlRequestTtl: number;
  flowControlBandMaxRequests: number;
  flowControlMaxFlows: number;
  flowControlPollInterval: number;
  /** The scrape interval and staleness bound: with a scraped detector, eviction's confirmation grace (upstream's). */
  refreshMetricsInterval?: number;
  metricsStalenessThreshold?: number;
}

type BandSection = NonNullable<NonNullable<FlowControlSettings['section']>['defaultPriorityBand']>;

export function gateSettings(
  fc: FlowControlSettings,
  flags: FlowControlFlags,
  /** Where program-aware-fairness reports its gauges; called once, when a band uses the policy (upstream registers them with the plugin). */
  programAwareMetrics?: () => ProgramAwareObserver | undefined,
): FlowGateSettings {
  let programAwareObserver: ProgramAwareObserver | undefined;
  const sec = fc.section;
  // A policy pd-router does not implement falls back to upstream's default (the loader's warning names it).
  const typeOf = (ref: string | undefined, def: string, known: Readonly<Record<string, unknown>>) => {
    const t = ref ? (fc.plugins.get(ref)?.type ?? ref) : def;
    return t in known ? t : def;
  };
  // program-aware-fairness keeps state per program: one instance per plugin, shared by the bands naming it.
  const programAware = new Map<string, FairnessPolicy>();
  const statefulFairness = (ref: string | undefined): FairnessPolicy | undefined => {
    const plugin = ref ? fc.plugins.get(ref) : undefined;
    if (plugin?.type !== 'program-aware-fairness') return undefined;
    let policy = programAware.get(plugin.name);
    if (!policy) {
      programAwareObserver ??= programAwareMetrics?.();
      const s = plugin.flowControl.settings;
      policy = programAwareFairness(
        {
          evictionTtlSeconds: Number(s.evictionTtlSeconds),
          evictionSweepSeconds: Number(s.evictionSweepSeconds),
          lasWeightService: Number(s.lasWeightService),
          lasWeightHeadWait: Number(s.lasWeightHeadWait),
          lasHalfLifeSeconds: Number(s.lasHalfLifeSeconds),
        },
        Date.now,
        programAwareObserver,
      );
      programAware.set(plugin.name, policy);
    }
    return policy;
  };
  const band = (right: BandSection | undefined, template?: BandSettings): BandSettings => ({
    maxRequests: right?.maxRequests || template?.maxRequests || flags.flowControlBandMaxRequests,
    maxBytes: right?.maxBytes || template?.maxBytes || DEFAULT_BAND_MAX_BYTES,
    ...(right?.fairnessPolicyRef
      ? statefulFairness(right.fairnessPolicyRef)
        ? { fairness: 'program-aware-fairness', fairnessPolicy: statefulFairness(right.fairnessPolicyRef) }
        : { fairness: typeOf(right.fairnessPolicyRef, DEFAULT_FAIRNESS_POLICY, FAIRNESS_POLICIES) }
      : {
          fairness: template?.fairness ?? DEFAULT_FAIRNESS_POLICY,
          ...(template?.fairnessPolicy ? { fairnessPolicy: template.fairnessPolicy } : {}),
        }),
    ordering: right?.orderingPolicyRef
      ? typeOf(right.orderingPolicyRef, DEFAULT_ORDERING_POLICY, ORDERING_POLICIES)
      : (template?.ordering ?? DEFAULT_ORDERING_POLICY),
  });
  const defaultBand = band(sec?.defaultPriorityBand);
  const defaultNegativeBand = sec?.defaultNegativePriorityBand
    ? band(sec.defaultNegativePriorityBand, defaultBand)
    : defaultBand;
  const bands = new Map<number, BandSettings>();
  for (const b of sec?.priorityBands ?? [])
    bands.set(b.priority, band(b, b.priority < 0 ? defaultNegativeBand : defaultBand));
  return {
    bands,
    defaultBand,
    defaultNegativeBand,
    maxRequests: sec?.maxRequests ?? 0,
    maxBytes: sec?.maxBytes ?? 0,
    requestTtlMs: sec?.defaultRequestTTL || flags.flowControlRequestTtl,
    maxFlows: flags.flowControlMaxFlows,
    pollIntervalMs: flags.flowControlPollInterval,
    usageLimit: usageLimitPolicy(fc),
    ...(sec?.enableEviction ? { eviction: evictionSettings(fc, flags) } : {}),
  };
}

/**
 * `flowControl.enableEviction`: upstream's fixed pacing (2 revocations a decision, 10s confirmation timeout) and its
 * grace derived from the detector (runner.go deriveEvictionConfirmationGrace): `concurrency-detector`'s counters
 * drop when the evicted stream ends (10ms); a scraped detector sees the freed capacity only after the engine reclaims
 * it and the next fresh scrape lands (scrape interval + staleness threshold + 250ms).
 */
export function evictionSettings(fc: FlowControlSettings, flags: FlowControlFlags): EvictionSettings {
  const d = fc.saturationDetector;
  const leading = d.form !== 'thresholds' && d.plugin.type === 'concurrency-detector';
  return {
    maxRevocationsPerDecision: DEFAULT_MAX_REVOCATIONS_PER_DECISION,
    confirmationTimeoutMs: DEFAULT_EVICTION_CONFIRMATION_TIMEOUT_MS,
    confirmationGraceMs: leading
      ? EVICTION_LEADING_SENSOR_GRACE_MS
      : (flags.refreshMetricsInterval ?? 50) +
        (flags.metricsStalenessThreshold ?? 2000) +
        EVICTION_ENGINE_RECLAIM_BUDGET_MS,
  };
}

/**
 * `flowControl.usageLimitPolicyPluginRef`: `static-usage-limit-policy` (upstream's default, threshold 1),
 * `priority-holdback-policy` or `soft-reflective-ceiling-policy`; none: the default.
 */
export function usageLimitPolicy(fc: FlowControlSettings): UsageLimitPolicy {
  const ref = fc.section?.usageLimitPolicyPluginRef;
  const plugin = ref ? fc.plugins.get(ref) : undefined;
  const s = plugin?.flowControl.settings ?? {};
  if (plugin?.type === 'static-usage-limit-policy') return staticUsageLimit(Number(s.threshold));
  if (plugin?.type === 'priority-holdback-policy')
    return priorityHoldback({
      minCeiling: Number(s.minCeiling),
      maxCeiling: Number(s.maxCeiling),
      domain: s.domain === 'value' ? 'value' : 'rank',
    });
  if (plugin?.type === 'soft-reflective-ceiling-policy') return softReflectiveCeiling();
  return staticUsageLimit(1);
}

export type SaturationDetector = (inflight: Readonly<InFlight>) => number;

interface Thresholds {
  queueDepthThreshold: number;
  kvCacheUtilThreshold: number;
  metricsStalenessThresholdMs: number;
}

export function utilizationSaturation(
  thresholds: Thresholds,
  endpoints: () => readonly Endpoint[],
  now: () => number = Date.now,
): SaturationDetector {
  return () => {
    const all = endpoints();
    if (all.length === 0) return 1;
    const at = now();
    let total = 0;
    for (const e of all) {
      const m = e.metrics;
      if (m.updatedAt <= 0 || at - m.updatedAt > thresholds.metricsStalenessThresholdMs) total += 1;
      else
        total += Math.max(
          m.waitingQueueSize / thresholds.queueDepthThreshold,
          m.kvCacheUsage / thresholds.kvCacheUtilThreshold,
        );
    }
    return total / all.length;
  };
}

export function concurrencySaturation(
  params: { maxConcurrency: number; maxTokenConcurrency: number; concurrencyMode: string },
  endpoints: () => readonly Endpoint[],
): SaturationDetector {
  return (inflight) => {
    const n = endpoints().length;
    if (n === 0) return 1;
    const requests = inflight.requests / (params.maxConcurrency * n);
    const tokens = inflight.tokens / (params.maxTokenConcurrency * n);
    return params.concurrencyMode === 'tokens'
      ? tokens
      : params.concurrencyMode === 'hybrid'
        ? Math.max(requests, tokens)
        : requests;
  };
}

/** The detector the config selects, over the EPP's endpoints. */
export function saturationDetector(fc: FlowControlSettings, endpoints: () => readonly Endpoint[]): SaturationDetector {
  const d = fc.saturationDetector;
  if (d.form === 'thresholds') return utilizationSaturation(d, endpoints);
  const s = d.plugin.flowControl.settings as Record<string, unknown>;
  if (d.plugin.type === 'concurrency-detector') {
    return concurrencySaturation(
      {
        maxConcurrency: Number(s.maxConcurrency),
        maxTokenConcurrency: Number(s.maxTokenConcurrency),
        concurrencyMode: String(s.concurrencyMode),
      },
      endpoints,
    );
  }
  return utilizationSaturation(
    {
      queueDepthThreshold: Number(s.queueDepthThreshold),
      kvCacheUtilThreshold: Number(s.kvCacheUtilThreshold),
      metricsStalenessThresholdMs: Number(s.metricsStalenessThresholdMs),
    },
    endpoints,
  );
}
