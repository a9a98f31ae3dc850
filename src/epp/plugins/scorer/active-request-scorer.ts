/**
 * `active-request-scorer`: prefers endpoints with fewer requests in flight through this EPP. A request counts on each
 * endpoint it was routed to (decode pick and, if any, prefill pick) from the pick until its ext_proc stream ends.
 *
 * score = 1 for count <= idleThreshold, else (max − count) / max × maxBusyScore (max = the highest count among the
 * candidates).
 *
 * Parameters: `idleThreshold` (int >= 0, default 0), `maxBusyScore` (0..1, default 1).
 * - `requestTimeout` (a Go duration): llm-d v0.7.1 stopped counting a request after it; llm-d-router deprecated it
 *   and ignores it, as pd-router does: a count always ends with its ext_proc stream. Setting it logs a load warning.
 * - `inFlightLoadProducerName` (llm-d-router) names an `inflight-load-producer`, which pd-router does not have (the
 *   scorer counts requests itself): setting it is a load error.
 */
import { z } from 'zod';
import type { Endpoint, PreRequest, ResponseComplete, Scorer, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { goDuration } from '../../config/go-values.js';
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
    requestTimeout: goDuration.optional(),
    inFlightLoadProducerName: z
      .string()
      .refine((text) => text === '', 'pd-router has no inflight-load-producer: active-request-scorer counts the requests it routed itself')
      .optional(),
  }).strict(),
  create: (ctx, params): Scorer & PreRequest & ResponseComplete => {
    if (params.requestTimeout !== undefined) ctx.warn('parameter "requestTimeout" is ignored (deprecated in llm-d-router): a request counts until its ext_proc stream ends');
    const inFlight = new Map<string, number>();
    return {
      type: ctx.type,
      name: ctx.name,
      score(_context: SchedulingContext, endpoints: readonly Endpoint[]) {
        let max = 0;
        for (const e of endpoints) max = Math.max(max, inFlight.get(e.id) ?? 0);
        return endpoints.map((endpoint) => {
          const n = inFlight.get(endpoint.id) ?? 0;
          return n <= params.idleThreshold ? 1 : ((max - n) / max) * params.maxBusyScore;
        });
      },
      preRequest(_context: SchedulingContext, result: SchedulingResult) {
        for (const e of routedEndpoints(result)) inFlight.set(e.id, (inFlight.get(e.id) ?? 0) + 1);
      },
      responseComplete(_context: SchedulingContext, result: SchedulingResult) {
        for (const e of routedEndpoints(result)) {
          const n = (inFlight.get(e.id) ?? 0) - 1;
          if (n > 0) inFlight.set(e.id, n);
          else inFlight.delete(e.id);
        }
      },
    };
  },
});
