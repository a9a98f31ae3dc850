/**
 * `token-producer`: token counts for the deciders. pd-router always uses llm-d's `estimate` backend (4 UTF-8 bytes per
 * token, explicit token-id prompts as given), which needs no model server; any other backend is a config error.
 *
 * Parameters: `backend` (estimate, default estimate).
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';

export const tokenProducer = definePlugin({
  kind: 'data-producer',
  description: 'Estimate tokenizer (4 bytes per token).',
  params: z.object({ backend: z.literal('estimate', { message: 'only the estimate backend is supported' }).default('estimate') }),
  create: (ctx) => ({ type: ctx.type, name: ctx.name, tokenizer: 'estimate' }),
});
