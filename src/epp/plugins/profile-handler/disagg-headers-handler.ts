/**
 * `disagg-headers-handler` and `prefill-header-handler` (deprecated upstream, removal planned in llm-d v0.11; the
 * disagg-profile-handler writes these headers itself): a PreRequest plugin that sets `x-prefiller-host-port` from the
 * first pick of `prefillProfile` and `x-encoder-hosts-ports` from every pick of `encodeProfile`, after dropping any
 * value already present.
 *
 * Parameters: `prefillProfile` (default "prefill"), `encodeProfile` (default "encode").
 */
import { z } from 'zod';
import type { PreRequest } from '../../framework/types.js';
import { writeDisaggHeaders } from '../../routing-headers.js';
import { definePlugin } from '../definition.js';

export const disaggHeadersHandler = definePlugin({
  kind: 'pre-request',
  description: 'Writes x-prefiller-host-port / x-encoder-hosts-ports from the profile results.',
  deprecatedFor: 'disagg-profile-handler',
  params: z.object({ prefillProfile: z.string().min(1).default('prefill'), encodeProfile: z.string().min(1).default('encode') }).strict(),
  create: (ctx, params): PreRequest => ({
    type: ctx.type,
    name: ctx.name,
    preRequest(context, result) {
      writeDisaggHeaders(context.request.headers, result, params.prefillProfile, params.encodeProfile);
    },
  }),
});
