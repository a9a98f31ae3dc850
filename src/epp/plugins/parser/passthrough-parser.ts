/**
 * `passthrough-parser`: any body, uninterpreted. No model, no prompt: payload-aware scorers (prefix cache) see
 * nothing, and the request schedules on load alone. No parameters.
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';
import type { RequestParser } from './parser-types.js';

export const passthroughParser = definePlugin({
  kind: 'parser',
  description: 'Opaque bodies.',
  params: z.object({}).strict(),
  create: (ctx): RequestParser => ({
    type: ctx.type,
    name: ctx.name,
    pathSuffixes: [],
    fallback: true,
    parsesUsage: false,
    parse: () => ({ api: undefined, json: undefined, prompts: [], stream: false, cacheSalt: '', requiresModel: false }),
  }),
});
