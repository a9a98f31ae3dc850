/**
 * `session-affinity-scorer` (llm-d v0.7.1 and llm-d-router): 1 for the request's session endpoint, 0 for the others
 * (all 0 without a session, or when its endpoint is not a candidate, e.g. it left the pool: normal scoring decides).
 * Strategies and parameters: scorer/session-affinity.ts. v0.7.1's scorer took no parameters and is the default here
 * (`x-session-token`, written on every response).
 */
import type { PreRequest, ResponseHeaders, Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { sessionAffinity, sessionAffinityParams } from './session-affinity.js';

export const sessionAffinityScorer = definePlugin({
  kind: 'scorer',
  description: 'Prefers the endpoint that served the session (x-session-token, or a bound session id).',
  params: sessionAffinityParams,
  create: (
    ctx,
    params,
  ): Scorer & PreRequest & ResponseHeaders & { validateProfiles(names: readonly string[]): string | undefined } => {
    const s = sessionAffinity(ctx, params);
    return {
      type: ctx.type,
      name: ctx.name,
      score(cycle, endpoints) {
        const target = s.choose(cycle, endpoints);
        return endpoints.map((endpoint) => (endpoint === target ? 1 : 0));
      },
      preRequest: (cycle, result) => s.preRequest(cycle, result),
      responseHeaders: (cycle, result) => s.responseHeaders(cycle, result),
      validateProfiles: (names) => s.validateProfiles(names),
    };
  },
});
