/**
 * The approximate prefix index: which endpoints are believed to hold which blocks. Each endpoint has an LRU of block
 * keys (capacity fixed when the endpoint is first seen, normally its number of KV blocks), and a reverse map
 * block key → holders answers lookups. Evicting a block from an endpoint's LRU removes the endpoint from the block's
 * holders.
 *
 * Block keys are the top 53 bits of llm-d's 64-bit block hashes, kept as JS numbers: Map lookups on numbers are several
 * times cheaper than on BigInts, and a collision needs ~10^8 distinct blocks in the index. Endpoints are interned to
 * small integers; a block held by one endpoint (the common case) stores that integer, not a Set.
 */

/** A 64-bit block hash as an index key (its top 53 bits). */
export function blockKey(hash: bigint): number {
  return Number(hash >> 11n);
}

interface EndpointEntries {
  slot: number;
  /** Block keys, least recently added first (Map keeps insertion order). */
  lru: Map<number, true>;
  capacity: number;
}

type Holders = number | number[];

export class PrefixIndex {
  private readonly byKey = new Map<number, Holders>();
  private readonly byEndpoint = new Map<string, EndpointEntries>();
  private readonly slotNames: Array<string | undefined> = [];
  private readonly freeSlots: number[] = [];
  private entries = 0;

  /** Calls `fn` with the id of every endpoint holding `key`; returns false when nobody holds it. */
  forEachHolder(key: number, fn: (endpointId: string) => void): boolean {
    const h = this.byKey.get(key);
    if (h === undefined) return false;
    if (typeof h === 'number') fn(this.slotNames[h]!);
    else for (const s of h) fn(this.slotNames[s]!);
    return true;
  }

  /** Endpoints holding `key` (for tests and diagnostics). */
  holders(key: number): string[] {
    const out: string[] = [];
    this.forEachHolder(key, (id) => out.push(id));
    return out;
  }

  /** Records that `endpointId` now holds `keys`; `capacity` applies only if the endpoint is new to the index. */
  add(endpointId: string, keys: readonly number[], capacity: number): void {
    let e = this.byEndpoint.get(endpointId);
    if (!e) {
      const slot = this.freeSlots.pop() ?? this.slotNames.length;
      this.slotNames[slot] = endpointId;
      e = { slot, lru: new Map(), capacity: Math.max(1, capacity) };
      this.byEndpoint.set(endpointId, e);
    }
    const { lru, slot } = e;
    for (const k of keys) {
      if (lru.delete(k)) {
        lru.set(k, true);
        continue;
      }
      lru.set(k, true);
      this.entries++;
      const h = this.byKey.get(k);
      if (h === undefined) this.byKey.set(k, slot);
      else if (typeof h === 'number') this.byKey.set(k, [h, slot]);
      else h.push(slot);
      if (lru.size > e.capacity) this.evictOldest(e);
    }
  }

  private release(key: number, slot: number): void {
    const h = this.byKey.get(key);
    if (h === undefined) return;
    if (typeof h === 'number') {
      if (h === slot) this.byKey.delete(key);
      return;
    }
    const i = h.indexOf(slot);
    if (i < 0) return;
    h.splice(i, 1);
    if (h.length === 1) this.byKey.set(key, h[0]!);
  }

  private evictOldest(endpointEntries: EndpointEntries): void {
    const oldest = endpointEntries.lru.keys().next().value as number;
    endpointEntries.lru.delete(oldest);
    this.entries--;
    this.release(oldest, endpointEntries.slot);
  }

  /** Forgets an endpoint (it left the pool). */
  removeEndpoint(endpointId: string): void {
    const e = this.byEndpoint.get(endpointId);
    if (!e) return;
    for (const k of e.lru.keys()) this.release(k, e.slot);
    this.entries -= e.lru.size;
    this.byEndpoint.delete(endpointId);
    this.slotNames[e.slot] = undefined;
    this.freeSlots.push(e.slot);
  }

  /** (block, endpoint) entries held. */
  get size(): number {
    return this.entries;
  }

  endpointCount(): number {
    return this.byEndpoint.size;
  }
}
