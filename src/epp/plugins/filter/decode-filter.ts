/**
 * `decode-filter`: keeps endpoints whose `llm-d.ai/role` is decode, prefill-decode, both or encode-prefill-decode,
 * and endpoints with no role label (an unlabeled pod serves as decode, as upstream). No parameters.
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';
import { labelValueFilter } from './by-label.js';
import { DECODE_ROLES, ROLE_LABEL } from './roles.js';

export const decodeFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps decode-capable endpoints and endpoints without a role label.',
  params: z.object({}).strict(),
  create: (ctx) => labelValueFilter(ctx.type, ctx.name, ROLE_LABEL, DECODE_ROLES, true),
});
