/**
 * Request validation, in llm-d-inference-sim's order and with its messages: first the body must parse and have the
 * right field types ("Failed to read and parse request body, ..."), then the semantic checks (n, token limits,
 * streaming of a prefill, empty messages, ...). Unknown fields are allowed, as in vLLM.
 */
import { z } from 'zod';
import type { ApiType } from '../common/index.js';
import { EXTRA_ARGS, KV_TRANSFER_PARAMS, SAMPLING_PARAMS } from '../common/pd-contract.js';
import type { JsonObject } from '../common/json.js';

const int = z.number().int();
const optInt = int.nullish();
const kvParams = z.record(z.string(), z.unknown()).nullish();
const message = z.looseObject({ role: z.string(), content: z.union([z.string(), z.array(z.unknown()), z.null()]).optional() });

const common = {
  model: z.string().optional(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  n: optInt,
  max_tokens: optInt,
  max_completion_tokens: optInt,
  min_tokens: optInt,
  ignore_eos: z.boolean().nullish(),
  [KV_TRANSFER_PARAMS]: kvParams,
  cache_salt: z.string().nullish(),
};

const SCHEMAS: Record<ApiType, z.ZodType<Record<string, unknown>>> = {
  chat: z.looseObject({ ...common, messages: z.array(message) }),
  completions: z.looseObject({
    ...common,
    prompt: z.union([z.string(), z.array(z.string()), z.array(int), z.array(z.array(int))]),
  }),
  responses: z.looseObject({
    ...common,
    input: z.union([z.string(), z.array(z.unknown())]),
    instructions: z.string().nullish(),
    max_output_tokens: optInt,
  }),
  messages: z.looseObject({
    ...common,
    messages: z.array(message),
    system: z.union([z.string(), z.array(z.unknown())]).nullish(),
  }),
  generate: z.looseObject({
    ...common,
    token_ids: z.array(int).nullish(),
    [SAMPLING_PARAMS]: z
      .looseObject({
        max_tokens: optInt,
        min_tokens: optInt,
        [EXTRA_ARGS]: z.looseObject({ [KV_TRANSFER_PARAMS]: kvParams }).nullish(),
      })
      .nullish(),
  }),
};

const MISSING_INPUT: Partial<Record<ApiType, string>> = {
  responses: 'input is required',
  completions: 'prompt must be a string, an array of strings, an array of token ids, or an array of arrays of token ids',
};

/** Type-checks a parsed body; returns the error message (without the upstream prefix) or undefined. */
export function typeError(api: ApiType, body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'request body must be a JSON object';
  const r = SCHEMAS[api].safeParse(body);
  if (r.success) return undefined;
  const issue = r.error.issues[0]!;
  const path = issue.path.join('.');
  if (MISSING_INPUT[api] && (path === 'input' || path === 'prompt')) {
    if ((body as Record<string, unknown>)[path] === undefined) return MISSING_INPUT[api];
    return MISSING_INPUT[api];
  }
  const got = describe(issue.path.reduce<unknown>((acc, k) => (acc as Record<string | number, unknown> | undefined)?.[k as string], body));
  return `field "${path}" has the wrong type (got ${got}): ${issue.message}`;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Semantic checks after the model is known; returns the 400 message or undefined. */
export function semanticError(api: ApiType, body: JsonObject, prefillOnly: boolean): string | undefined {
  if (typeof body.n === 'number' && body.n <= 0) return 'n must be at least 1';
  const sp = (body.sampling_params ?? {}) as JsonObject;
  const maxFields = api === 'generate' ? [sp.max_tokens] : api === 'responses' ? [body.max_output_tokens] : [body.max_tokens, body.max_completion_tokens];
  if (maxFields.some((value) => typeof value === 'number' && value <= 0)) return 'Max completion tokens and max tokens should be positive';
  const min = api === 'generate' ? sp.min_tokens : body.min_tokens;
  if (typeof min === 'number') {
    if (min < 0) return `min_tokens must be greater than or equal to 0, got ${min}.`;
    const max = maxFields.find((value): value is number => typeof value === 'number');
    if (max !== undefined && min > max) return `min_tokens must be less than or equal to max_tokens=${max}, got ${min}.`;
  }
  if (prefillOnly && body.stream === true) return 'Prefill does not support streaming';
  const cht = body.cache_hit_threshold;
  if (cht !== undefined && cht !== null && (typeof cht !== 'number' || cht < 0 || cht > 1)) return 'cache_hit_threshold must be between 0 and 1';
  if (body.ignore_eos === true && !maxFields.some((value) => typeof value === 'number')) {
    return 'Ignore_eos is true but max_completion_tokens (or max_tokens) is not set';
  }
  switch (api) {
    case 'chat':
      if ((body.messages as unknown[]).length === 0) return 'messages must not be empty';
      break;
    case 'messages':
      if (typeof body.max_tokens !== 'number') return 'max_tokens is required';
      if ((body.messages as unknown[]).length === 0) return 'messages must not be empty';
      break;
    case 'completions': {
      const p = body.prompt;
      if (Array.isArray(p)) {
        if (p.length === 0) return 'prompt array must contain at least one prompt';
        if (p.some((value) => value === '')) return 'prompt must not contain an empty string';
        if (p.some((value) => Array.isArray(value) && value.length === 0)) return 'prompt must not contain an empty token-id array';
      }
      break;
    }
    case 'generate':
      if (body.token_ids === undefined || body.token_ids === null) return 'Missing input token_ids';
      if (body.sampling_params === undefined || body.sampling_params === null) return 'Missing sampling_params field';
      break;
    case 'responses':
      break;
  }
  return undefined;
}

/** kv_transfer_params of a request: at the root, or (generate only) in sampling_params.extra_args when the root has none. */
export function kvTransferParamsOf(api: ApiType, body: JsonObject): JsonObject | undefined {
  const root = body[KV_TRANSFER_PARAMS];
  if (root && typeof root === 'object') return root as JsonObject;
  if (api === 'generate') {
    const extra = ((body[SAMPLING_PARAMS] as JsonObject | undefined)?.[EXTRA_ARGS] as JsonObject | undefined)?.[KV_TRANSFER_PARAMS];
    if (extra && typeof extra === 'object') return extra as JsonObject;
  }
  return undefined;
}
