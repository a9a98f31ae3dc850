/**
 * The inference APIs pd-router understands, how to recognise them by path, and which body fields limit output length.
 * The token-limit table is llm-d's sidecar contract: on the prefill leg every field listed here is forced to 1, because
 * vLLM honours whichever of them is present (max_completion_tokens wins over max_tokens) and an uncapped field made the
 * prefiller generate many tokens (llm-d-routing-sidecar#58).
 */
import { isObject, type JsonObject } from '../json.js';

export type ApiType = 'chat' | 'completions' | 'responses' | 'messages' | 'generate';

export const INFERENCE_PATHS: Readonly<Record<string, ApiType>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/responses': 'responses',
  '/v1/messages': 'messages',
  '/inference/v1/generate': 'generate',
};

export interface TokenLimitFields {
  /** Object holding the fields: the body root, or a nested object key (generate keeps them in sampling_params). */
  container: 'root' | 'sampling_params';
  fields: readonly string[];
}

const CHAT_LIKE: TokenLimitFields = { container: 'root', fields: ['max_tokens', 'max_completion_tokens', 'min_tokens'] };

/** Token-limit fields per API type; completions and messages share the chat fields, as upstream does. */
export const TOKEN_LIMIT_FIELDS: Readonly<Record<ApiType, TokenLimitFields>> = {
  chat: CHAT_LIKE,
  completions: CHAT_LIKE,
  messages: CHAT_LIKE,
  responses: { container: 'root', fields: ['max_output_tokens'] },
  generate: { container: 'sampling_params', fields: ['max_tokens', 'min_tokens'] },
};

function positiveInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
}

/**
 * The output-token budget a request asks for, as vLLM reads it: max_completion_tokens over max_tokens for chat,
 * max_output_tokens for responses, sampling_params.max_tokens for generate. Undefined when the client set none.
 */
export function requestedMaxTokens(api: ApiType, body: JsonObject): number | undefined {
  switch (api) {
    case 'chat':
      return positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens);
    case 'completions':
    case 'messages':
      return positiveInt(body.max_tokens) ?? positiveInt(body.max_completion_tokens);
    case 'responses':
      return positiveInt(body.max_output_tokens);
    case 'generate':
      return isObject(body.sampling_params) ? positiveInt(body.sampling_params.max_tokens) : undefined;
  }
}

/** Lower bound on output tokens (vLLM's min_tokens), 0 when absent. */
export function requestedMinTokens(api: ApiType, body: JsonObject): number {
  if (api === 'generate') return isObject(body.sampling_params) ? (positiveInt(body.sampling_params.min_tokens) ?? 0) : 0;
  if (api === 'responses') return 0;
  return positiveInt(body.min_tokens) ?? 0;
}

/** stream_options.include_usage, which asks for a final usage chunk in a stream. */
export function includeUsageInStream(body: JsonObject): boolean {
  return isObject(body.stream_options) && body.stream_options.include_usage === true;
}
