/**
 * `pd-profile-handler` (deprecated upstream since v0.7 in favour of disagg-profile-handler): decode-first P/D with
 * one decider and no encode stage. It counts `llm_d_epp_pd_decision_total` (and the legacy
 * `llm_d_inference_scheduler_pd_decision_total`) instead of the disagg counters.
 *
 * Parameters: `decodeProfile` (default "decode"), `prefillProfile` (default "prefill"), `deciderPluginName` (default
 * "prefix-based-pd-decider"), `primaryPort` (1-65535; 0 or absent = off): see primary-port.ts.
 * Which prefix-match producer the decider reads: `prefixMatchInfoProducerName` (llm-d-router), or llm-d v0.7.1's
 * `prefixPluginType` / `prefixPluginName` (a prefix-cache-scorer, whose producer is read, or an
 * approx-prefix-cache-producer; see scorer/producer-ref.ts). Default: the first approx-prefix-cache-producer.
 */
import { z } from 'zod';
import type { PreRequest, ProfileHandler, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { PREFIX_MATCH_DATA } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';
import { prefixProducerFor } from '../scorer/producer-ref.js';
import { createDisaggHandler } from './disagg-profile-handler.js';
import { primaryPortParam, routeToPrimaryPort, writeDataParallelHeader } from './primary-port.js';

export const pdProfileHandler = definePlugin({
  kind: 'profile-handler',
  requires: [PREFIX_MATCH_DATA],
  description: 'Deprecated decode-first P/D handler with one decider and optional primaryPort.',
  deprecatedFor: 'disagg-profile-handler',
  params: z
    .object({
      decodeProfile: z.string().min(1).default('decode'),
      prefillProfile: z.string().min(1).default('prefill'),
      deciderPluginName: z.string().min(1).default('prefix-based-pd-decider'),
      primaryPort: primaryPortParam.default(0),
      prefixPluginType: z.string().min(1).optional(),
      prefixPluginName: z.string().min(1).optional(),
      prefixMatchInfoProducerName: z.string().min(1).optional(),
    })
    .strict(),
  create: (ctx, params) => {
    const handler = createDisaggHandler(
      ctx,
      {
        stageOrder: 'decode-first',
        profiles: { decode: params.decodeProfile, prefill: params.prefillProfile, encode: '' },
        deciders: { prefill: params.deciderPluginName },
        onPrefillUnavailable: 'decode-only',
        producer: prefixProducerFor(ctx, params),
      },
      {
        record: (model, type) => ctx.metrics.recordPdDecision(ctx, model, type),
        finish: (context: SchedulingContext, result: SchedulingResult) => (params.primaryPort ? routeToPrimaryPort(context, result, params.primaryPort) : result),
      },
    );
    const wrapped: ProfileHandler & PreRequest = {
      ...handler,
      preRequest(context: SchedulingContext, result: SchedulingResult) {
        handler.preRequest(context, result);
        writeDataParallelHeader(context);
      },
    };
    return wrapped;
  },
});
