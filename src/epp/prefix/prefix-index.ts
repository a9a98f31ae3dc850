/**
 * The approximate prefix index: which endpoints are believed to hold which blocks. Each endpoint has an LRU of block
 * keys (capacity fixed when the endpoint is first seen, normally its number of KV blocks), and a reverse map
 * block key → holders answers lookups. Evicting a block from an endpoint's LRU removes the endpoint from the block's
 * holders.
 *
 * Block keys are the top 53 bits of llm-d's 64-bit block hashes, kept as JS numbers (a collision needs ~10^8 distinct
 * blocks in the index). Endpoints are interned to small integers (slots).
 *
 * Layout: no object per block. Every (block, endpoint) entry is a row of parallel typed arrays: its key (two 32-bit
 * halves), its endpoint slot, its neighbours in that endpoint's LRU (a doubly linked list, least recently added at the
 * head) and the next entry of the same key (the key's holders, a singly linked list). An open-addressing hash table
 * (linear probing, backward-shift deletion) maps a key to the first entry of its holders list. About 32-40 bytes per
 * entry (24 in the rows, 8-16 in the table), where Maps of boxed keys took ~75, and nothing for the GC to trace.
 */

/** A 64-bit block hash as an index key (its top 53 bits). */
export function blockKey(hash: bigint): number {
  return Number(hash >> 11n);
}

interface EndpointEntries {
  slot: number;
  /** Least and most recently added entries (-1: none). */
  head: number;
  tail: number;
  size: number;
  capacity: number;
}

const TWO_32 = 4294967296;
const NONE = -1;
const INITIAL_ENTRIES = 1024;

/** The key's low 32 bits (as int32) and high 21 bits. */
const lowOf = (key: number) => (key % TWO_32) | 0;
const highOf = (key: number) => (key / TWO_32) | 0;

export class PrefixIndex {
  private readonly byEndpoint = new Map<string, EndpointEntries>();
  private readonly slotNames: Array<string | undefined> = [];
  private readonly freeSlots: number[] = [];
  private entries = 0;

  // Entry rows.
  private keyLo = new Int32Array(INITIAL_ENTRIES);
  private keyHi = new Int32Array(INITIAL_ENTRIES);
  private slotOf = new Int32Array(INITIAL_ENTRIES);
  private prev = new Int32Array(INITIAL_ENTRIES);
  /** LRU successor; for a free row, the next free row. */
  private next = new Int32Array(INITIAL_ENTRIES);
  private nextHolder = new Int32Array(INITIAL_ENTRIES);
  /** Rows never used start here; freed rows form a list from freeRow. */
  private used = 0;
  private freeRow = NONE;

  // Hash table: key → first entry of its holders (NONE: empty). Power-of-two size, at most half full.
  private table = new Int32Array(INITIAL_ENTRIES * 2).fill(NONE);
  private mask = INITIAL_ENTRIES * 2 - 1;
  private keys = 0;

  /** The table position holding `lo`/`hi`, or the empty position where it would go, as ~position. */
  private find(lo: number, hi: number): number {
    const { table, mask, keyLo, keyHi } = this;
    let i = lo & mask;
    for (;;) {
      const e = table[i];
      if (e === NONE) return ~i;
      if (keyLo[e] === lo && keyHi[e] === hi) return i;
      i = (i + 1) & mask;
    }
  }

