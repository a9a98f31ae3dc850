/**
 * `pd-profile-handler` (deprecated upstream since v0.7 in favour of disagg-profile-handler): decode-first P/D with
 * one decider and no encode stage. It counts `llm_d_epp_pd_decision_total` (and the legacy
 * `llm_d_inference_scheduler_pd_decision_total`) instead of the disagg counters.
 *
 * Parameters: `decodeProfile` (default "decode"), `prefillProfile` (default "prefill"), `deciderPluginName` (default
 * "prefix-based-pd-decider"), `primaryPort` (1-65535, optional): when set, `x-data-parallel-host-port` carries the
 * decode pick's `ip:port` and the request is routed to the same IP on `primaryPort` (data-parallel ranks behind one
 * port).
 */
import { z } from 'zod';
import { hostPort } from '../../../common/index.js';
import type { Endpoint, PreRequest, ProfileHandler, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { DATA_PARALLEL_HOST_PORT } from '../../routing-headers.js';
import { definePlugin } from '../definition.js';
import { createDisaggHandler } from './disagg-profile-handler.js';

const DP_ORIGINAL = 'pd-profile-handler/dp-original';

export const pdProfileHandler = definePlugin({
  kind: 'profile-handler',
  description: 'Deprecated decode-first P/D handler with one decider and optional primaryPort.',
  deprecatedFor: 'disagg-profile-handler',
  params: z
    .object({
      decodeProfile: z.string().min(1).default('decode'),
      prefillProfile: z.string().min(1).default('prefill'),
      deciderPluginName: z.string().min(1).default('prefix-based-pd-decider'),
      primaryPort: z.number().int().min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535').optional(),
    })
    .strict(),
  create: (ctx, p) => {
    const handler = createDisaggHandler(
      ctx,
      {
        stageOrder: 'decode-first',
        profiles: { decode: p.decodeProfile, prefill: p.prefillProfile, encode: '' },
        deciders: { prefill: p.deciderPluginName },
        onPrefillUnavailable: 'decode-only',
      },
      {
        record: (model, type) => ctx.metrics.recordPdDecision(ctx, model, type),
        finish(c: SchedulingContext, result: SchedulingResult) {
          if (p.primaryPort === undefined) return result;
          const decode = result.results.get(result.primaryProfile)!;
          const original = decode.targets[0]!;
          c.state.set(DP_ORIGINAL, original.hostPort);
          const rewritten: Endpoint = { ...original, port: p.primaryPort, hostPort: hostPort(original.address, p.primaryPort) };
          result.results.set(result.primaryProfile, { ...decode, targets: [rewritten, ...decode.targets.slice(1)] });
          return result;
        },
      },
    );
    const wrapped: ProfileHandler & PreRequest = {
      ...handler,
      preRequest(c: SchedulingContext, result: SchedulingResult) {
        handler.preRequest(c, result);
        const original = c.state.get(DP_ORIGINAL) as string | undefined;
        if (original) c.request.headers[DATA_PARALLEL_HOST_PORT] = original;
      },
    };
    return wrapped;
  },
});
