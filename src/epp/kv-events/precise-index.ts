/**
 * The precise prefix index: which endpoint holds which KV block, as the endpoints' own KV events report it (llm-d's
 * kvblock in-memory index, keyed per endpoint). Blocks are identified by request keys, the llm-d block keys computed
 * from token ids (common/kv-events/block-keys.ts), so a prompt's keys meet the keys of the blocks an event stored.
 * The engine's own block hashes only map a later BlockRemoved (or a child's parent hash) back to request keys.
 *
 * Per endpoint:
 * - `engine`: engine hash → the request key(s) it covers (one when engine and index block sizes are equal; several or
 *   shared when they differ, mapped proportionally as llm-d's index does). Insertion order is recency: a store moves
 *   the entry to the end, eviction takes the front.
 * - `held`: request key → bit mask of device tiers (gpu, cpu, other) holding it.
 * - `speculative`: request keys routed here but not yet confirmed by an event (speculative indexing), with expiry.
 *
 * Memory is bounded: at most `maxEntries` (endpoint, block) entries in total, held plus speculative. Past it, the
 * least recently stored engine block of the endpoint holding the most entries is dropped, so one busy or flooding
 * endpoint cannot push the others out. An endpoint that leaves the pool is dropped at once.
 *
 * Lookup is llm-d's LongestPrefix scorer: per endpoint, the blocks of the chain it holds without a gap from the
 * first, each weighted by its best tier (gpu 1, cpu 0.8 by default), speculative entries weighing 1.
 */
import { key53, type U64 } from '../../common/kv-events/index.js';

export const TIER_GPU = 1;
export const TIER_CPU = 2;
export const TIER_OTHER = 4;

export interface RequestKey extends U64 {
  /** key53 of the 64 bits: the index key. */
  readonly k: number;
}

export function requestKey(value: U64): RequestKey {
  return { hi: value.hi, lo: value.lo, k: key53(value) };
}

export function tierBit(medium: string | undefined): number {
  const m = (medium ?? 'gpu').toLowerCase();
  return m === 'gpu' ? TIER_GPU : m === 'cpu' ? TIER_CPU : TIER_OTHER;
}

class EndpointBlocks {
  readonly engine = new Map<number, RequestKey | RequestKey[]>();
  readonly held = new Map<number, number>();
  readonly speculative = new Map<number, number>();

  get entries(): number {
    return this.held.size + this.speculative.size;
  }
}

export interface IndexCounters {
  /** Request keys newly held by an endpoint (llm-d's kv_cache_index_admissions_total). */
  admitted(n: number): void;
  /** Entries dropped: removed by an event, evicted by the bound, or cleared (kv_cache_index_evictions_total). */
  evicted(n: number, reason: 'removed' | 'capacity' | 'cleared' | 'endpoint-left' | 'speculative-expired'): void;
}

const NO_COUNTERS: IndexCounters = { admitted: () => undefined, evicted: () => undefined };

export interface PreciseIndexOptions {
  maxEntries: number;
  /** Weight of a block by device tier; gpu and cpu default to llm-d's 1.0 and 0.8, other tiers 1. */
  gpuWeight?: number;
  cpuWeight?: number;
  otherWeight?: number;
  counters?: IndexCounters;
}

export interface PrefixLookup {
  /** Weighted longest-prefix score per endpoint id (absent = 0). */
  scores: Map<string, number>;
  /** Unweighted count of the leading blocks each endpoint holds. */
  blocks: Map<string, number>;
}

export class PreciseIndex {
  private readonly endpoints = new Map<string, EndpointBlocks>();
  private total = 0;
  readonly maxEntries: number;
  private readonly weights: [number, number, number];
  private readonly counters: IndexCounters;

  constructor(options: PreciseIndexOptions) {
    if (!(options.maxEntries >= 1)) throw new Error(`maxEntries must be >= 1, got ${options.maxEntries}`);
    this.maxEntries = options.maxEntries;
    this.weights = [options.gpuWeight ?? 1, options.cpuWeight ?? 0.8, options.otherWeight ?? 1];
    this.counters = options.counters ?? NO_COUNTERS;
  }

