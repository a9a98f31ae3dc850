/**
 * The approximate prefix index: which endpoints are believed to hold which block hashes. Each endpoint has an LRU of
 * hashes (capacity fixed when the endpoint is first seen, normally its number of KV blocks), and a reverse map
 * hash → endpoints answers lookups. Evicting a hash from an endpoint's LRU removes the endpoint from the hash's set.
 */

interface EndpointEntries {
  /** Hashes, least recently added first (Map keeps insertion order). */
  lru: Map<bigint, true>;
  capacity: number;
}

export class PrefixIndex {
  private readonly byHash = new Map<bigint, Set<string>>();
  private readonly byEndpoint = new Map<string, EndpointEntries>();
  private entries = 0;

  /** Endpoints holding `hash`, or undefined. */
  holders(hash: bigint): ReadonlySet<string> | undefined {
    return this.byHash.get(hash);
  }

  /** Records that `endpointId` now holds `hashes`; `capacity` applies only if the endpoint is new to the index. */
  add(endpointId: string, hashes: Iterable<bigint>, capacity: number): void {
    let e = this.byEndpoint.get(endpointId);
    if (!e) {
      e = { lru: new Map(), capacity: Math.max(1, capacity) };
      this.byEndpoint.set(endpointId, e);
    }
    for (const h of hashes) {
      if (e.lru.delete(h)) {
        e.lru.set(h, true);
        continue;
      }
      e.lru.set(h, true);
      this.entries++;
      let set = this.byHash.get(h);
      if (!set) {
        set = new Set();
        this.byHash.set(h, set);
      }
      set.add(endpointId);
      if (e.lru.size > e.capacity) this.evictOldest(endpointId, e);
    }
  }

  private evictOldest(endpointId: string, e: EndpointEntries): void {
    const oldest = e.lru.keys().next().value as bigint;
    e.lru.delete(oldest);
    this.entries--;
    const set = this.byHash.get(oldest);
    if (set) {
      set.delete(endpointId);
      if (set.size === 0) this.byHash.delete(oldest);
    }
  }

  /** Forgets an endpoint (it left the pool). */
  removeEndpoint(endpointId: string): void {
    const e = this.byEndpoint.get(endpointId);
    if (!e) return;
    for (const h of e.lru.keys()) {
      const set = this.byHash.get(h);
      if (set) {
        set.delete(endpointId);
        if (set.size === 0) this.byHash.delete(h);
      }
    }
    this.entries -= e.lru.size;
    this.byEndpoint.delete(endpointId);
  }

  /** (hash, endpoint) entries held. */
  get size(): number {
    return this.entries;
  }

  endpointCount(): number {
    return this.byEndpoint.size;
  }
}
