/**
 * Response bodies and SSE frames per API, in the shapes llm-d-inference-sim emits:
 * - chat and completions: `usage` always carries prompt_tokens_details.cached_tokens; every stream chunk has
 *   `"usage":null` until the optional usage chunk (`stream_options.include_usage`), then `data: [DONE]`;
 * - responses and messages: `event:` + `data:` frames, no [DONE];
 * - generate: token ids, `request_id`, `ec_transfer_params: null`, finish reason riding on the last token chunk.
 * Unlike upstream, a prefill's `kv_transfer_params` is returned by every API (upstream omits it for responses and
 * messages), so the sidecar can disaggregate all of them.
 */
import type { ApiType } from '../common/index.js';
import type { FinishReason } from './generation.js';
import { KV_TRANSFER_PARAMS, type PrefillAnswerKvParams } from '../common/pd-contract.js';

export interface CompletionResult {
  api: ApiType;
  requestId: string;
  model: string;
  created: number;
  tokens: readonly string[];
  tokenIds: readonly number[];
  finishReason: FinishReason;
  promptTokens: number;
  cachedTokens: number;
  kvTransferParams?: PrefillAnswerKvParams;
  includeUsage: boolean;
  /** Responses API: instructions echoed back when sent. */
  instructions?: string;
}

function usageOpenAI(r: CompletionResult) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.tokens.length,
    total_tokens: r.promptTokens + r.tokens.length,
    // Upstream sends null details with a cache_threshold answer.
    prompt_tokens_details: r.finishReason === 'cache_threshold' ? null : { cached_tokens: r.cachedTokens },
  };
}

function anthropicStopReason(f: FinishReason): string {
  return f === 'length' ? 'max_tokens' : 'end_turn';
}

function responsesUsage(r: CompletionResult) {
  return {
    input_tokens: r.promptTokens,
    output_tokens: r.tokens.length,
    total_tokens: r.promptTokens + r.tokens.length,
    input_tokens_details: { cached_tokens: r.cachedTokens },
  };
}

function withKv<T extends Record<string, unknown>>(body: T, r: CompletionResult): T {
  if (r.kvTransferParams) (body as Record<string, unknown>)[KV_TRANSFER_PARAMS] = r.kvTransferParams;
  return body;
}

export function chatId(r: CompletionResult): string {
  switch (r.api) {
    case 'chat':
      return `chatcmpl-${r.requestId}`;
    case 'completions':
      return `cmpl-${r.requestId}`;
    case 'responses':
      return `resp_${r.requestId}`;
    case 'messages':
      return `msg_${r.requestId}`;
    case 'generate':
      return r.requestId;
  }
}

/** The non-streaming JSON body. */
export function completionBody(r: CompletionResult): Record<string, unknown> {
  const text = r.tokens.join('');
  switch (r.api) {
    case 'chat':
      return withKv(
        {
          id: chatId(r),
          model: r.model,
          object: 'chat.completion',
          created: r.created,
          usage: usageOpenAI(r),
          choices: [{ index: 0, finish_reason: r.finishReason, message: { role: 'assistant', content: text } }],
        },
        r,
      );
    case 'completions':
      return withKv(
        {
          id: chatId(r),
          model: r.model,
          object: 'text_completion',
          created: r.created,
          usage: usageOpenAI(r),
          choices: [{ index: 0, finish_reason: r.finishReason, text }],
        },
        r,
      );
    case 'responses':
      return withKv(
        {
          id: chatId(r),
          model: r.model,
          object: 'response',
          created_at: r.created,
          status: 'completed',
          ...(r.instructions !== undefined ? { instructions: r.instructions } : {}),
          output: [{ type: 'message', id: `msg_${r.requestId}`, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] }],
          text: { format: { type: 'text' } },
          usage: responsesUsage(r),
        },
        r,
      );
    case 'messages':
      return withKv(
        {
          id: chatId(r),
          type: 'message',
          role: 'assistant',
          content: [{ type: 'text', text }],
          model: r.model,
          stop_reason: anthropicStopReason(r.finishReason),
          stop_sequence: null,
          usage: { input_tokens: r.promptTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: r.cachedTokens, output_tokens: r.tokens.length },
        },
        r,
      );
    case 'generate':
      return withKv(
        {
          choices: [{ index: 0, finish_reason: r.finishReason, token_ids: [...r.tokenIds] }],
          request_id: r.requestId,
          ec_transfer_params: null,
        },
        r,
      );
  }
}

