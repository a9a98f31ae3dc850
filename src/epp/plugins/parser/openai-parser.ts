/**
 * `openai-parser`: the OpenAI API, and the fallback for unclaimed paths. The API is chosen by path suffix:
 * /conversations, /responses, /chat/completions, /completions, /embeddings; anything else is treated as completions
 * (llm-d's backward-compatible default, also for a missing :path). Each API checks its required field, with llm-d's
 * 400 messages. No parameters.
 */
import { z } from 'zod';
import { extractPrompts, type Prompt } from '../../../common/openai/index.js';
import { definePlugin } from '../definition.js';
import { badRequest, parseJsonObject, stripQuery, type ParsedBody, type RequestParser } from './parser-types.js';

function nonEmpty(value: unknown): boolean {
  if (typeof value === 'string') return value.length > 0;
  if (Array.isArray(value)) return value.length > 0;
  return value !== undefined && value !== null;
}

function textPrompts(value: unknown): Prompt[] {
  if (typeof value === 'string') return [{ kind: 'text', text: value }];
  if (Array.isArray(value)) return value.filter((item): item is string => typeof item === 'string').map((text) => ({ kind: 'text', text }));
  return [];
}

/** Parses an OpenAI-API body by path. */
export function parseOpenAIBody(body: Buffer, path: string): ParsedBody {
  const json = parseJsonObject(body) ?? {};
  const p = stripQuery(path);
  const common = { json, stream: json.stream === true, cacheSalt: typeof json.cache_salt === 'string' ? json.cache_salt : '', requiresModel: true };
  if (p.endsWith('/conversations')) {
    if (!Array.isArray(json.items) || json.items.length === 0) throw badRequest('invalid conversations request: must have items field');
    return { ...common, api: undefined, prompts: extractPrompts('responses', { input: json.items }) };
  }
  if (p.endsWith('/responses')) {
    if (json.input === undefined || json.input === null) throw badRequest('invalid responses request: must have input field');
    return { ...common, api: 'responses', prompts: extractPrompts('responses', json) };
  }
  if (p.endsWith('/chat/completions')) {
    if (!Array.isArray(json.messages) || json.messages.length === 0) throw badRequest('invalid chat completions request: must have valid messages field');
    return { ...common, api: 'chat', prompts: extractPrompts('chat', json) };
  }
  if (p.endsWith('/embeddings')) {
    if (!nonEmpty(json.input)) throw badRequest('invalid embeddings request: must have input field');
    return { ...common, api: undefined, prompts: textPrompts(json.input) };
  }
  if (!nonEmpty(json.prompt)) throw badRequest('invalid completions request: must have prompt field');
  return { ...common, api: 'completions', prompts: extractPrompts('completions', json) };
}

export const openaiParser = definePlugin({
  kind: 'parser',
  description: 'OpenAI API bodies; fallback for unclaimed paths.',
  params: z.object({}).strict(),
  create: (ctx): RequestParser => ({
    type: ctx.type,
    name: ctx.name,
    pathSuffixes: [],
    fallback: true,
    parsesUsage: true,
    parse: parseOpenAIBody,
  }),
});
