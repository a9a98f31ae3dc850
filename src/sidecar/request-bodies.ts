/**
 * The bodies of the two legs, per llm-d's wire contract:
 * - NIXL v2 prefill: the client's body with `kv_transfer_params` overwritten by the do_remote_decode shape, `stream`
 *   false, `stream_options` removed and every token-limit field of the API type set to 1 (generate: inside
 *   `sampling_params`, created if absent);
 * - NIXL v2 decode: the client's own body (its stream, stream_options and token fields exactly as sent, or absent) with
 *   `kv_transfer_params` set to the prefiller's, copied verbatim.
 * The client's parsed body is never mutated, so the decode leg needs no "restore" step.
 */
import { TOKEN_LIMIT_FIELDS, type ApiType } from '../common/index.js';
import { KV_TRANSFER_PARAMS, PREFILL_LEG_KV_PARAMS } from '../common/pd-contract.js';
import { isObject, type JsonObject } from '../common/json.js';

/** Sets every token-limit field of the API type to `value` on `out`, a copy of the client's body (nested objects copied too). */
function setTokenLimits(api: ApiType, out: JsonObject, value: number): void {
  const { container, fields } = TOKEN_LIMIT_FIELDS[api];
  if (container === 'root') {
    for (const f of fields) out[f] = value;
  } else {
    const prev = out[container];
    const nested: JsonObject = isObject(prev) ? { ...prev } : {};
    for (const f of fields) nested[f] = value;
    out[container] = nested;
  }
}

/**
 * The NIXL v2 prefill leg's body: token limits 1, no streaming, the prefill-leg kv_transfer_params (plus `extraKv`,
 * e.g. a remote_kv_source pull composed with --enable-p2p-pull).
 */
export function nixlPrefillBody(api: ApiType, body: JsonObject, extraKv?: JsonObject): JsonObject {
  // Rest destructuring instead of `delete`: the copy keeps V8's fast properties, so serializing it stays cheap.
  const { stream_options: _clientStreamOptions, ...out } = body;
  setTokenLimits(api, out, 1);
  out[KV_TRANSFER_PARAMS] = { ...PREFILL_LEG_KV_PARAMS, ...extraKv };
  out.stream = false;
  return out;
}

/** The NIXL v2 decode leg's body: the client's, with the prefiller's kv_transfer_params. */
export function nixlDecodeBody(body: JsonObject, prefillKvParams: unknown): JsonObject {
  return { ...body, [KV_TRANSFER_PARAMS]: prefillKvParams ?? null };
}

/**
 * The decode leg's bytes: the client's raw body with `kv_transfer_params` appended before its closing brace, so the
 * client's JSON reaches vLLM byte for byte and a large prompt is not serialized again. Falls back to serializing the
 * parsed body when the client sent kv_transfer_params itself (it must be replaced, not duplicated).
 */
export function nixlDecodeBytes(raw: Buffer, body: JsonObject, prefillKvParams: unknown): Buffer | string {
  if (!(KV_TRANSFER_PARAMS in body)) {
    let end = raw.length - 1;
    while (end >= 0 && (raw[end] === 0x20 || raw[end] === 0x0a || raw[end] === 0x0d || raw[end] === 0x09)) end--;
    if (end > 0 && raw[end] === 0x7d /* } */) {
      let empty = true;
      for (const _ in body) {
        empty = false;
        break;
      }
      const tail = `${empty ? '' : ','}"${KV_TRANSFER_PARAMS}":${JSON.stringify(prefillKvParams ?? null)}}`;
      return Buffer.concat([raw.subarray(0, end), Buffer.from(tail)]);
    }
  }
  return JSON.stringify(nixlDecodeBody(body, prefillKvParams));
}

/**
 * The prefill leg of the concurrent connectors (mooncake, offloading), as llm-d's PrimeSingleTokenRequest builds it:
 * `kv_transfer_params` set, max_tokens 1, max_completion_tokens 1 only when the client sent it, stream false,
 * stream_options removed. Unlike NIXL's, it does not follow the API type (no max_output_tokens, no sampling_params).
 */
export function singleTokenPrefillBody(body: JsonObject, kvParams: JsonObject): JsonObject {
  const { stream_options: _clientStreamOptions, ...out } = body;
  out[KV_TRANSFER_PARAMS] = kvParams;
  out.max_tokens = 1;
  if (Object.hasOwn(body, 'max_completion_tokens')) out.max_completion_tokens = 1;
  out.stream = false;
  return out;
}

/** The client's body with `kv_transfer_params` set (the concurrent connectors' decode leg, a P2P pull). */
export function withKvParams(body: JsonObject, kvParams: JsonObject): JsonObject {
  return { ...body, [KV_TRANSFER_PARAMS]: kvParams };
}

/** SGLang: one body for both legs, the client's plus the bootstrap triple; no token capping, stream unchanged. */
export function sglangBody(
  body: JsonObject,
  bootstrapHost: string,
  bootstrapPort: number,
  bootstrapRoom: number,
): JsonObject {
  return { ...body, bootstrap_host: bootstrapHost, bootstrap_port: bootstrapPort, bootstrap_room: bootstrapRoom };
}

/** Shared-storage prefill: max_tokens and max_completion_tokens 1, cache_hit_threshold 0; stream untouched. */
export function sharedStoragePrefillBody(body: JsonObject): JsonObject {
  return { ...body, max_tokens: 1, max_completion_tokens: 1, cache_hit_threshold: 0 };
}

/** The prefiller's cached prompt tokens: usage.prompt_tokens_details.cached_tokens (responses: input_tokens_details). */
export function cachedTokensOf(response: JsonObject): number {
  const usage = response.usage as JsonObject | undefined;
  if (!usage || typeof usage !== 'object') return 0;
  const details = (usage.prompt_tokens_details ?? usage.input_tokens_details) as JsonObject | undefined | null;
  const n = details && typeof details === 'object' ? details.cached_tokens : undefined;
  return typeof n === 'number' && Number.isFinite(n) ? n : 0;
}