const data = (obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`;
const event = (name: string, obj: unknown) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;
export const SSE_DONE = 'data: [DONE]\n\n';

/**
 * Streams one completion as SSE. `head` is written when the first token is ready (after TTFT), `token(i)` for each
 * token, `tail` after the last one.
 */
export interface SseEncoder {
  head(): string;
  token(i: number): string;
  tail(): string;
}

export function sseEncoder(r: CompletionResult): SseEncoder {
  const id = chatId(r);
  const last = r.tokens.length - 1;
  switch (r.api) {
    case 'chat': {
      const chunk = (choices: unknown[], usage: unknown = null) =>
        data({ id, model: r.model, object: 'chat.completion.chunk', created: r.created, usage, choices });
      return {
        head: () => chunk([{ index: 0, finish_reason: null, delta: { role: 'assistant' } }]),
        token: (i) => chunk([{ index: 0, finish_reason: null, delta: { content: r.tokens[i] } }]),
        tail: () =>
          chunk([{ index: 0, finish_reason: r.finishReason, delta: {} }]) + (r.includeUsage ? chunk([], usageOpenAI(r)) : '') + SSE_DONE,
      };
    }
    case 'completions': {
      const chunk = (choices: unknown[], usage: unknown = null) =>
        data({ id, model: r.model, object: 'text_completion', created: r.created, usage, choices });
      return {
        head: () => '',
        token: (i) => chunk([{ index: 0, finish_reason: null, text: r.tokens[i] }]),
        tail: () => chunk([{ index: 0, finish_reason: r.finishReason, text: '' }]) + (r.includeUsage ? chunk([], usageOpenAI(r)) : '') + SSE_DONE,
      };
    }
    case 'generate': {
      return {
        head: () => '',
        token: (i) => data({ request_id: r.requestId, choices: [{ index: 0, finish_reason: i === last ? r.finishReason : null, token_ids: [r.tokenIds[i]] }] }),
        tail: () =>
          (last < 0 ? data({ request_id: r.requestId, choices: [{ index: 0, finish_reason: r.finishReason, token_ids: [] }] }) : '') +
          (r.includeUsage ? data({ request_id: r.requestId, choices: [], usage: usageOpenAI(r) }) : '') +
          SSE_DONE,
      };
    }
    case 'responses': {
      const itemId = `msg_${r.requestId}`;
      const response = (status: string, extra: Record<string, unknown> = {}) => ({
        id,
        model: r.model,
        object: 'response',
        created_at: r.created,
        status,
        text: { format: { type: 'text' } },
        ...extra,
      });
      const text = () => r.tokens.join('');
      return {
        head: () =>
          event('response.created', { type: 'response.created', response: response('in_progress') }) +
          event('response.in_progress', { type: 'response.in_progress', response: response('in_progress') }) +
          event('response.output_item.added', {
            type: 'response.output_item.added',
            output_index: 0,
            item: { type: 'message', id: itemId, role: 'assistant', status: 'in_progress', content: [] },
          }) +
          event('response.content_part.added', {
            type: 'response.content_part.added',
            item_id: itemId,
            output_index: 0,
            content_index: 0,
            part: { type: 'output_text', text: '', annotations: [] },
          }),
        token: (i) =>
          event('response.output_text.delta', { type: 'response.output_text.delta', item_id: itemId, output_index: 0, content_index: 0, delta: r.tokens[i] }),
        tail: () => {
          const full = text();
          const item = { type: 'message', id: itemId, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: full, annotations: [] }] };
          return (
            event('response.output_text.done', { type: 'response.output_text.done', item_id: itemId, output_index: 0, content_index: 0, text: full }) +
            event('response.content_part.done', {
              type: 'response.content_part.done',
              item_id: itemId,
              output_index: 0,
              content_index: 0,
              part: { type: 'output_text', text: full, annotations: [] },
            }) +
            event('response.output_item.done', { type: 'response.output_item.done', output_index: 0, item }) +
            event('response.completed', { type: 'response.completed', response: response('completed', { output: [item], usage: responsesUsage(r) }) })
          );
        },
      };
    }
    case 'messages': {
      return {
        head: () =>
          event('message_start', {
            type: 'message_start',
            message: {
              id,
              type: 'message',
              role: 'assistant',
              content: [],
              model: r.model,
              stop_reason: null,
              stop_sequence: null,
              usage: { input_tokens: r.promptTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: r.cachedTokens, output_tokens: 0 },
            },
          }) +
          event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }) +
          event('ping', { type: 'ping' }),
        token: (i) => event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: r.tokens[i] } }),
        tail: () =>
          event('content_block_stop', { type: 'content_block_stop', index: 0 }) +
          event('message_delta', {
            type: 'message_delta',
            delta: { stop_reason: anthropicStopReason(r.finishReason), stop_sequence: null },
            usage: { output_tokens: r.tokens.length },
          }) +
          event('message_stop', { type: 'message_stop' }),
      };
    }
  }
}
