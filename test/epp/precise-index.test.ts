/**
 * The precise index (pod × block → present) and the event feed: llm-d's semantics (LongestPrefix with tier weights,
 * engine-to-request key mapping across block sizes, parent chains) and the memory bound, shown with 10⁶ events
 * published over a real ZMQ socket on loopback.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Publisher } from 'zeromq';
import {
  BlockKeyHasher,
  encodeEventBatch,
  encodeSequence,
  key53,
  type BlockStoredEvent,
  type KvEventBatch,
} from '../../src/common/kv-events/index.js';
import { silentLogger } from '../../src/common/index.js';
import { endpointFromSpec } from '../../src/epp/datalayer/endpoint-store.js';
import { EventFeed } from '../../src/epp/kv-events/event-feed.js';
import { KvEventsMetrics } from '../../src/epp/kv-events/metrics.js';
import { PreciseIndex, requestKey, TIER_CPU, TIER_GPU } from '../../src/epp/kv-events/precise-index.js';
import { KvEventSubscriber } from '../../src/epp/kv-events/subscriber.js';
import { waitFor } from '../helpers.js';
import { spec } from './fixtures.js';

const MODEL = 'm';
const h = (value: number) => ({ hi: 0, lo: value });

function stored(hashes: number[], tokens: number[], parent?: number, blockSize = 4, medium = 'GPU'): BlockStoredEvent {
  return {
    type: 'BlockStored',
    blockHashes: hashes.map(h),
    parentBlockHash: parent === undefined ? undefined : h(parent),
    tokenIds: Uint32Array.from(tokens),
    blockSize,
    loraId: undefined,
    medium,
    loraName: undefined,
    extraKeys: undefined,
    groupIdx: undefined,
  };
}

function feedWith(index: PreciseIndex, hasher: BlockKeyHasher, registry = new Registry()) {
  const pool = { all: () => [endpointFromSpec(spec('a', '10.0.0.1')), endpointFromSpec(spec('b', '10.0.0.2'))] };
  const metrics = KvEventsMetrics.of(registry);
  return {
    feed: new EventFeed(
      index,
      hasher,
      pool,
      { maxMessageBytes: 1 << 24, maxMessagesPerSecond: 0, maxArrayLength: 1 << 20, maxStringLength: 1 << 16 },
      metrics,
      silentLogger(),
    ),
    metrics,
    registry,
  };
}

const batch = (...events: KvEventBatch['events']): KvEventBatch => ({ ts: 1, events, dataParallelRank: undefined });

describe('precise index semantics (llm-d kvblock)', () => {
  const hasher = new BlockKeyHasher(4);
  const keysOf = (tokens: number[]) => hasher.keys(MODEL, tokens).map(key53);

  it('BlockStored chains through the parent hash; BlockRemoved and AllBlocksCleared remove; lookup is the longest prefix from the first block', () => {
    const index = new PreciseIndex({ maxEntries: 1000 });
    const { feed } = feedWith(index, hasher);
    const t = Array.from({ length: 12 }, (_, i) => i + 1);
    feed.apply('a', MODEL, batch(stored([101], t.slice(0, 4))));
    feed.apply('a', MODEL, batch(stored([102, 103], t.slice(4, 12), 101)));
    feed.apply('b', MODEL, batch(stored([201, 202, 203], t)));
    const keys = keysOf(t);
    expect(index.longestPrefix(keys, ['a', 'b']).blocks).toEqual(
      new Map([
        ['a', 3],
        ['b', 3],
      ]),
    );
    feed.apply('a', MODEL, batch({ type: 'BlockRemoved', blockHashes: [h(102)], medium: 'GPU', groupIdx: undefined }));
    expect(index.longestPrefix(keys, ['a']).blocks.get('a')).toBe(1);
    // A child whose parent the index does not know is dropped (no false match).
    feed.apply('a', MODEL, batch(stored([104], [9, 9, 9, 9], 999)));
    expect(index.entriesOf('a')).toBe(2);
    feed.apply('b', MODEL, batch({ type: 'AllBlocksCleared' }));
    expect(index.entriesOf('b')).toBe(0);
    expect(index.size).toBe(2);
  });

  it('device tiers weigh the score (gpu 1, cpu 0.8); a block held in both keeps the better; removal is per tier', () => {
    const index = new PreciseIndex({ maxEntries: 100 });
    const t = [1, 2, 3, 4, 5, 6, 7, 8];
    const keys = hasher.keys(MODEL, t).map(requestKey);
    index.store('a', [h(1), h(2)], keys, TIER_CPU);
    const matchA = () =>
      index.longestPrefix(
        keys.map((k) => k.k),
        ['a'],
      );
    expect(matchA().scores.get('a')).toBeCloseTo(1.6);
    index.store('a', [h(1)], [], TIER_GPU); // location-only update: block 1 now on GPU too
    expect(matchA().scores.get('a')).toBeCloseTo(1.8);
    index.remove('a', [h(1)], TIER_CPU);
    expect(matchA().blocks.get('a')).toBe(2);
    index.remove('a', [h(1)], TIER_GPU);
    expect(matchA().blocks.get('a') ?? 0).toBe(0);
  });

  it('engine blocks larger than the index blocks map to several keys, as llm-d maps them', () => {
    const index = new PreciseIndex({ maxEntries: 100 });
    const { feed } = feedWith(index, hasher);
    const t = Array.from({ length: 16 }, (_, i) => i);
    feed.apply('a', MODEL, batch(stored([7], t, undefined, 16)));
    expect(index.longestPrefix(keysOf(t), ['a']).blocks.get('a')).toBe(4);
    feed.apply(
      'a',
      MODEL,
      batch({ type: 'BlockRemoved', blockHashes: [h(7)], medium: undefined, groupIdx: undefined }),
    );
    expect(index.size).toBe(0);
  });

  it('the bound: past maxEntries the endpoint holding the most loses its oldest blocks; speculative entries expire', () => {
    const index = new PreciseIndex({ maxEntries: 10 });
    const k = (value: number) => requestKey({ hi: 1, lo: value });
    for (let i = 0; i < 8; i++) index.store('big', [h(i)], [k(i)], TIER_GPU);
    for (let i = 0; i < 4; i++) index.store('small', [h(100 + i)], [k(100 + i)], TIER_GPU);
    expect(index.size).toBe(10);
    expect(index.entriesOf('small')).toBe(4);
    expect(index.longestPrefix([k(0).k], ['big']).blocks.get('big') ?? 0).toBe(0);
    expect(index.longestPrefix([k(7).k], ['big']).blocks.get('big')).toBe(1);
    index.speculate('small', [k(500).k], 1000);
    expect(index.longestPrefix([k(500).k], ['small'], 999).blocks.get('small')).toBe(1);
    index.expireSpeculative(1000);
    expect(index.longestPrefix([k(500).k], ['small'], 999).blocks.get('small') ?? 0).toBe(0);
    index.removeEndpoint('big');
    expect(index.size).toBe(4);
  });
});

let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('memory stays bounded', () => {
  it('10⁶ BlockStored events over ZMQ into an index bounded at 20000 entries: all applied, the index at its bound, the heap flat', async () => {
    const gc = gcFunction();
    const hasher = new BlockKeyHasher(4);
    const registry = new Registry();
    const m = KvEventsMetrics.of(registry);
    const index = new PreciseIndex({
      maxEntries: 20_000,
      counters: {
        admitted: (count) => m.admissions.inc(count),
        evicted: (count, reason) => m.evictionsByReason.inc({ reason }, count),
      },
    });
    const { feed, metrics } = feedWith(index, hasher, registry);
    const sub = new KvEventSubscriber(
      {
        zmqEndpoint: 'tcp://127.0.0.1:0',
        topicFilter: 'kv@',
        discoverPods: false,
        socketPort: 0,
        receiveHighWaterMark: 100_000,
        maxMessageBytes: 1 << 24,
      },
      feed,
      metrics,
      silentLogger(),
    );
    cleanup.push(() => sub.close());
    await sub.bind();
    const pub = new Publisher({ linger: 0, sendHighWaterMark: 100_000 });
    cleanup.push(() => pub.close());
    pub.connect(sub.boundEndpoint!);
    const applied = async () => (await metrics.events.get()).values.reduce((sum, sample) => sum + sample.value, 0);
    let seq = 0n;
    const message = (events: BlockStoredEvent[], pod = '10.0.0.1') => [
      `kv@${pod}@m`,
      encodeSequence(seq++),
      Buffer.from(encodeEventBatch({ ts: 1, events })),
    ];
    // Probes from a pod not in the pool (dropped, counted) until the subscription has propagated: none is applied.
    await waitFor(
      async () => {
        await pub.send(message([stored([1], [1, 2, 3, 4])], '10.9.9.9'));
        return (
          ((await metrics.dropped.get()).values.find((sample) => sample.labels.reason === 'unknown_pod')?.value ?? 0) >
          0
        );
      },
      60_000,
      'the subscription to propagate',
    );
    const PER = 1000;
    let next = 10;
    const send = async (batches: number) => {
      for (let b = 0; b < batches; b++) {
        const events: BlockStoredEvent[] = [];
        for (let i = 0; i < PER; i++, next++) events.push(stored([next], [next, next + 1, next + 2, next + 3]));
        await pub.send(message(events));
      }
    };
    const base = 0;
    expect(await applied()).toBe(0);
    await send(100);
    await waitFor(async () => (await applied()) === base + 100 * PER, 120_000, '10⁵ events applied');
    gc();
    const heapAfterFirst = process.memoryUsage().heapUsed;
    await send(900);
    await waitFor(async () => (await applied()) === base + 1000 * PER, 300_000, '10⁶ events applied');
    gc();
    const heapAfterAll = process.memoryUsage().heapUsed;
    expect(index.size).toBe(20_000);
    expect(index.entriesOf('default/a')).toBe(20_000);
    // Nine times the events, no more memory (allowing for allocator noise).
    expect(heapAfterAll - heapAfterFirst).toBeLessThan(32 * 1024 * 1024);
    const evicted =
      (await metrics.evictionsByReason.get()).values.find((sample) => sample.labels.reason === 'capacity')?.value ?? 0;
    expect(evicted).toBe(base + 1000 * PER - 20_000);
  }, 400_000);
});