  /** (endpoint, block) entries held, speculative ones included. */
  get size(): number {
    return this.total;
  }

  get endpointCount(): number {
    return this.endpoints.size;
  }

  entriesOf(id: string): number {
    return this.endpoints.get(id)?.entries ?? 0;
  }

  private blocksOf(id: string): EndpointBlocks {
    let e = this.endpoints.get(id);
    if (!e) {
      e = new EndpointBlocks();
      this.endpoints.set(id, e);
    }
    return e;
  }

  /** The request key an engine hash maps to last (the chain parent of a later BlockStored), if known. */
  parentKey(id: string, engineHash: U64): RequestKey | undefined {
    const v = this.endpoints.get(id)?.engine.get(key53(engineHash));
    if (v === undefined) return undefined;
    return Array.isArray(v) ? v[v.length - 1] : v;
  }

  /**
   * BlockStored: `engineHashes` now cover `keys` on endpoint `id` in `tier`. With no keys (a location-only update,
   * e.g. an offload to CPU), the blocks the engine hashes already map to gain the tier.
   */
  store(id: string, engineHashes: readonly U64[], keys: readonly RequestKey[], tier: number): void {
    const e = this.blocksOf(id);
    if (keys.length === 0) {
      const known: RequestKey[] = [];
      for (const h of engineHashes) {
        const v = e.engine.get(key53(h));
        if (v !== undefined) known.push(...(Array.isArray(v) ? v : [v]));
      }
      this.hold(e, known, tier);
      this.enforceBound();
      return;
    }
    const E = engineHashes.length;
    const R = keys.length;
    if (E > 0) {
      const n = Math.max(E, R);
      let prev = -1;
      let group: RequestKey[] = [];
      for (let i = 0; i < n; i++) {
        const ei = Math.floor((i * E) / n);
        const rk = keys[Math.floor((i * R) / n)];
        if (ei !== prev) {
          if (prev >= 0) this.map(e, engineHashes[prev], group);
          prev = ei;
          group = [];
        }
        if (group[group.length - 1] !== rk) group.push(rk);
      }
      this.map(e, engineHashes[prev], group);
    }
    this.hold(e, keys, tier);
    this.enforceBound();
  }

  private map(blocks: EndpointBlocks, engineHash: U64, group: RequestKey[]): void {
    const k = key53(engineHash);
    blocks.engine.delete(k); // re-inserted at the end: most recent
    blocks.engine.set(k, group.length === 1 ? group[0] : group);
  }

  private hold(blocks: EndpointBlocks, keys: readonly RequestKey[], tier: number): void {
    let added = 0;
    for (const rk of keys) {
      const mask = blocks.held.get(rk.k);
      if (mask === undefined) {
        blocks.held.set(rk.k, tier);
        if (blocks.speculative.delete(rk.k)) this.total--;
        this.total++;
        added++;
      } else if ((mask & tier) === 0) blocks.held.set(rk.k, mask | tier);
    }
    if (added > 0) this.counters.admitted(added);
  }

  /** BlockRemoved: the engine blocks leave `tier` on endpoint `id`; unknown hashes are ignored. */
  remove(id: string, engineHashes: readonly U64[], tier: number): void {
    const e = this.endpoints.get(id);
    if (!e) return;
    let removed = 0;
    for (const h of engineHashes) {
      const k = key53(h);
      const v = e.engine.get(k);
      if (v === undefined) continue;
      let remaining = false;
      for (const rk of Array.isArray(v) ? v : [v]) {
        const mask = e.held.get(rk.k);
        if (mask === undefined) continue;
        const left = mask & ~tier;
        if (left === 0) {
          e.held.delete(rk.k);
          this.total--;
          removed++;
        } else {
          e.held.set(rk.k, left);
          remaining = true;
        }
      }
      if (!remaining) e.engine.delete(k);
    }
    if (removed > 0) this.counters.evicted(removed, 'removed');
  }

  /** AllBlocksCleared: the endpoint holds nothing (every tier), speculative entries included. */
  clear(id: string): void {
    const e = this.endpoints.get(id);
    if (!e) return;
    this.drop(id, e, 'cleared');
  }

