/**
 * `probabilistic-admitter` (llm-d-router `requestcontrol/admitter/probabilisticadmitter`): sheds sheddable requests
 * with a probability that grows with the pool's saturation, before they are scheduled.
 *
 * It is an Admitter: the Director runs it after flow control (when the gate is on) and the data producers, on the
 * request's candidates, before the scheduler. A request with priority >= 0 is always admitted, and so is any request
 * when there are no candidates. For a sheddable one (priority < 0):
 *
 *   saturation = mean over candidates of max(waitingQueueSize / queueDepthThreshold, kvCacheUsage / kvCacheUtilThreshold)
 *   p = min(saturation^power × k, 1)
 *
 * and the request is refused when `random() < p`. Upstream answers a refusal as the Director wraps any Admitter's
 * denial: 500 Internal, body `inference error: Internal - request cannot be admitted: inference error:
 * ResourceExhausted - probabilistic-admitter: rejected, saturation=0.400 prob=1.00`, no dropped-reason header.
 *
 * An endpoint never scraped counts with zero queue and zero KV usage, as upstream's empty metrics do (upstream counts
 * an endpoint with no metrics object at all as saturated, which its datastore never hands out).
 *
 * Parameters (defaults), validated at load: `queueDepthThreshold` (5, integer > 0), `kvCacheUtilThreshold` (0.8,
 * > 0), `power` (5, > 0), `k` (300, > 0). With the defaults shedding is ~2.3% at saturation 0.15 and total from
 * (1/300)^(1/5) ≈ 0.32.
 */
import { z } from 'zod';
import type { Admitter, Endpoint } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export interface ProbabilisticAdmitterSettings {
  queueDepthThreshold: number;
  kvCacheUtilThreshold: number;
  power: number;
  k: number;
}

/** The pool's saturation as the admitter computes it: the candidates' mean of their worse ratio. */
export function admitterSaturation(settings: ProbabilisticAdmitterSettings, endpoints: readonly Endpoint[]): number {
  let total = 0;
  for (const endpoint of endpoints)
    total += Math.max(
      endpoint.metrics.waitingQueueSize / settings.queueDepthThreshold,
      endpoint.metrics.kvCacheUsage / settings.kvCacheUtilThreshold,
    );
  return total / endpoints.length;
}

/** The probability a sheddable request is refused at `saturation`. */
export function sheddingProbability(settings: ProbabilisticAdmitterSettings, saturation: number): number {
  return Math.min(Math.pow(saturation, settings.power) * settings.k, 1);
}

export const probabilisticAdmitter = definePlugin({
  kind: 'admitter',
  description:
    'Refuses sheddable requests (priority < 0) with probability min(saturation^power × k, 1), saturation from queue depth and KV-cache usage.',
  params: z
    .object({
      queueDepthThreshold: z.number().int('must be an integer').positive('must be > 0').default(5),
      kvCacheUtilThreshold: z.number().gt(0, 'must be > 0').default(0.8),
      power: z.number().gt(0, 'must be > 0').default(5),
      k: z.number().gt(0, 'must be > 0').default(300),
    })
    .strict(),
  create: (ctx, params): Admitter & { readonly settings: ProbabilisticAdmitterSettings } => {
    const settings: ProbabilisticAdmitterSettings = { ...params };
    const random = ctx.random;
    return {
      type: ctx.type,
      name: ctx.name,
      settings,
      admit(schedulingCtx, candidates) {
        if (schedulingCtx.request.priority >= 0 || candidates.length === 0) return undefined;
        const saturation = admitterSaturation(settings, candidates);
        const prob = sheddingProbability(settings, saturation);
        if (random() >= prob) return undefined;
        return `inference error: ResourceExhausted - ${ctx.type}: rejected, saturation=${saturation.toFixed(3)} prob=${prob.toFixed(2)}`;
      },
    };
  },
});
