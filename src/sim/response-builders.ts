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
import { EC_TRANSFER_PARAMS, KV_TRANSFER_PARAMS, type PrefillAnswerKvParams } from '../common/pd-contract.js';

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
  /** Encoder-only instances (chat): where each multimodal item's encoder cache is (encoder.ts). */
  ecTransferParams?: Record<string, unknown>;
  includeUsage: boolean;
  /** Responses API: instructions echoed back when sent. */
  instructions?: string;
}

function usageOpenAI(result: CompletionResult) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.tokens.length,
    total_tokens: result.promptTokens + result.tokens.length,
    // Upstream sends null details with a cache_threshold answer.
    prompt_tokens_details: result.finishReason === 'cache_threshold' ? null : { cached_tokens: result.cachedTokens },
  };
}

function anthropicStopReason(field: FinishReason): string {
  return field === 'length' ? 'max_tokens' : 'end_turn';
}

function responsesUsage(result: CompletionResult) {
  return {
    input_tokens: result.promptTokens,
    output_tokens: result.tokens.length,
    total_tokens: result.promptTokens + result.tokens.length,
    input_tokens_details: { cached_tokens: result.cachedTokens },
  };
}

function withKv<T extends Record<string, unknown>>(body: T, result: CompletionResult): T {
  if (result.kvTransferParams) (body as Record<string, unknown>)[KV_TRANSFER_PARAMS] = result.kvTransferParams;
  if (result.ecTransferParams) (body as Record<string, unknown>)[EC_TRANSFER_PARAMS] = result.ecTransferParams;
  return body;
}

export function chatId(result: CompletionResult): string {
  switch (result.api) {
    case 'chat':
      return `chatcmpl-${result.requestId}`;
    case 'completions':
      return `cmpl-${result.requestId}`;
    case 'responses':
      return `resp_${result.requestId}`;
    case 'messages':
      return `msg_${result.requestId}`;
    case 'generate':
      return result.requestId;
  }
}

