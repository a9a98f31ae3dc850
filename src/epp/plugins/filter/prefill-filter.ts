/**
 * `prefill-filter`: keeps endpoints whose `llm-d.ai/role` is prefill, encode-prefill, prefill-decode, both or
 * encode-prefill-decode. Endpoints without the label are rejected. No parameters.
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';
import { labelValueFilter } from './by-label.js';
import { PREFILL_ROLES, ROLE_LABEL } from './roles.js';

export const prefillFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps prefill-capable endpoints.',
  params: z.object({}).strict(),
  create: (ctx) => labelValueFilter(ctx.type, ctx.name, ROLE_LABEL, PREFILL_ROLES, false),
});
