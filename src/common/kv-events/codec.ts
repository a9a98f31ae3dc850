/**
 * vLLM's KV-cache event messages (`vllm/distributed/kv_events.py`), decoded and encoded exactly as vLLM defines them.
 *
 * A ZMQ message is three frames: topic (`kv@<pod-ip>@<model>` in llm-d deployments), an 8-byte big-endian sequence
 * number, and a msgpack payload: `KVEventBatch(ts: float, events: list[...], data_parallel_rank: int | None = None)`.
 * Events are a msgspec tagged union with `omit_defaults`:
 *
 *   BlockStored(block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium, lora_name, extra_keys=None,
 *               group_idx=None, kv_cache_spec_kind=None, kv_cache_spec_sliding_window=None)
 *   BlockRemoved(block_hashes, medium, group_idx=None)
 *   AllBlocksCleared()
 *
 * vLLM v0.10.2 has the BlockStored fields up to `medium`, later versions (v0.11.2, v0.19.1) add `lora_name`, then
 * `extra_keys` and the hybrid-allocator fields. Up to those versions the structs are `array_like`: a batch is
 * `[ts, events, rank?]` and an event `[tag, field, ...]`, trailing defaults omitted. Newer vLLM (#42892) and
 * llm-d-inference-sim's `--use-vllm-map-event-format` encode maps instead, the tag under `type`. Both forms are decoded
 * (as llm-d-kv-cache's vLLM adapter does); extra trailing fields of a newer vLLM are ignored. A block hash is an int
 * (vLLM's default, `VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES`) or bytes (its last 8 bytes, big-endian, as llm-d reads them).
 *
 * Malformed input throws a `KvEventDecodeError` naming what is wrong; an event of an unknown type decodes to
 * `{ type: 'unknown' }` so the rest of its batch still applies.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { u64FromBigInt, ZERO_U64, type U64 } from './block-keys.js';

export const EVENT_BLOCK_STORED = 'BlockStored';
export const EVENT_BLOCK_REMOVED = 'BlockRemoved';
export const EVENT_ALL_BLOCKS_CLEARED = 'AllBlocksCleared';

export interface BlockStoredEvent {
  type: typeof EVENT_BLOCK_STORED;
  blockHashes: U64[];
  /** undefined: the first block of a sequence (None, or llm-d-inference-sim's 0). */
  parentBlockHash: U64 | undefined;
  tokenIds: Uint32Array;
  blockSize: number;
  loraId: number | undefined;
  medium: string | undefined;
  loraName: string | undefined;
  /** Per block: extra hash inputs (multimodal ids, LoRA, cache salt); undefined when absent. */
  extraKeys: Array<unknown[] | null> | undefined;
  groupIdx: number | undefined;
}

export interface BlockRemovedEvent {
  type: typeof EVENT_BLOCK_REMOVED;
  blockHashes: U64[];
  medium: string | undefined;
  groupIdx: number | undefined;
}

export interface AllBlocksClearedEvent {
  type: typeof EVENT_ALL_BLOCKS_CLEARED;
}

export interface UnknownEvent {
  type: 'unknown';
  tag: string;
}

export type KvCacheEvent = BlockStoredEvent | BlockRemovedEvent | AllBlocksClearedEvent | UnknownEvent;

export interface KvEventBatch {
  ts: number;
  events: KvCacheEvent[];
  dataParallelRank: number | undefined;
}

export class KvEventDecodeError extends Error {
  override readonly name = 'KvEventDecodeError';
}

function bad(message: string): never {
  throw new KvEventDecodeError(message);
}

/** Bounds on what one payload may allocate while decoding (the payload size itself is bounded by the caller). */
export interface DecodeLimits {
  /** Longest array (events in a batch, hashes or token ids in an event). */
  maxArrayLength: number;
  maxStringLength: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = { maxArrayLength: 1 << 20, maxStringLength: 1 << 16 };

const decoders = new Map<string, Decoder>();
function decoderFor(limits: DecodeLimits): Decoder {
  const key = `${limits.maxArrayLength}/${limits.maxStringLength}`;
  let d = decoders.get(key);
  if (!d) {
    d = new Decoder({
      useBigInt64: true,
      maxArrayLength: limits.maxArrayLength,
      maxMapLength: 64,
      maxStrLength: limits.maxStringLength,
      maxBinLength: limits.maxStringLength,
      maxExtLength: 0,
    });
    decoders.set(key, d);
  }
  return d;
}

const isMap = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);

function int(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'bigint') {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER))
      bad(`${what} ${value} is out of range`);
    return Number(value);
  }
  return bad(`${what} is not an integer (${describe(value)})`);
}

function optInt(value: unknown, what: string): number | undefined {
  return value === null || value === undefined ? undefined : int(value, what);
}