/** The non-streaming JSON body. */
export function completionBody(result: CompletionResult): Record<string, unknown> {
  const text = result.tokens.join('');
  switch (result.api) {
    case 'chat':
      return withKv(
        {
          id: chatId(result),
          model: result.model,
          object: 'chat.completion',
          created: result.created,
          usage: usageOpenAI(result),
          choices: [{ index: 0, finish_reason: result.finishReason, message: { role: 'assistant', content: text } }],
        },
        result,
      );
    case 'completions':
      return withKv(
        {
          id: chatId(result),
          model: result.model,
          object: 'text_completion',
          created: result.created,
          usage: usageOpenAI(result),
          choices: [{ index: 0, finish_reason: result.finishReason, text }],
        },
        result,
      );
    case 'responses':
      return withKv(
        {
          id: chatId(result),
          model: result.model,
          object: 'response',
          created_at: result.created,
          status: 'completed',
          ...(result.instructions !== undefined ? { instructions: result.instructions } : {}),
          output: [
            {
              type: 'message',
              id: `msg_${result.requestId}`,
              role: 'assistant',
              status: 'completed',
              content: [{ type: 'output_text', text, annotations: [] }],
            },
          ],
          text: { format: { type: 'text' } },
          usage: responsesUsage(result),
        },
        result,
      );
    case 'messages':
      return withKv(
        {
          id: chatId(result),
          type: 'message',
          role: 'assistant',
          content: [{ type: 'text', text }],
          model: result.model,
          stop_reason: anthropicStopReason(result.finishReason),
          stop_sequence: null,
          usage: {
            input_tokens: result.promptTokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: result.cachedTokens,
            output_tokens: result.tokens.length,
          },
        },
        result,
      );
    case 'generate':
      return withKv(
        {
          choices: [{ index: 0, finish_reason: result.finishReason, token_ids: [...result.tokenIds] }],
          request_id: result.requestId,
          ec_transfer_params: null,
        },
        result,
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

export function sseEncoder(result: CompletionResult): SseEncoder {
  const id = chatId(result);
  const last = result.tokens.length - 1;
  switch (result.api) {
    case 'chat': {
      const chunk = (choices: unknown[], usage: unknown = null) =>
        data({ id, model: result.model, object: 'chat.completion.chunk', created: result.created, usage, choices });
      return {
        head: () => chunk([{ index: 0, finish_reason: null, delta: { role: 'assistant' } }]),
        token: (i) => chunk([{ index: 0, finish_reason: null, delta: { content: result.tokens[i] } }]),
        tail: () =>
          chunk([{ index: 0, finish_reason: result.finishReason, delta: {} }]) +
          (result.includeUsage ? chunk([], usageOpenAI(result)) : '') +
          SSE_DONE,
      };
    }
    case 'completions': {
      const chunk = (choices: unknown[], usage: unknown = null) =>
        data({ id, model: result.model, object: 'text_completion', created: result.created, usage, choices });
      return {
        head: () => '',
        token: (i) => chunk([{ index: 0, finish_reason: null, text: result.tokens[i] }]),
        tail: () =>
          chunk([{ index: 0, finish_reason: result.finishReason, text: '' }]) +
          (result.includeUsage ? chunk([], usageOpenAI(result)) : '') +
          SSE_DONE,
      };
    }
    case 'generate': {
      return {
        head: () => '',
        token: (i) =>
          data({
            request_id: result.requestId,
            choices: [
              { index: 0, finish_reason: i === last ? result.finishReason : null, token_ids: [result.tokenIds[i]] },
            ],
          }),
        tail: () =>
          (last < 0
            ? data({
                request_id: result.requestId,
                choices: [{ index: 0, finish_reason: result.finishReason, token_ids: [] }],
              })
            : '') +
          (result.includeUsage ? data({ request_id: result.requestId, choices: [], usage: usageOpenAI(result) }) : '') +
          SSE_DONE,
      };
    }
    case 'responses': {
      const itemId = `msg_${result.requestId}`;
      const response = (status: string, extra: Record<string, unknown> = {}) => ({
        id,
        model: result.model,
        object: 'response',
        created_at: result.created,
        status,
        text: { format: { type: 'text' } },
        ...extra,
      });
      const text = () => result.tokens.join('');
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
          event('response.output_text.delta', {
            type: 'response.output_text.delta',
            item_id: itemId,
            output_index: 0,
            content_index: 0,
            delta: result.tokens[i],
          }),
        tail: () => {
          const full = text();
          const item = {
            type: 'message',
            id: itemId,
            role: 'assistant',
            status: 'completed',
            content: [{ type: 'output_text', text: full, annotations: [] }],
          };
          return (
            event('response.output_text.done', {
              type: 'response.output_text.done',
              item_id: itemId,
              output_index: 0,
              content_index: 0,
              text: full,
            }) +
            event('response.content_part.done', {
              type: 'response.content_part.done',
              item_id: itemId,
              output_index: 0,
              content_index: 0,
              part: { type: 'output_text', text: full, annotations: [] },
            }) +
            event('response.output_item.done', { type: 'response.output_item.done', output_index: 0, item }) +
            event('response.completed', {
              type: 'response.completed',
              response: response('completed', { output: [item], usage: responsesUsage(result) }),
            })
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
              model: result.model,
              stop_reason: null,
              stop_sequence: null,
              usage: {
                input_tokens: result.promptTokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: result.cachedTokens,
                output_tokens: 0,
              },
            },
          }) +
          event('content_block_start', {
            type: 'content_block_start',
            index: 0,
            content_block: { type: 'text', text: '' },
          }) +
          event('ping', { type: 'ping' }),
        token: (i) =>
          event('content_block_delta', {
            type: 'content_block_delta',
            index: 0,
            delta: { type: 'text_delta', text: result.tokens[i] },
          }),
        tail: () =>
          event('content_block_stop', { type: 'content_block_stop', index: 0 }) +
          event('message_delta', {
            type: 'message_delta',
            delta: { stop_reason: anthropicStopReason(result.finishReason), stop_sequence: null },
            usage: { output_tokens: result.tokens.length },
          }) +
          event('message_stop', { type: 'message_stop' }),
      };
    }
  }
}
