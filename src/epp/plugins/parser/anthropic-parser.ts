/** `anthropic-parser`: the Anthropic Messages API (`/v1/messages`); `messages` is required. No parameters. */
import { z } from 'zod';
import { extractPrompts } from '../../../common/openai/index.js';
import { definePlugin } from '../definition.js';
import { badRequest, parseJsonObject, type RequestParser } from './parser-types.js';

export const anthropicParser = definePlugin({
  kind: 'parser',
  description: 'Anthropic Messages API bodies.',
  params: z.object({}).strict(),
  create: (ctx): RequestParser => ({
    type: ctx.type,
    name: ctx.name,
    pathSuffixes: ['/v1/messages'],
    fallback: false,
    parsesUsage: true,
    parse(body) {
      const json = parseJsonObject(body) ?? {};
      if (!Array.isArray(json.messages) || json.messages.length === 0)
        throw badRequest('invalid messages request: must have messages field');
      return {
        api: 'messages',
        json,
        prompts: extractPrompts('messages', json),
        stream: json.stream === true,
        cacheSalt: '',
        requiresModel: true,
      };
    },
  }),
});
