/**
 * `session-affinity-filter` (llm-d-router): keeps only the request's session endpoint when it is a candidate; keeps
 * every candidate without a session, or when its endpoint is not a candidate (e.g. it left the pool), so the other
 * filters and scorers decide. Never empty. Strategies and parameters: scorer/session-affinity.ts.
 */
import type { Filter, PreRequest, ResponseHeaders } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { sessionAffinity, sessionAffinityParams } from '../scorer/session-affinity.js';

export const sessionAffinityFilter = definePlugin({
  kind: 'filter',
  description: 'Pins a session to the endpoint that served it (x-session-token, or a bound session id).',
  params: sessionAffinityParams,
  create: (
    ctx,
    params,
  ): Filter & PreRequest & ResponseHeaders & { validateProfiles(names: readonly string[]): string | undefined } => {
    const s = sessionAffinity(ctx, params);
    return {
      type: ctx.type,
      name: ctx.name,
      filter(cycle, endpoints) {
        const target = s.choose(cycle, endpoints);
        return target ? [target] : [...endpoints];
      },
      preRequest: (cycle, result) => s.preRequest(cycle, result),
      responseHeaders: (cycle, result) => s.responseHeaders(cycle, result),
      validateProfiles: (names) => s.validateProfiles(names),
    };
  },
});
