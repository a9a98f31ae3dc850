/**
 * `encode-filter`: keeps endpoints whose `llm-d.ai/role` is encode, encode-prefill or encode-prefill-decode (E/PD).
 * No parameters.
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';
import { labelValueFilter } from './by-label.js';
import { ENCODE_ROLES, ROLE_LABEL } from './roles.js';

export const encodeFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps encode-capable endpoints.',
  params: z.object({}).strict(),
  create: (ctx) => labelValueFilter(ctx.type, ctx.name, ROLE_LABEL, ENCODE_ROLES, false),
});