  /** An endpoint left the pool: forgotten at once. */
  removeEndpoint(id: string): void {
    const e = this.endpoints.get(id);
    if (e) this.drop(id, e, 'endpoint-left');
  }

  private drop(id: string, blocks: EndpointBlocks, reason: 'cleared' | 'endpoint-left'): void {
    const n = blocks.entries;
    this.total -= n;
    this.endpoints.delete(id);
    if (n > 0) this.counters.evicted(n, reason);
  }

  /** Speculative entries: the keys were just routed to `id`; they count as held until `expiresAt` or confirmed. */
  speculate(id: string, keys: readonly number[], expiresAt: number): void {
    const e = this.blocksOf(id);
    for (const k of keys) {
      if (e.held.has(k)) continue;
      if (!e.speculative.has(k)) this.total++;
      e.speculative.delete(k);
      e.speculative.set(k, expiresAt);
    }
    this.enforceBound();
  }

  /** Drops speculative entries that expired by `now` (entries are in expiry order: one TTL for all). */
  expireSpeculative(now: number): void {
    let n = 0;
    for (const e of this.endpoints.values()) {
      for (const [k, at] of e.speculative) {
        if (at > now) break;
        e.speculative.delete(k);
        n++;
      }
    }
    if (n > 0) {
      this.total -= n;
      this.counters.evicted(n, 'speculative-expired');
    }
  }

  /** Over the bound: evict from the endpoint with the most entries, speculative entries first, then its oldest blocks. */
  private enforceBound(): void {
    if (this.total <= this.maxEntries) return;
    let evicted = 0;
    while (this.total > this.maxEntries) {
      let victim: EndpointBlocks | undefined;
      for (const e of this.endpoints.values()) if (!victim || e.entries > victim.entries) victim = e;
      if (!victim || victim.entries === 0) break;
      // Evict a slice at once so a sustained overflow costs O(endpoints) per slice, not per entry.
      let budget = Math.max(1, Math.min(this.total - this.maxEntries, 1024));
      for (const k of victim.speculative.keys()) {
        if (budget === 0) break;
        victim.speculative.delete(k);
        this.total--;
        evicted++;
        budget--;
      }
      for (const [k, v] of victim.engine) {
        if (budget <= 0) break;
        victim.engine.delete(k);
        for (const rk of Array.isArray(v) ? v : [v]) {
          if (victim.held.delete(rk.k)) {
            this.total--;
            evicted++;
            budget--;
          }
        }
      }
      // Held keys no engine hash maps to any more (their engine entry was replaced): drop the oldest directly.
      if (budget > 0 && victim.engine.size === 0) {
        for (const k of victim.held.keys()) {
          if (budget === 0) break;
          victim.held.delete(k);
          this.total--;
          evicted++;
          budget--;
        }
      }
    }
    if (evicted > 0) this.counters.evicted(evicted, 'capacity');
  }

  /** llm-d's LongestPrefix score of a key chain for the given endpoints. */
  longestPrefix(keys: readonly number[], ids: readonly string[], now = Date.now()): PrefixLookup {
    const scores = new Map<string, number>();
    const blocks = new Map<string, number>();
    let active: Array<{ id: string; e: EndpointBlocks }> = [];
    for (const id of ids) {
      const e = this.endpoints.get(id);
      if (e && e.entries > 0) active.push({ id, e });
    }
    const [wg, wc, wo] = this.weights;
    for (const k of keys) {
      if (active.length === 0) break;
      const next: typeof active = [];
      for (const a of active) {
        const mask = a.e.held.get(k);
        let w: number;
        if (mask !== undefined)
          w = Math.max(mask & TIER_GPU ? wg : 0, mask & TIER_CPU ? wc : 0, mask & TIER_OTHER ? wo : 0);
        else {
          const at = a.e.speculative.get(k);
          if (at === undefined || at <= now) continue;
          w = 1;
        }
        scores.set(a.id, (scores.get(a.id) ?? 0) + w);
        blocks.set(a.id, (blocks.get(a.id) ?? 0) + 1);
        next.push(a);
      }
      active = next;
    }
    return { scores, blocks };
  }
}
