/**
 * burst-prefix-cache-producer's placement of one sealed batch (llm-d-router `burstprefix/assign.go` semantics):
 *
 * 1. Requests with identical prefix-block chains form a group; a group of two or more is a placement unit. A single
 *    request is a unit only when `minColocateBlocks` > 0 and at least one other request of the batch shares its first
 *    `minColocateBlocks` blocks. Requests without blocks get no assignment.
 * 2. Groups are placed first, then single units, longest prefix first within each (stable).
 * 3. A unit fills one replica (up to `maxPerReplica` members, -1 = all) before spilling to the next. The first replica
 *    of a unit, when `minColocateBlocks` > 0, is the one already holding the longest run (>= minColocateBlocks) of the
 *    unit's leading blocks from units placed earlier in the batch, unless it has reached its fair share
 *    (ceil(total / replicas)); otherwise, and for spills, the least loaded replica (load, then running requests, then
 *    name). Load counts requests, or with `byTokens` prefix blocks (a unit's blocks once per replica, less the leading
 *    blocks already placed there).
 */
import type { Endpoint } from '../../framework/types.js';

export interface BurstEntry {
  /** Block keys of each prompt's chain. */
  readonly keys: readonly (readonly number[])[];
  readonly candidates: readonly Endpoint[];
  assigned?: Endpoint;
}

export const UNLIMITED = -1;

const blocksOf = (keys: BurstEntry['keys']) => keys.reduce((total, k) => total + k.length, 0);

/** The first `n` blocks across the prompts, as a string key. */
function prefixKey(keys: BurstEntry['keys'], count: number): string {
  const out: number[] = [];
  for (const chain of keys) {
    for (const k of chain) {
      if (out.length >= count) return out.join(',');
      out.push(k);
    }
  }
  return out.join(',');
}

/** Which replicas hold each block, among the units placed so far in this batch. */
class BatchIndex {
  private readonly holders = new Map<number, Set<string>>();

  add(keys: BurstEntry['keys'], replica: string): void {
    for (const chain of keys) {
      for (const k of chain) {
        let s = this.holders.get(k);
        if (!s) this.holders.set(k, (s = new Set()));
        s.add(replica);
      }
    }
  }

  /** Per replica, how many blocks of the chain (in order, across prompts) it holds before the first block no one holds. */
  longestPrefix(keys: BurstEntry['keys']): Map<string, number> {
    const res = new Map<string, number>();
    for (const chain of keys) {
      for (const k of chain) {
        const holders = this.holders.get(k);
        if (!holders || holders.size === 0) return res;
        for (const name of holders) res.set(name, (res.get(name) ?? 0) + 1);
      }
    }
    return res;
  }
}

interface Placement {
  replicas: readonly Endpoint[];
  k: number;
  minColocateBlocks: number;
  maxShare: number;
  byTokens: boolean;
  index: BatchIndex;
  load: Map<string, number>;
}

function less(left: Endpoint, right: Endpoint, load: Map<string, number>): boolean {
  const la = load.get(left.id) ?? 0;
  const lb = load.get(right.id) ?? 0;
  if (la !== lb) return la < lb;
  if (left.metrics.runningRequests !== right.metrics.runningRequests)
    return left.metrics.runningRequests < right.metrics.runningRequests;
  return left.id < right.id;
}

function leastLoaded(placement: Placement, perReplica: Map<string, number>): Endpoint {
  let best: Endpoint | undefined;
  for (const r of placement.replicas) {
    if (placement.k !== UNLIMITED && (perReplica.get(r.id) ?? 0) >= placement.k) continue;
    if (!best || less(r, best, placement.load)) best = r;
  }
  if (best) return best;
  // Every replica has k members of this unit already: overflow onto the least loaded.
  for (const r of placement.replicas) if (!best || less(r, best, placement.load)) best = r;
  return best!;
}

