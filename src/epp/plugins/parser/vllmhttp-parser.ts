/**
 * `vllmhttp-parser`: vLLM's `/inference/v1/generate` (token ids or a prompt, sampling_params), delegating every other
 * path to the OpenAI parser, so one instance covers a vLLM route. No parameters.
 */
import { z } from 'zod';
import { extractPrompts } from '../../../common/openai/index.js';
import { definePlugin } from '../definition.js';
import { parseOpenAIBody } from './openai-parser.js';
import { badRequest, parseJsonObject, stripQuery, type RequestParser } from './parser-types.js';

const GENERATE = '/inference/v1/generate';

export const vllmhttpParser = definePlugin({
  kind: 'parser',
  description: 'vLLM /inference/v1/generate, plus the OpenAI API.',
  params: z.object({}).strict(),
  create: (ctx): RequestParser => ({
    type: ctx.type,
    name: ctx.name,
    pathSuffixes: [GENERATE],
    fallback: true,
    parsesUsage: true,
    parse(body, path) {
      if (!stripQuery(path).endsWith(GENERATE)) return parseOpenAIBody(body, path);
      const json = parseJsonObject(body) ?? {};
      const prompts = extractPrompts('generate', json);
      if (prompts.length === 0) throw badRequest('invalid generate request: must have token_ids or prompt field');
      return {
        api: 'generate',
        json,
        prompts,
        stream: json.stream === true,
        cacheSalt: typeof json.cache_salt === 'string' ? json.cache_salt : '',
        requiresModel: true,
      };
    },
  }),
});
