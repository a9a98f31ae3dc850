/**
 * A simulated paged KV cache with automatic prefix caching, close enough to vLLM's for the metrics to mean the same:
 *
 * - The cache holds `totalBlocks` blocks of `blockSize` tokens. A full prompt block is identified by a hash chained over
 *   all blocks before it, so a block is reusable only after an identical prefix.
 * - A request references its matched prefix blocks and allocates new ones for the rest of its prompt and for its output.
 *   When it ends, its full prompt blocks stay cached (evictable, least recently used first); other blocks are freed.
 * - Usage (vllm:kv_cache_usage_perc) is the share of blocks referenced by running requests; cached but unreferenced
 *   blocks count as free, as in vLLM.
 * - Queries and hits count prompt tokens, as vllm:prefix_cache_queries_total / hits_total do. Like vLLM, at least the
 *   last prompt token is always recomputed, so a fully cached prompt reports one block less than its length.
 * - Admission reserves the blocks a request can ever need (prompt plus maximum output), so the decode batch is bounded by
 *   KV capacity without modelling preemption.
 * - With an event sink (vLLM's KV events), every full prompt block entering the prefix map is reported as vLLM
 *   reports it (BlockStored: the run of new blocks, their parent, their token ids), every block evicted from it as
 *   BlockRemoved, and a reset of the prefix cache as AllBlocksCleared. The engine hashes are given by the caller.
 */
import type { U64 } from '../common/kv-events/index.js';

/** Receives the cache's changes as vLLM's KV events describe them. */
export interface KvCacheEventSink {
  stored(blockHashes: U64[], parent: U64 | undefined, tokenIds: number[]): void;
  removed(blockHashes: U64[]): void;
  cleared(): void;
}

/** A request's prompt as events describe it: its token ids and the engine hash of each full block. */
export interface BlockOrigin {
  tokens: readonly number[];
  engineHashes: readonly U64[];
}

export function blockHashes(tokens: readonly number[], blockSize: number, salt = 0): string[] {
  const out: string[] = [];
  let h1 = (0x811c9dc5 ^ salt) >>> 0;
  let h2 = (0x01000193 + salt * 31) >>> 0;
  const full = Math.floor(tokens.length / blockSize);
  for (let b = 0; b < full; b++) {
    for (let i = b * blockSize; i < (b + 1) * blockSize; i++) {
      const t = tokens[i];
      h1 = Math.imul(h1 ^ t, 0x01000193) >>> 0;
      h2 = Math.imul(h2 ^ (t >>> 16) ^ (t << 5), 0x5bd1e995) >>> 0;
    }
    out.push(`${h1.toString(36)}.${h2.toString(36)}`);
  }
  return out;
}

interface CachedBlock {
  id: number;
  refs: number;
  /** The engine hash reported in events (when events are on). */
  engine?: U64;
}

interface Allocation {
  /** Hashes of the full prompt blocks this request references (matched or newly filled). */
  hashes: string[];
  /** Physical ids of the prompt blocks, in prompt order. */
  promptBlockIds: number[];
  /** Blocks held outside the prefix map (partial prompt block and output blocks). */
  privateBlockIds: number[];
  /** Blocks reserved at admission that are not allocated yet. */
  reservedBlocks: number;
  usedBlocks: number;
}

export interface Admission {
  cachedTokens: number;
  blockIds: number[];
}

/** The simulated KV cache: blocks by hash, LRU eviction, hit counting. */
export class KVCacheSim {
  private readonly byHash = new Map<string, CachedBlock>();
  /** Unreferenced cached blocks in LRU order (first = least recently used). */
  private readonly evictable = new Map<string, CachedBlock>();
  private readonly freeIds: number[] = [];
  private readonly allocations = new Map<string, Allocation>();
  private reserved = 0;
  private used = 0;

  constructor(
    readonly totalBlocks: number,
    readonly blockSize: number,
    readonly events?: KvCacheEventSink,
  ) {
    for (let i = totalBlocks - 1; i >= 0; i--) this.freeIds.push(i);
  }

  /** Blocks a request of this size may need at most. */
  blocksNeeded(promptTokens: number, maxOutputTokens: number): number {
    return Math.ceil((promptTokens + maxOutputTokens) / this.blockSize);
  }

  private matchedBlocks(hashes: readonly string[], promptTokens: number): number {
    const limit = Math.floor(Math.max(0, promptTokens - 1) / this.blockSize);
    let n = 0;
    while (n < hashes.length && n < limit && this.byHash.has(hashes[n])) n++;
    return n;
  }

  /** Whether a request fits now: blocks free or evictable, minus what running requests have reserved. */
  canAdmit(hashes: readonly string[], promptTokens: number, maxOutputTokens: number): boolean {
    const matched = this.matchedBlocks(hashes, promptTokens);
    const need = this.blocksNeeded(promptTokens, maxOutputTokens) - matched;
    let reusableMatched = 0;
    for (let i = 0; i < matched; i++) if (this.evictable.has(hashes[i])) reusableMatched++;
    return need <= this.freeIds.length + this.evictable.size - reusableMatched - this.reserved;
  }