function optString(value: unknown, what: string): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string') bad(`${what} is not a string (${describe(value)})`);
  return value;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (value instanceof Uint8Array) return 'bytes';
  if (Array.isArray(value)) return 'array';
  return typeof value === 'object' ? 'map' : typeof value;
}

/** An engine block hash: int (two's complement for negative int64, as Go's uint64(int64)) or bytes (last 8, BE). */
export function blockHash(value: unknown, what = 'block hash'): U64 {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) bad(`${what} is not an integer`);
    return value >= 0 ? { hi: Math.floor(value / 4294967296), lo: value >>> 0 } : u64FromBigInt(BigInt(value));
  }
  if (typeof value === 'bigint') return u64FromBigInt(value);
  if (value instanceof Uint8Array) {
    if (value.length === 0) bad(`${what} is empty bytes`);
    const b = new Uint8Array(8);
    b.set(value.subarray(Math.max(0, value.length - 8)), 8 - Math.min(8, value.length));
    const dv = new DataView(b.buffer);
    return { hi: dv.getUint32(0), lo: dv.getUint32(4) };
  }
  return bad(`${what} is neither an integer nor bytes (${describe(value)})`);
}

function hashes(value: unknown, what: string): U64[] {
  if (!Array.isArray(value)) bad(`${what} is not an array (${describe(value)})`);
  return value.map((hash, i) => blockHash(hash, `${what}[${i}]`));
}

function tokenIds(value: unknown): Uint32Array {
  if (!Array.isArray(value)) bad(`token_ids is not an array (${describe(value)})`);
  const out = new Uint32Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const token: unknown = value[i];
    if (typeof token !== 'number' || !Number.isInteger(token) || token < 0 || token > 0xffffffff)
      bad(`token_ids[${i}] is not a token id (${describe(token)})`);
    out[i] = token;
  }
  return out;
}

const STORED_FIELDS = [
  'block_hashes',
  'parent_block_hash',
  'token_ids',
  'block_size',
  'lora_id',
  'medium',
  'lora_name',
  'extra_keys',
  'group_idx',
] as const;
const REMOVED_FIELDS = ['block_hashes', 'medium', 'group_idx'] as const;

/** The positional fields (after the tag) of an array- or map-encoded event. */
function fieldsOf(raw: unknown): { tag: string; fields: unknown[] } {
  if (Array.isArray(raw)) {
    if (raw.length === 0) bad('event is an empty array (no tag)');
    if (typeof raw[0] !== 'string') bad(`event tag is not a string (${describe(raw[0])})`);
    return { tag: raw[0], fields: raw.slice(1) };
  }
  if (isMap(raw)) {
    const tag = raw.type;
    if (typeof tag !== 'string') bad('map-encoded event has no string "type" tag');
    const order: readonly string[] =
      tag === EVENT_BLOCK_STORED ? STORED_FIELDS : tag === EVENT_BLOCK_REMOVED ? REMOVED_FIELDS : [];
    return { tag, fields: order.map((k) => raw[k]) };
  }
  return bad(`event is neither an array nor a map (${describe(raw)})`);
}

export function decodeEvent(raw: unknown): KvCacheEvent {
  const { tag, fields: f } = fieldsOf(raw);
  switch (tag) {
    case EVENT_BLOCK_STORED: {
      if (f.length < 4) bad(`BlockStored has ${f.length} fields, needs at least 4`);
      const blockHashes = hashes(f[0], 'block_hashes');
      const parent = f[1] === null || f[1] === undefined ? undefined : blockHash(f[1], 'parent_block_hash');
      const extra = f[7];
      if (extra !== null && extra !== undefined && !Array.isArray(extra))
        bad(`extra_keys is not an array (${describe(extra)})`);
      const blockSize = int(f[3], 'block_size');
      if (blockSize <= 0) bad(`block_size ${blockSize} is not positive`);
      return {
        type: EVENT_BLOCK_STORED,
        blockHashes,
        // llm-d-inference-sim's array form sends 0 for "no parent", which llm-d reads as none too.
        parentBlockHash: parent && (parent.hi !== 0 || parent.lo !== 0) ? parent : undefined,
        tokenIds: tokenIds(f[2]),
        blockSize,
        loraId: optInt(f[4], 'lora_id'),
        medium: optString(f[5], 'medium'),
        loraName: optString(f[6], 'lora_name'),
        extraKeys: Array.isArray(extra)
          ? (extra as unknown[]).map((keys, i) =>
              keys === null || Array.isArray(keys) ? keys : bad(`extra_keys[${i}] is not an array or nil`),
            )
          : undefined,
        groupIdx: optInt(f[8], 'group_idx'),
      };
    }
    case EVENT_BLOCK_REMOVED:
      if (f.length < 1) bad('BlockRemoved has no block_hashes');
      return {
        type: EVENT_BLOCK_REMOVED,
        blockHashes: hashes(f[0], 'block_hashes'),
        medium: optString(f[1], 'medium'),
        groupIdx: optInt(f[2], 'group_idx'),
      };
    case EVENT_ALL_BLOCKS_CLEARED:
      return { type: EVENT_ALL_BLOCKS_CLEARED };
    default:
      return { type: 'unknown', tag: tag.slice(0, 64) };
  }
}

