/**
 * The encoder role (`--mm-encoder-only`, llm-d-inference-sim's flag for vLLM's `--mm-encoder-only` instance in E/PD):
 * the simulator answers a chat request as an encoder-only vLLM does for the routing sidecar's encode leg. The answer
 * is a normal chat completion whose text is "!" once per requested token (finish_reason "length"), plus
 * `ec_transfer_params`: one entry per multimodal item of the request, keyed by the item's hash, saying where its
 * encoder cache can be pulled from (this instance) and how big it is. llm-d-inference-sim v0.10.2 answers the same
 * shape with a fixed placeholder peer ("DUMMY":1234); pd-router names the real instance so a test can see the
 * parameters reach the prefiller.
 */
import { createHash } from 'node:crypto';
import type { JsonObject } from '../common/json.js';

/** Content-part types vLLM encodes as multimodal items (the sidecar's set, llm-d-router connector_ec_common.go). */
const MM_TYPES = new Set(['image_url', 'audio_url', 'video_url', 'input_audio']);

/** The size upstream's simulator reports for one item's encoder cache (a 2304x1024 bf16 embedding). */
const EC_SIZE_BYTES = 2_359_296;

/** What an encoder-only instance answers for one multimodal item. */
export interface EcTransferEntry {
  peer_host: string;
  peer_port: number;
  size_bytes: number;
  nixl_agent_metadata_b64: string;
}

/** The multimodal content parts of a chat request, in order. */
export function multimodalItems(body: JsonObject): JsonObject[] {
  const items: JsonObject[] = [];
  const messages = body.messages;
  if (!Array.isArray(messages)) return items;
  for (const m of messages) {
    const content = (m as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      const type = (part as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && MM_TYPES.has(type)) items.push(part as JsonObject);
    }
  }
  return items;
}

/** JSON with object keys sorted: the same item hashes the same whichever order a router wrote its keys in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([left], [right]) =>
      left < right ? -1 : left > right ? 1 : 0,
    );
    return `{${entries.map(([name, field]) => `${JSON.stringify(name)}:${canonicalJson(field)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * A stable hash of one item (vLLM hashes the decoded media; the simulator hashes the part as sent, keys sorted: Go's
 * sidecar re-encodes the part with sorted keys, pd-router's keeps the client's order).
 */
export function mmHash(item: JsonObject): string {
  return createHash('sha256').update(canonicalJson(item)).digest('hex');
}

/** `ec_transfer_params` for an encode request: one entry per distinct item, pointing at this instance. */
export function ecTransferParams(body: JsonObject, host: string, port: number): Record<string, EcTransferEntry> {
  const params: Record<string, EcTransferEntry> = {};
  for (const item of multimodalItems(body)) {
    params[mmHash(item)] = {
      peer_host: host,
      peer_port: port,
      size_bytes: EC_SIZE_BYTES,
      nixl_agent_metadata_b64: Buffer.from('NIXL_METADATA_PLACEHOLDER').toString('base64'),
    };
  }
  return params;
}