  /** Whether a request could ever fit, even in an empty cache. */
  fitsAtAll(promptTokens: number, maxOutputTokens: number): boolean {
    return this.blocksNeeded(promptTokens, maxOutputTokens) <= this.totalBlocks;
  }

  admit(
    requestId: string,
    hashes: readonly string[],
    promptTokens: number,
    maxOutputTokens: number,
    origin?: BlockOrigin,
  ): Admission {
    const matched = this.matchedBlocks(hashes, promptTokens);
    const alloc: Allocation = { hashes: [], promptBlockIds: [], privateBlockIds: [], reservedBlocks: 0, usedBlocks: 0 };
    for (let i = 0; i < matched; i++) {
      const h = hashes[i];
      const block = this.byHash.get(h)!;
      this.reference(h, block);
      alloc.hashes.push(h);
      alloc.promptBlockIds.push(block.id);
    }
    // New full prompt blocks enter the prefix map now, so a concurrent identical request can share them.
    const report = this.events && origin ? { events: this.events, origin } : undefined;
    let run: number[] = [];
    const flushRun = () => {
      if (!report || run.length === 0) return;
      const first = run[0];
      const hashesOf = run.map((i) => report.origin.engineHashes[i]);
      const tokens = report.origin.tokens.slice(first * this.blockSize, (run[run.length - 1] + 1) * this.blockSize);
      report.events.stored(hashesOf, first > 0 ? report.origin.engineHashes[first - 1] : undefined, Array.from(tokens));
      run = [];
    };
    for (let i = matched; i < hashes.length; i++) {
      const h = hashes[i];
      const existing = this.byHash.get(h);
      if (existing) {
        flushRun();
        this.reference(h, existing);
        alloc.hashes.push(h);
        alloc.promptBlockIds.push(existing.id);
        continue;
      }
      const id = this.takeBlock();
      if (id === undefined) break;
      this.byHash.set(h, { id, refs: 1, engine: report?.origin.engineHashes[i] });
      if (report) run.push(i);
      this.used++;
      alloc.hashes.push(h);
      alloc.promptBlockIds.push(id);
    }
    flushRun();
    const promptBlocks = Math.ceil(promptTokens / this.blockSize);
    for (let i = alloc.promptBlockIds.length; i < promptBlocks; i++) {
      const id = this.takeBlock();
      if (id === undefined) break;
      alloc.privateBlockIds.push(id);
      alloc.promptBlockIds.push(id);
      this.used++;
    }
    alloc.usedBlocks = alloc.promptBlockIds.length;
    alloc.reservedBlocks = Math.max(0, this.blocksNeeded(promptTokens, maxOutputTokens) - promptBlocks);
    this.reserved += alloc.reservedBlocks;
    this.allocations.set(requestId, alloc);
    return { cachedTokens: matched * this.blockSize, blockIds: [...alloc.promptBlockIds] };
  }

  /** Accounts output growth: the request now holds `totalTokens` tokens. */
  grow(requestId: string, totalTokens: number): void {
    const alloc = this.allocations.get(requestId);
    if (!alloc) return;
    const want = Math.ceil(totalTokens / this.blockSize);
    while (alloc.usedBlocks < want && alloc.reservedBlocks > 0) {
      const id = this.takeBlock();
      if (id === undefined) break;
      alloc.privateBlockIds.push(id);
      alloc.usedBlocks++;
      alloc.reservedBlocks--;
      this.reserved--;
      this.used++;
    }
  }

  release(requestId: string): void {
    const alloc = this.allocations.get(requestId);
    if (!alloc) return;
    this.allocations.delete(requestId);
    for (const h of alloc.hashes) {
      const block = this.byHash.get(h);
      if (!block) continue;
      block.refs--;
      if (block.refs === 0) {
        this.evictable.set(h, block);
        this.used--;
      }
    }
    for (const id of alloc.privateBlockIds) this.freeIds.push(id);
    this.used -= alloc.privateBlockIds.length;
    this.reserved -= alloc.reservedBlocks;
  }

  private reference(hash: string, block: CachedBlock): void {
    if (block.refs === 0) {
      this.evictable.delete(hash);
      this.used++;
    }
    block.refs++;
  }

  private takeBlock(): number | undefined {
    const id = this.freeIds.pop();
    if (id !== undefined) return id;
    const lru = this.evictable.keys().next();
    if (lru.done) return undefined;
    const block = this.evictable.get(lru.value)!;
    this.evictable.delete(lru.value);
    this.byHash.delete(lru.value);
    if (block.engine && this.events) this.events.removed([block.engine]);
    return block.id;
  }

  /**
   * vLLM's reset_prefix_cache: drops every cached block, which only succeeds when no request holds any (vLLM refuses
   * otherwise). Reports AllBlocksCleared.
   */
  resetPrefixCache(): boolean {
    if (this.allocations.size > 0) return false;
    for (const [h, block] of this.evictable) {
      this.freeIds.push(block.id);
      this.byHash.delete(h);
    }
    this.evictable.clear();
    this.events?.cleared();
    return true;
  }

  /** Share of blocks referenced by running requests, 0..1. */
  usage(): number {
    return this.totalBlocks === 0 ? 0 : this.used / this.totalBlocks;
  }
}
