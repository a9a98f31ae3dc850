/**
 * The encoder role (`--mm-encoder-only`, llm-d-inference-sim's flag for vLLM's `--mm-encoder-only` instance in E/PD):
 * the simulator answers a chat request as an encoder-only vLLM does for the routing sidecar's encode leg. The answer
 * is a normal chat completion whose text is "!" once per requested token (finish_reason "length"), plus
 * `ec_transfer_params`: one entry per multimodal item of the request, keyed by the item's hash, saying where its
 * encoder cache can be pulled from (this instance) and how big it is. llm-d-inference-sim v0.10.2 answers the same
 * shape with a fixed placeholder peer ("DUMMY":1234); pd-router names the real instance so a test can see the
 * parameters reach the prefiller.
 */
import type { JsonObject } from '../common/json.js';

/**
 * Content-part types the simulated tokenizer finds multimodal features in, and the hash prefix of each
 * (llm-d-inference-sim v0.10.2 `stubMMFeaturesForMessages`): the URL of an image or video, the data of inline audio.
 */
const MM_KINDS: Readonly<Record<string, { prefix: string; source: (part: JsonObject) => unknown }>> = {
  image_url: { prefix: 'img', source: (part) => (part.image_url as JsonObject | undefined)?.url },
  input_audio: { prefix: 'audio', source: (part) => (part.input_audio as JsonObject | undefined)?.data },
  video_url: { prefix: 'video', source: (part) => (part.video_url as JsonObject | undefined)?.url },
};

/** The size upstream's simulator reports for one item's encoder cache (a 2304x1024 bf16 embedding). */
const EC_SIZE_BYTES = 2_359_296;

/** What an encoder-only instance answers for one multimodal item. */
export interface EcTransferEntry {
  peer_host: string;
  peer_port: number;
  size_bytes: number;
  nixl_agent_metadata_b64: string;
}

/** One multimodal item of a request: its hash prefix, its index among the items of its modality, its source. */
interface MmItem {
  prefix: string;
  index: number;
  source: string;
}

/** The multimodal items of a chat request, in order (parts without a URL or data carry no features upstream). */
export function multimodalItems(body: JsonObject): MmItem[] {
  const items: MmItem[] = [];
  const counts = new Map<string, number>();
  const messages = body.messages;
  if (!Array.isArray(messages)) return items;
  for (const m of messages) {
    const content = (m as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      const type = (part as { type?: unknown } | null)?.type;
      const kind = typeof type === 'string' && Object.hasOwn(MM_KINDS, type) ? MM_KINDS[type] : undefined;
      const source = kind?.source(part as JsonObject);
      if (!kind || typeof source !== 'string' || source === '') continue;
      const index = counts.get(kind.prefix) ?? 0;
      counts.set(kind.prefix, index + 1);
      items.push({ prefix: kind.prefix, index, source });
    }
  }
  return items;
}

/** 32-bit FNV-1a of the UTF-8 bytes (Go's hash/fnv New32a). */
function fnv32a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/**
 * The multimodal hash of a content part, as llm-d-inference-sim's simulated tokenizer names it:
 * `sim_<img|audio|video>_<index among its modality>_<FNV-1a of its URL or data, hex>` (vLLM hashes the media).
 */
export function mmHash(part: JsonObject, index = 0): string {
  const kind = MM_KINDS[part.type as string];
  const source = kind?.source(part);
  if (!kind || typeof source !== 'string') throw new Error('not a multimodal part with a URL or data');
  return itemHash({ prefix: kind.prefix, index, source });
}

function itemHash(item: MmItem): string {
  return `sim_${item.prefix}_${item.index}_${fnv32a(item.source).toString(16)}`;
}

/** `ec_transfer_params` for an encode request: one entry per distinct item, pointing at this instance. */
export function ecTransferParams(body: JsonObject, host: string, port: number): Record<string, EcTransferEntry> {
  const params: Record<string, EcTransferEntry> = {};
  for (const item of multimodalItems(body)) {
    params[itemHash(item)] = {
      peer_host: host,
      peer_port: port,
      size_bytes: EC_SIZE_BYTES,
      nixl_agent_metadata_b64: Buffer.from('NIXL_METADATA_PLACEHOLDER').toString('base64'),
    };
  }
  return params;
}
