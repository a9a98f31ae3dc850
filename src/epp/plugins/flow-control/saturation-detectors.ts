/**
 * Saturation detectors (llm-d `flowcontrol/saturationdetector/{utilization,concurrency}`), the plugins
 * `saturationDetector.pluginRef` / `flowControl.saturationDetector.pluginRef` name.
 *
 * As saturation detectors they are parsed, validated and kept. With the flowControl feature gate on, the gate reads
 * the selected one (flowcontrol/from-config.ts) to decide when requests queue. With it off pd-router uses none:
 * upstream would still shed sheddable requests (priority < 0) at saturation, and the loader's startup warning names
 * the detector and its settings.
 *
 * `utilization-detector` is also a filter, as upstream, when a scheduling profile lists it: it keeps endpoints whose
 * metrics are fresh (updated within `metricsStalenessThreshold`) and whose waiting queue is below
 * `queueDepthThreshold × (1 + headroom)` and KV-cache usage below `kvCacheUtilThreshold × (1 + headroom)`; when no
 * endpoint passes, it keeps them all (upstream fails open).
 * Parameters (defaults): `queueDepthThreshold` (5, > 0), `kvCacheUtilThreshold` (0.8, in (0, 1]),
 * `metricsStalenessThreshold` (200ms, > 0), `headroom` (0, >= 0).
 *
 * `concurrency-detector`: `maxConcurrency` (100, > 0), `headroom` (0, >= 0), `concurrencyMode` (requests | tokens |
 * hybrid, default requests), `maxTokenConcurrency` (1000000, > 0), `inFlightLoadProducerName`. Its filter needs
 * upstream's inflight-load-producer, which pd-router does not have: listing it in a profile is a load error.
 */
import { z } from 'zod';
import type { Endpoint, Filter } from '../../framework/types.js';
import { goDuration } from '../../config/go-values.js';
import { definePlugin } from '../definition.js';
import type { FlowControlPlugin } from './flow-control-plugin.js';

const utilizationParams = z
  .object({
    queueDepthThreshold: z.number().int().positive('must be > 0').default(5),
    kvCacheUtilThreshold: z.number().gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]').default(0.8),
    metricsStalenessThreshold: goDuration.refine((ms) => ms > 0, 'must be > 0').default(200),
    headroom: z.number().min(0, 'must be >= 0').default(0),
  })
  .strict();

export interface UtilizationSettings {
  queueDepthThreshold: number;
  kvCacheUtilThreshold: number;
  metricsStalenessThresholdMs: number;
  headroom: number;
}

/** Upstream's utilization filter over pd-router endpoints. */
export function utilizationFilter(settings: UtilizationSettings, now: () => number = Date.now) {
  const qLimit = settings.queueDepthThreshold * (1 + settings.headroom);
  const kvLimit = settings.kvCacheUtilThreshold * (1 + settings.headroom);
  return (endpoints: readonly Endpoint[]): Endpoint[] => {
    const t = now();
    const kept = endpoints.filter(
      (endpoint) =>
        endpoint.metrics.updatedAt > 0 &&
        t - endpoint.metrics.updatedAt <= settings.metricsStalenessThresholdMs &&
        endpoint.metrics.waitingQueueSize < qLimit &&
        endpoint.metrics.kvCacheUsage < kvLimit,
    );
    return kept.length > 0 ? kept : [...endpoints];
  };
}

export const utilizationDetector = definePlugin({
  kind: ['flow-control', 'filter'],
  description:
    'Saturation from queue depth and KV-cache usage (gates dispatch with the flowControl feature gate); also a filter.',
  params: utilizationParams,
  create: (ctx, params): FlowControlPlugin & Filter => {
    const settings: UtilizationSettings = {
      queueDepthThreshold: params.queueDepthThreshold,
      kvCacheUtilThreshold: params.kvCacheUtilThreshold,
      metricsStalenessThresholdMs: params.metricsStalenessThreshold,
      headroom: params.headroom,
    };
    const keep = utilizationFilter(settings);
    return {
      type: ctx.type,
      name: ctx.name,
      flowControl: { role: 'saturation-detector', settings: { ...settings } },
      filter: (context, endpoints) => keep(endpoints),
    };
  },
});

export const concurrencyDetector = definePlugin({
  kind: 'flow-control',
  description: 'Saturation from in-flight requests or tokens (gates dispatch with the flowControl feature gate).',
  params: z
    .object({
      maxConcurrency: z.number().int().positive('must be > 0').default(100),
      headroom: z.number().min(0, 'must be >= 0').default(0),
      concurrencyMode: z
        .enum(['requests', 'tokens', 'hybrid'], { error: 'must be requests, tokens or hybrid' })
        .default('requests'),
      maxTokenConcurrency: z.number().int().positive('must be > 0').default(1_000_000),
      inFlightLoadProducerName: z.string().optional(),
    })
    .strict(),
  create: (ctx, params): FlowControlPlugin => ({
    type: ctx.type,
    name: ctx.name,
    flowControl: { role: 'saturation-detector', settings: { ...params } },
  }),
});
