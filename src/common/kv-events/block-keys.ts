/**
 * KV-block keys computed from token ids, exactly as llm-d-kv-cache's token processor computes them
 * (`pkg/kvcache/kvblock/token_processor.go`, v0.7.1 to v0.9.0; llm-d-router ebab687 keeps a copy): each full block of
 * `blockSize` tokens is keyed by FNV-64a over the canonical CBOR encoding of `[parent, tokens, extra]`, chained from
 * `hash(FNV-64a(hashSeed), null, modelName)`; a partial last block has no key. The EPP computes these keys both for a
 * request's prompt and for the token ids a vLLM `BlockStored` event carries, so the two meet whatever hash vLLM uses
 * for its own block hashes (those serve only to find a block again when it is removed). llm-d-inference-sim also
 * uses these keys as its engine block hashes, and so does pd-router's simulator.
 *
 * 64-bit values are kept as two unsigned 32-bit halves (no BigInt on the hot path). An index keys blocks by `key53`, a
 * 53-bit fold of the 64 bits that is a safe JavaScript integer (a collision needs ~10⁸ distinct blocks).
 */

/** An unsigned 64-bit value as two unsigned 32-bit halves. */
export interface U64 {
  readonly hi: number;
  readonly lo: number;
}

const TWO32 = 4294967296;
/** FNV-64 prime 0x100000001b3 = 2^40 + 0x1b3. */
const PRIME_LO = 0x1b3;

/** FNV-64a, fed byte by byte without allocating. */
class Fnv64a {
  hi = 0xcbf29ce4;
  lo = 0x84222325;

  byte(byteValue: number): void {
    const lo = (this.lo ^ byteValue) >>> 0;
    // (hi·2^32 + lo)·(2^40 + 0x1b3) mod 2^64: lo·0x1b3 is below 2^41, exact in a double.
    const l = lo * PRIME_LO;
    const carry = Math.floor(l / TWO32);
    this.lo = l - carry * TWO32;
    this.hi = (Math.imul(this.hi, PRIME_LO) + carry + ((lo << 8) >>> 0)) >>> 0;
  }

  /** CBOR head of major type `major` with argument `n` (n < 2^32), in canonical (shortest) form. */
  head(major: number, value: number): void {
    const m = major << 5;
    if (value < 24) this.byte(m | value);
    else if (value < 0x100) {
      this.byte(m | 24);
      this.byte(value);
    } else if (value < 0x10000) {
      this.byte(m | 25);
      this.byte(value >>> 8);
      this.byte(value & 0xff);
    } else {
      this.byte(m | 26);
      this.word(value);
    }
  }

  word(value: number): void {
    this.byte(value >>> 24);
    this.byte((value >>> 16) & 0xff);
    this.byte((value >>> 8) & 0xff);
    this.byte(value & 0xff);
  }

  /** A CBOR unsigned integer of 64 bits, shortest form. */
  uint64(value: U64): void {
    if (value.hi === 0) {
      this.head(0, value.lo);
      return;
    }
    this.byte(27);
    this.word(value.hi);
    this.word(value.lo);
  }

  bytes(data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) this.byte(data[i]);
  }

  value(): U64 {
    return { hi: this.hi >>> 0, lo: this.lo >>> 0 };
  }
}

const utf8 = new TextEncoder();

/** FNV-64a of raw bytes (llm-d-kv-cache's initial hash of the hash seed). */
export function fnv64a(bytes: Uint8Array): U64 {
  const h = new Fnv64a();
  h.bytes(bytes);
  return h.value();
}

/** 53-bit fold of a 64-bit key: the high 32 bits, then the low 32 folded to 21 (small values stay distinct). */
export function key53(value: U64): number {
  return value.hi * 2097152 + (((value.lo >>> 11) ^ (value.lo & 0x7ff)) >>> 0);
}

export function u64ToBigInt(value: U64): bigint {
  return (BigInt(value.hi) << 32n) | BigInt(value.lo);
}

export function u64FromBigInt(value: bigint): U64 {
  const u = BigInt.asUintN(64, value);
  return { hi: Number(u >> 32n), lo: Number(u & 0xffffffffn) };
}

export function u64Equal(left: U64, right: U64): boolean {
  return left.hi === right.hi && left.lo === right.lo;
}

export const ZERO_U64: U64 = { hi: 0, lo: 0 };

/** llm-d-kv-cache's `chunkedTokenDatabase`: block keys of token ids for one block size and hash seed. */
export class BlockKeyHasher {
  private readonly seed: U64;
  private readonly initCache = new Map<string, U64>();

  constructor(
    readonly blockSize: number,
    readonly hashSeed = '',
  ) {
    if (!Number.isInteger(blockSize) || blockSize <= 0)
      throw new Error(`block size must be a positive integer, got ${blockSize}`);
    this.seed = fnv64a(utf8.encode(hashSeed));
  }

  /** The chain's start for a model: hash(FNV-64a(seed), null, model). Cached per model (a bounded set in practice). */
  initKey(model: string): U64 {
    let k = this.initCache.get(model);
    if (k === undefined) {
      const h = new Fnv64a();
      h.byte(0x83);
      h.uint64(this.seed);
      h.byte(0xf6);
      const text = utf8.encode(model);
      h.head(3, text.length);
      h.bytes(text);
      k = h.value();
      if (this.initCache.size < 1024) this.initCache.set(model, k);
    }
    return k;
  }

  /** The key of one block: hash(parent, tokens[from, from + blockSize), null). */
  blockKey(parent: U64, tokens: ArrayLike<number>, from: number): U64 {
    const bs = this.blockSize;
    const h = new Fnv64a();
    h.byte(0x83);
    h.uint64(parent);
    h.head(4, bs);
    for (let i = from; i < from + bs; i++) h.head(0, tokens[i] >>> 0);
    h.byte(0xf6);
    return h.value();
  }

  /** Keys of the full blocks of `tokens` (at most `maxBlocks`), chained from `parent` (undefined: the model's start). */
  keys(model: string, tokens: ArrayLike<number>, parent?: U64, maxBlocks = Number.MAX_SAFE_INTEGER): U64[] {
    const n = Math.min(Math.floor(tokens.length / this.blockSize), maxBlocks);
    const out = new Array<U64>(n);
    let p = parent ?? this.initKey(model);
    for (let b = 0; b < n; b++) {
      p = this.blockKey(p, tokens, b * this.blockSize);
      out[b] = p;
    }
    return out;
  }
}
