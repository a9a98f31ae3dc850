/**
 * Prompt extraction: the text (or token ids) a request's prefill works on, per API type. The EPP hashes it into prefix
 * blocks, the decider counts it, and the simulator tokenizes it. Following llm-d's estimate tokenizer, chat prompts
 * are the JSON of `tools` followed by each message's role and content with no separators.
 */
import type { ApiType } from './api-type.js';
import { isObject, type JsonObject } from '../json.js';

export type Prompt = { kind: 'text'; text: string } | { kind: 'tokens'; tokens: number[] };

/** Text of an OpenAI/Anthropic content value: a string, or the text of its text blocks concatenated. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let out = '';
  for (const part of content) {
    if (typeof part === 'string') out += part;
    else if (isObject(part)) {
      if (typeof part.text === 'string') out += part.text;
      else if (typeof part.content === 'string') out += part.content;
      else if (Array.isArray(part.content)) out += contentText(part.content);
    }
  }
  return out;
}

function messagesText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  let out = '';
  for (const m of messages) {
    if (!isObject(m)) continue;
    if (typeof m.role === 'string') out += m.role;
    out += contentText(m.content);
  }
  return out;
}

function isTokenArray(value: unknown): value is number[] {
  return Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'number' && Number.isInteger(item));
}

/**
 * The prompts of a request. Completions with an array of several strings are several prompts; explicit token-id
 * prompts are returned as tokens. Returns [] when the body has no prompt the API type defines.
 */
export function extractPrompts(api: ApiType, body: JsonObject): Prompt[] {
  switch (api) {
    case 'chat': {
      const tools = body.tools === undefined ? '' : JSON.stringify(body.tools);
      return [{ kind: 'text', text: tools + messagesText(body.messages) }];
    }
    case 'messages': {
      const system = contentText(body.system);
      const tools = body.tools === undefined ? '' : JSON.stringify(body.tools);
      return [{ kind: 'text', text: tools + (system ? `system${system}` : '') + messagesText(body.messages) }];
    }
    case 'responses': {
      const instructions = typeof body.instructions === 'string' ? `system${body.instructions}` : '';
      const input = typeof body.input === 'string' ? `user${body.input}` : messagesText(body.input);
      return [{ kind: 'text', text: instructions + input }];
    }
    case 'completions': {
      const p = body.prompt;
      if (typeof p === 'string') return [{ kind: 'text', text: p }];
      if (isTokenArray(p)) return [{ kind: 'tokens', tokens: p }];
      if (Array.isArray(p)) {
        return p.flatMap((value): Prompt[] => {
          if (typeof value === 'string') return [{ kind: 'text', text: value }];
          if (isTokenArray(value)) return [{ kind: 'tokens', tokens: value }];
          return [];
        });
      }
      return [];
    }
    case 'generate': {
      if (isTokenArray(body.token_ids)) return [{ kind: 'tokens', tokens: body.token_ids }];
      if (typeof body.prompt === 'string') return [{ kind: 'text', text: body.prompt }];
      return [];
    }
  }
}

/** llm-d's estimate tokenizer packs 4 bytes per token: tokens = ceil(utf8 bytes / 4). */
export function estimateTokenCount(prompts: readonly Prompt[]): number {
  let n = 0;
  for (const p of prompts) n += p.kind === 'tokens' ? p.tokens.length : Math.ceil(Buffer.byteLength(p.text, 'utf8') / 4);
  return n;
}
