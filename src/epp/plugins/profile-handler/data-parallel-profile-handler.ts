/**
 * `data-parallel-profile-handler` (llm-d v0.7.1 and llm-d-router; deprecated upstream: not needed with Istio >=
 * 1.28.1): the single-profile handler for vLLM data parallelism behind one port. It runs the only profile, moves its
 * picks to `primaryPort` on the same IP and sends the picked rank's own `ip:port` in `x-data-parallel-host-port`
 * (primary-port.ts).
 *
 * Parameters: `primaryPort` (default 8000, 1–65535). Upstream accepts 0 and then routes to port 0; pd-router rejects
 * it. Exactly one scheduling profile (a load error otherwise; upstream fails each request instead).
 */
import { z } from 'zod';
import { InferenceError } from '../../framework/errors.js';
import type { PreRequest, ProfileHandler } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { primaryPortParam, routeToPrimaryPort, writeDataParallelHeader } from './primary-port.js';

export const dataParallelProfileHandler = definePlugin({
  kind: 'profile-handler',
  description: 'Single profile, routed to the primary port with the rank in x-data-parallel-host-port.',
  params: z.object({ primaryPort: primaryPortParam.refine((count) => count > 0, 'must be between 1 and 65535').default(8000) }).strict(),
  create: (ctx, params): ProfileHandler & PreRequest => ({
    type: ctx.type,
    name: ctx.name,
    pickProfiles: (_context, profiles, results) => (results.size === 0 ? [...profiles.keys()].slice(0, 1) : []),
    processResults(context, results) {
      const [name, result] = [...results.entries()][0] ?? [];
      if (name !== undefined && result) return routeToPrimaryPort(context, { primaryProfile: name, results: new Map([[name, result]]) }, params.primaryPort);
      const err = name !== undefined ? context.profileErrors.get(name) : undefined;
      if (err instanceof InferenceError) throw err;
      throw new InferenceError('ResourceExhausted', `failed to find target endpoint: failed to run scheduler profile '${name}'`);
    },
    preRequest: (context) => writeDataParallelHeader(context),
    validateProfiles: (names) => (names.length === 1 ? undefined : `data-parallel-profile-handler needs exactly one scheduling profile, found ${names.length}`),
  }),
});