  /** Calls `fn` with the id of every endpoint holding `key`; returns false when nobody holds it. */
  forEachHolder(key: number, fn: (endpointId: string) => void): boolean {
    const pos = this.find(lowOf(key), highOf(key));
    if (pos < 0) return false;
    const { nextHolder, slotOf, slotNames } = this;
    for (let e = this.table[pos]; e !== NONE; e = nextHolder[e]) fn(slotNames[slotOf[e]]!);
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
    let ep = this.byEndpoint.get(endpointId);
    if (!ep) {
      const slot = this.freeSlots.pop() ?? this.slotNames.length;
      this.slotNames[slot] = endpointId;
      ep = { slot, head: NONE, tail: NONE, size: 0, capacity: Math.max(1, capacity) };
      this.byEndpoint.set(endpointId, ep);
    }
    const slot = ep.slot;
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k];
      const lo = lowOf(key);
      const hi = highOf(key);
      let pos = this.find(lo, hi);
      if (pos >= 0) {
        let e = this.table[pos];
        while (e !== NONE && this.slotOf[e] !== slot) e = this.nextHolder[e];
        if (e !== NONE) {
          this.touch(ep, e);
          continue;
        }
      }
      const e = this.allocate();
      this.keyLo[e] = lo;
      this.keyHi[e] = hi;
      this.slotOf[e] = slot;
      if (pos >= 0) {
        // Append to the holders list (holders in the order they were added).
        let last = this.table[pos];
        while (this.nextHolder[last] !== NONE) last = this.nextHolder[last];
        this.nextHolder[last] = e;
        this.nextHolder[e] = NONE;
      } else {
        if ((this.keys + 1) * 2 > this.table.length) {
          this.growTable();
          pos = this.find(lo, hi);
        }
        this.table[~pos] = e;
        this.nextHolder[e] = NONE;
        this.keys++;
      }
      this.linkTail(ep, e);
      ep.size++;
      this.entries++;
      if (ep.size > ep.capacity) this.evictOldest(ep);
    }
  }

  private touch(ep: EndpointEntries, row: number): void {
    if (ep.tail === row) return;
    this.unlink(ep, row);
    this.linkTail(ep, row);
  }

  private linkTail(ep: EndpointEntries, row: number): void {
    this.prev[row] = ep.tail;
    this.next[row] = NONE;
    if (ep.tail === NONE) ep.head = row;
    else this.next[ep.tail] = row;
    ep.tail = row;
  }

  private unlink(ep: EndpointEntries, row: number): void {
    const p = this.prev[row];
    const n = this.next[row];
    if (p === NONE) ep.head = n;
    else this.next[p] = n;
    if (n === NONE) ep.tail = p;
    else this.prev[n] = p;
  }

  private allocate(): number {
    if (this.freeRow !== NONE) {
      const e = this.freeRow;
      this.freeRow = this.next[e];
      return e;
    }
    if (this.used === this.keyLo.length) this.growRows();
    return this.used++;
  }

  private growRows(): void {
    const n = this.keyLo.length * 2;
    const grow = (old: Int32Array) => {
      const grown = new Int32Array(n);
      grown.set(old);
      return grown;
    };
    this.keyLo = grow(this.keyLo);
    this.keyHi = grow(this.keyHi);
    this.slotOf = grow(this.slotOf);
    this.prev = grow(this.prev);
    this.next = grow(this.next);
    this.nextHolder = grow(this.nextHolder);
  }

  private growTable(): void {
    const old = this.table;
    this.table = new Int32Array(old.length * 2).fill(NONE);
    this.mask = this.table.length - 1;
    for (let i = 0; i < old.length; i++) {
      const e = old[i];
      if (e !== NONE) this.table[~this.find(this.keyLo[e], this.keyHi[e])] = e;
    }
  }

  /** Removes the entry `e` (of endpoint `ep`) from its key's holders and from the LRU, and frees its row. */
  private release(ep: EndpointEntries, row: number): void {
    this.unlink(ep, row);
    const pos = this.find(this.keyLo[row], this.keyHi[row]);
    const first = this.table[pos];
    if (first === row) {
      const rest = this.nextHolder[row];
      if (rest !== NONE) this.table[pos] = rest;
      else this.deleteAt(pos);
    } else {
      let p = first;
      while (this.nextHolder[p] !== row) p = this.nextHolder[p];
      this.nextHolder[p] = this.nextHolder[row];
    }
    this.next[row] = this.freeRow;
    this.freeRow = row;
    ep.size--;
    this.entries--;
  }

  /** Empties table position `pos`, shifting back the entries of the probe run after it. */
  private deleteAt(pos: number): void {
    const { table, mask } = this;
    let hole = pos;
    let i = (pos + 1) & mask;
    for (;;) {
      const e = table[i];
      if (e === NONE) break;
      const home = this.keyLo[e] & mask;
      // Move e into the hole unless its home is cyclically in (hole, i].
      if (((i - home) & mask) >= ((i - hole) & mask)) {
        table[hole] = e;
        hole = i;
      }
      i = (i + 1) & mask;
    }
    table[hole] = NONE;
    this.keys--;
  }

  private evictOldest(ep: EndpointEntries): void {
    this.release(ep, ep.head);
  }

  /** Forgets an endpoint (it left the pool). */
  removeEndpoint(endpointId: string): void {
    const ep = this.byEndpoint.get(endpointId);
    if (!ep) return;
    while (ep.head !== NONE) this.release(ep, ep.head);
    this.byEndpoint.delete(endpointId);
    this.slotNames[ep.slot] = undefined;
    this.freeSlots.push(ep.slot);
  }

  /** (block, endpoint) entries held. */
  get size(): number {
    return this.entries;
  }

  endpointCount(): number {
    return this.byEndpoint.size;
  }
}
