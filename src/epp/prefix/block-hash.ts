/**
 * llm-d's prefix block hashing (`dataproducer/prefixhash/hashing.go`) over the estimate tokenizer's tokens:
 *
 *   h0      = xxhash64(utf8(targetModel) ++ utf8(cacheSalt))
 *   blockID = xxhash64(little-endian uint32 bytes of the block's tokens)     (the last, partial block included)
 *   hash_i  = xxhash64(LE64(blockID_i) ++ LE64(hash_{i-1}))                  (at most maxBlocks)
 *
 * The estimate tokenizer packs 4 UTF-8 bytes per token, little-endian and zero-padded, so a text block's token bytes
 * are exactly its UTF-8 bytes (the final token padded with zeros to 4 bytes): text prompts are hashed without
 * materialising token ids.
 */
import xxhash from 'xxhash-wasm';
import type { Prompt } from '../../common/openai/index.js';

// eslint-disable-next-line @typescript-eslint/unbound-method -- xxhash-wasm's functions are closures, not methods
const { h64Raw } = await xxhash();

const BYTES_PER_TOKEN = 4;
const chainBuffer = new Uint8Array(16);
const chainView = new DataView(chainBuffer.buffer);

/** The chain seed for a model and cache salt. */
export function chainSeed(targetModel: string, cacheSalt: string): bigint {
  return h64Raw(Buffer.from(targetModel + cacheSalt, 'utf8'));
}

function promptBytes(prompt: Prompt): Uint8Array {
  if (prompt.kind === 'text') return Buffer.from(prompt.text, 'utf8');
  const out = Buffer.allocUnsafe(prompt.tokens.length * BYTES_PER_TOKEN);
  for (let i = 0; i < prompt.tokens.length; i++) out.writeUInt32LE(prompt.tokens[i] >>> 0, i * BYTES_PER_TOKEN);
  return out;
}

/**
 * Block hashes of one prompt. `maxBlocks` 0 means no limit.
 */
export function promptBlockHashes(seed: bigint, prompt: Prompt, blockSizeTokens: number, maxBlocks: number): bigint[] {
  const out: bigint[] = [];
  chainHashes(seed, prompt, blockSizeTokens, maxBlocks, (hash) => out.push(hash));
  return out;
}

/** The index keys (top 53 bits, see PrefixIndex) of promptBlockHashes, without the intermediate array. */
export function promptBlockKeys(seed: bigint, prompt: Prompt, blockSizeTokens: number, maxBlocks: number): number[] {
  const out: number[] = [];
  chainHashes(seed, prompt, blockSizeTokens, maxBlocks, (hash) => out.push(Number(hash >> 11n)));
  return out;
}

function chainHashes(
  seed: bigint,
  prompt: Prompt,
  blockSizeTokens: number,
  maxBlocks: number,
  emit: (hash: bigint) => void,
): void {
  const bytes = promptBytes(prompt);
  const blockBytes = blockSizeTokens * BYTES_PER_TOKEN;
  let blocks = Math.ceil(bytes.length / blockBytes);
  if (maxBlocks > 0 && blocks > maxBlocks) blocks = maxBlocks;
  let prev = seed;
  for (let i = 0; i < blocks; i++) {
    const start = i * blockBytes;
    const end = Math.min(start + blockBytes, bytes.length);
    let block = bytes.subarray(start, end);
    const rem = block.length % BYTES_PER_TOKEN;
    if (rem !== 0) {
      const padded = new Uint8Array(block.length + BYTES_PER_TOKEN - rem);
      padded.set(block);
      block = padded;
    }
    const blockId = h64Raw(block);
    chainView.setBigUint64(0, blockId, true);
    chainView.setBigUint64(8, prev, true);
    prev = h64Raw(chainBuffer);
    emit(prev);
  }
}