function pickReplica(
  placement: Placement,
  perReplica: Map<string, number>,
  matches: Map<string, number>,
  preferMatch: boolean,
): Endpoint {
  if (preferMatch) {
    let best: Endpoint | undefined;
    let bestMatch = 0;
    for (const r of placement.replicas) {
      if (placement.k !== UNLIMITED && (perReplica.get(r.id) ?? 0) >= placement.k) continue;
      if ((placement.load.get(r.id) ?? 0) >= placement.maxShare) continue; // at its fair share: co-locating would unbalance the batch
      const m = matches.get(r.id) ?? 0;
      if (m < placement.minColocateBlocks) continue;
      if (!best || m > bestMatch || (m === bestMatch && less(r, best, placement.load))) [best, bestMatch] = [r, m];
    }
    if (best) return best;
  }
  return leastLoaded(placement, perReplica);
}

function placeUnit(members: BurstEntry[], cost: number, placement: Placement): void {
  const keys = members[0].keys;
  let preferMatch = placement.minColocateBlocks > 0;
  const matches = preferMatch || placement.byTokens ? placement.index.longestPrefix(keys) : new Map<string, number>();
  const perReplica = new Map<string, number>();
  for (let i = 0; i < members.length;) {
    const target = pickReplica(placement, perReplica, matches, preferMatch);
    const placed = perReplica.get(target.id) ?? 0;
    let run = members.length - i;
    if (placement.k !== UNLIMITED) run = Math.min(run, Math.max(1, placement.k - placed));
    for (let j = 0; j < run; j++) members[i + j].assigned = target;
    perReplica.set(target.id, placed + run);
    if (!placement.byTokens) placement.load.set(target.id, (placement.load.get(target.id) ?? 0) + run);
    else if (placed === 0)
      placement.load.set(
        target.id,
        (placement.load.get(target.id) ?? 0) + Math.max(0, cost - (matches.get(target.id) ?? 0)),
      );
    i += run;
    preferMatch = false; // only the unit's first replica gets the prefix preference
  }
  for (const m of members) if (m.assigned) placement.index.add(keys, m.assigned.id);
}

/** Assigns a replica to the entries of one sealed batch (sets `assigned`; entries without a unit keep none). */
export function assignBurst(
  entries: readonly BurstEntry[],
  k: number,
  minColocateBlocks: number,
  byTokens: boolean,
): void {
  const groups = new Map<string, BurstEntry[]>();
  let replicas: readonly Endpoint[] | undefined;
  for (const e of entries) {
    const n = blocksOf(e.keys);
    if (n === 0) continue;
    const key = prefixKey(e.keys, n);
    const g = groups.get(key);
    if (g) g.push(e);
    else groups.set(key, [e]);
    replicas ??= e.candidates;
  }
  if (!replicas || replicas.length === 0) return;

  // Singles sharing their first minColocateBlocks blocks with another request of the batch.
  const shared = new Set<string>();
  if (minColocateBlocks > 0) {
    const bySignature = new Map<string, number>();
    const signatureOf = new Map<string, string>();
    for (const [key, g] of groups) {
      if (blocksOf(g[0].keys) < minColocateBlocks) continue;
      const sig = prefixKey(g[0].keys, minColocateBlocks);
      signatureOf.set(key, sig);
      bySignature.set(sig, (bySignature.get(sig) ?? 0) + g.length);
    }
    for (const [key, sig] of signatureOf) if (bySignature.get(sig)! >= 2) shared.add(key);
  }
  const cost = new Map<string, number>();
  const groupUnits: string[] = [];
  const singleUnits: string[] = [];
  for (const [key, g] of groups) {
    if (g.length >= 2) groupUnits.push(key);
    else if (shared.has(key)) singleUnits.push(key);
    else continue;
    cost.set(key, blocksOf(g[0].keys));
  }
  if (groupUnits.length === 0 && singleUnits.length === 0) return;
  const longestFirst = (left: string, right: string) => cost.get(right)! - cost.get(left)!;
  groupUnits.sort(longestFirst);
  singleUnits.sort(longestFirst);

  let total = 0;
  for (const [key, c] of cost) total += byTokens ? c : groups.get(key)!.length;
  const p: Placement = {
    replicas,
    k,
    minColocateBlocks,
    maxShare: Math.ceil(total / replicas.length),
    byTokens,
    index: new BatchIndex(),
    load: new Map(),
  };
  for (const key of [...groupUnits, ...singleUnits]) placeUnit(groups.get(key)!, cost.get(key)!, p);
}
