/**
 * `active-request-scorer`: prefers endpoints with fewer requests in flight through this EPP. A request counts on each
 * endpoint it was routed to (decode pick and, if any, prefill pick) from the pick until its ext_proc stream ends.
 *
 * score = 1 for count <= idleThreshold, else (max − count) / max × maxBusyScore (max = the highest count among the
 * candidates).
 *
 * Parameters: `idleThreshold` (int >= 0, default 0), `maxBusyScore` (0..1, default 1), `requestTimeout` (accepted
 * and ignored, as upstream since in-flight tracking moved out of the scorer: a count always ends with its stream).
 */
import { z } from 'zod';
import type { Endpoint, PreRequest, ResponseComplete, Scorer, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

function routedEndpoints(result: SchedulingResult): Endpoint[] {
  const out = new Set<Endpoint>();
  for (const r of result.results.values()) if (r.targets[0]) out.add(r.targets[0]);
  return [...out];
}

export const activeRequestScorer = definePlugin({
  kind: 'scorer',
  description: 'In-flight requests per endpoint, fewer is better.',
  params: z.object({
    idleThreshold: z.number().int().min(0, 'must be >= 0').default(0),
    maxBusyScore: z.number().min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').default(1),
    requestTimeout: z.union([z.string(), z.number()]).optional(),
    inFlightLoadProducerName: z.string().optional(),
  }),
  create: (ctx, p): Scorer & PreRequest & ResponseComplete => {
    const inFlight = new Map<string, number>();
    return {
      type: ctx.type,
      name: ctx.name,
      score(_c: SchedulingContext, endpoints: readonly Endpoint[]) {
        let max = 0;
        for (const e of endpoints) max = Math.max(max, inFlight.get(e.id) ?? 0);
        return endpoints.map((e) => {
          const n = inFlight.get(e.id) ?? 0;
          return n <= p.idleThreshold ? 1 : ((max - n) / max) * p.maxBusyScore;
        });
      },
      preRequest(_c: SchedulingContext, result: SchedulingResult) {
        for (const e of routedEndpoints(result)) inFlight.set(e.id, (inFlight.get(e.id) ?? 0) + 1);
      },
      responseComplete(_c: SchedulingContext, result: SchedulingResult) {
        for (const e of routedEndpoints(result)) {
          const n = (inFlight.get(e.id) ?? 0) - 1;
          if (n > 0) inFlight.set(e.id, n);
          else inFlight.delete(e.id);
        }
      },
    };
  },
});