/** Decodes a batch payload; throws KvEventDecodeError on malformed or truncated input. */
export function decodeEventBatch(payload: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): KvEventBatch {
  let raw: unknown;
  try {
    raw = decoderFor(limits).decode(payload);
  } catch (e) {
    bad(`not a msgpack value: ${(e as Error).message}`);
  }
  let ts: unknown;
  let events: unknown;
  let rank: unknown;
  if (Array.isArray(raw)) [ts, events, rank] = raw as unknown[];
  else if (isMap(raw)) ({ ts, events, data_parallel_rank: rank } = raw);
  else bad(`batch is neither an array nor a map (${describe(raw)})`);
  if (typeof ts !== 'number' && typeof ts !== 'bigint') bad(`batch ts is not a number (${describe(ts)})`);
  if (!Array.isArray(events)) bad(`batch events is not an array (${describe(events)})`);
  return { ts: Number(ts), events: events.map(decodeEvent), dataParallelRank: optInt(rank, 'data_parallel_rank') };
}

/** `kv@<pod-id>@<model>` → its parts; any other topic is the pod id with no model (llm-d's parseTopic). */
export function parseTopic(topic: string): { podId: string; model: string } {
  const parts = topic.split('@');
  return parts.length === 3 ? { podId: parts[1], model: parts[2] } : { podId: topic, model: '' };
}

export function formatTopic(podId: string, model: string): string {
  return `kv@${podId}@${model}`;
}

/** The sequence frame: 8 bytes, big-endian unsigned. */
export function encodeSequence(seq: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, seq));
  return b;
}

// --- encoding (the simulator's publisher, tests) -------------------------------------------------------------------

export type EventFormat = 'array' | 'map';

const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: false });

const hashValue = (hash: U64): bigint | number =>
  hash.hi < 0x200000 ? hash.hi * 4294967296 + hash.lo : (BigInt(hash.hi) << 32n) | BigInt(hash.lo);

/** One event as vLLM (v0.11+ field set, without the hybrid-allocator fields) encodes it. */
function encodableEvent(event: Exclude<KvCacheEvent, UnknownEvent>, format: EventFormat): unknown {
  switch (event.type) {
    case EVENT_BLOCK_STORED: {
      const fields = [
        event.blockHashes.map(hashValue),
        event.parentBlockHash ? hashValue(event.parentBlockHash) : null,
        Array.from(event.tokenIds),
        event.blockSize,
        event.loraId ?? null,
        event.medium ?? null,
        event.loraName ?? null,
      ];
      if (format === 'array') return [EVENT_BLOCK_STORED, ...fields];
      return {
        type: EVENT_BLOCK_STORED,
        ...Object.fromEntries(STORED_FIELDS.slice(0, fields.length).map((k, i) => [k, fields[i]])),
      };
    }
    case EVENT_BLOCK_REMOVED:
      return format === 'array'
        ? [EVENT_BLOCK_REMOVED, event.blockHashes.map(hashValue), event.medium ?? null]
        : { type: EVENT_BLOCK_REMOVED, block_hashes: event.blockHashes.map(hashValue), medium: event.medium ?? null };
    case EVENT_ALL_BLOCKS_CLEARED:
      return format === 'array' ? [EVENT_ALL_BLOCKS_CLEARED] : { type: EVENT_ALL_BLOCKS_CLEARED };
  }
}

/** msgpack of a batch; `ts` always encodes as a float64, as msgspec encodes Python floats. */
export function encodeEventBatch(
  batch: { ts: number; events: Array<Exclude<KvCacheEvent, UnknownEvent>>; dataParallelRank?: number },
  format: EventFormat = 'array',
): Uint8Array {
  const events = batch.events.map((event) => encodableEvent(event, format));
  const body =
    format === 'array'
      ? encoder.encode(batch.dataParallelRank === undefined ? [0, events] : [0, events, batch.dataParallelRank])
      : encoder.encode(
          batch.dataParallelRank === undefined
            ? { ts: 0, events }
            : { ts: 0, events, data_parallel_rank: batch.dataParallelRank },
        );
  // The placeholder ts (fixint 0) is replaced by a float64 (0xcb + 8 bytes): an integral JS number would encode as int.
  const at = format === 'array' ? 1 : 4; // after the array head, or after the map head and "ts" key
  const out = new Uint8Array(body.length + 8);
  out.set(body.subarray(0, at), 0);
  out[at] = 0xcb;
  new DataView(out.buffer).setFloat64(at + 1, batch.ts);
  out.set(body.subarray(at + 1), at + 9);
  return out;
}

export { ZERO_U64 };
