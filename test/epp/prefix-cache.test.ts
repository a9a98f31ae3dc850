/** The approximate prefix cache: llm-d's block-hash chain, the per-endpoint LRU index, and the producer's matching. */
import { describe, expect, it } from 'vitest';
import xxhash from 'xxhash-wasm';
import { chainSeed, promptBlockHashes, promptBlockKeys } from '../../src/epp/prefix/block-hash.js';
import { PrefixIndex, blockKey } from '../../src/epp/prefix/prefix-index.js';
import { prefixState } from '../../src/epp/prefix/match-state.js';
import type { ApproxPrefixCacheProducer } from '../../src/epp/plugins/producer/approx-prefix-cache-producer.js';
import { harness, spec, storeWith } from './fixtures.js';
import { metricValue } from '../helpers.js';

// eslint-disable-next-line @typescript-eslint/unbound-method -- xxhash-wasm's functions are closures, not methods
const { h64Raw } = await xxhash();

/** The formula as llm-d states it, over explicit estimate-tokenizer token ids. */
function referenceChain(model: string, salt: string, text: string, blockSize: number, maxBlocks: number): bigint[] {
  const bytes = Buffer.from(text, 'utf8');
  const tokens: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    const b = [0, 1, 2, 3].map((k) => bytes[i + k] ?? 0);
    tokens.push((b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0);
  }
  let prev = h64Raw(Buffer.from(model + salt));
  const out: bigint[] = [];
  for (let i = 0; i < tokens.length && (maxBlocks === 0 || out.length < maxBlocks); i += blockSize) {
    const block = tokens.slice(i, i + blockSize);
    const buf = Buffer.alloc(block.length * 4);
    block.forEach((time, k) => buf.writeUInt32LE(time, k * 4));
    const id = h64Raw(buf);
    const chain = Buffer.alloc(16);
    chain.writeBigUInt64LE(id, 0);
    chain.writeBigUInt64LE(prev, 8);
    prev = h64Raw(chain);
    out.push(prev);
  }
  return out;
}

describe('block hashing', () => {
  it("matches llm-d's chain over estimate tokens, including the partial last block and multi-byte text", () => {
    for (const text of ['', 'a', 'abcd', 'hello world, hello world!', 'héllo wörld ✓ '.repeat(37)]) {
      for (const bs of [1, 2, 64]) {
        expect(promptBlockHashes(chainSeed('model', 'salt'), { kind: 'text', text }, bs, 0)).toEqual(
          referenceChain('model', 'salt', text, bs, 0),
        );
      }
    }
  });

  it('token-id prompts hash their little-endian uint32s, so they equal the same bytes given as text', () => {
    const text = 'abcdefgh';
    const tokens = [0x64636261, 0x68676665];
    expect(promptBlockHashes(0n, { kind: 'tokens', tokens }, 1, 0)).toEqual(
      promptBlockHashes(0n, { kind: 'text', text }, 1, 0),
    );
  });

  it('the model and cache salt seed the chain; maxBlocks caps it; a shared prefix shares hashes', () => {
    const p = { kind: 'text' as const, text: 'x'.repeat(1000) };
    expect(promptBlockHashes(chainSeed('a', ''), p, 64, 0)[0]).not.toBe(
      promptBlockHashes(chainSeed('b', ''), p, 64, 0)[0],
    );
    expect(promptBlockHashes(chainSeed('a', 's1'), p, 64, 0)[0]).not.toBe(
      promptBlockHashes(chainSeed('a', 's2'), p, 64, 0)[0],
    );
    expect(promptBlockHashes(0n, p, 64, 0)).toHaveLength(4); // 250 tokens / 64
    expect(promptBlockHashes(0n, p, 64, 2)).toHaveLength(2);
    const longer = promptBlockHashes(0n, { kind: 'text', text: 'x'.repeat(1000) + 'tail' }, 64, 0);
    expect(longer.slice(0, 3)).toEqual(promptBlockHashes(0n, p, 64, 0).slice(0, 3));
  });
});

describe('PrefixIndex', () => {
  it('per-endpoint LRU with capacity fixed at first sight; eviction and removal update the reverse map', () => {
    const idx = new PrefixIndex();
    idx.add('a', [1, 2, 3], 3);
    idx.add('b', [1], 10);
    expect(idx.holders(1).sort()).toEqual(['a', 'b']);
    idx.add('a', [1], 100); // refresh 1; capacity stays 3
    idx.add('a', [4], 100); // evicts 2 (least recently added)
    expect(idx.holders(2)).toEqual([]);
    expect(idx.holders(1)).toContain('a');
    expect(idx.size).toBe(4);
    idx.removeEndpoint('a');
    expect(idx.holders(1)).toEqual(['b']);
    expect(idx.holders(4)).toEqual([]);
    expect(idx.size).toBe(1);
    idx.add('c', [1, 5], 10); // a's slot is reused
    expect(idx.holders(1).sort()).toEqual(['b', 'c']);
    expect(idx.endpointCount()).toBe(2);
  });

  it('matches a plain Map model through growth, eviction, colliding table homes and endpoint removal', () => {
    // The model: per endpoint an insertion-ordered Map as LRU, holders in the order they were added.
    const lrus = new Map<string, { lru: Map<number, true>; capacity: number }>();
    const order = new Map<number, string[]>();
    const idx = new PrefixIndex();
    let seed = 12345;
    const rand = (bound: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % bound;
    };
    // Keys spread over 53 bits, many sharing their low bits (the table's home) to exercise probing and deletion.
    const universe = Array.from({ length: 3000 }, (_, i) =>
      i % 2
        ? rand(2 ** 21) * 2 ** 32 + rand(2 ** 31) * 2 + (i & 1)
        : rand(2 ** 21) * 2 ** 32 + rand(16) * 2 ** 20 + rand(8),
    );
    const endpoints = ['a', 'b', 'c', 'd', 'e'];
    for (let step = 0; step < 4000; step++) {
      const id = endpoints[rand(endpoints.length)];
      if (rand(200) === 0) {
        idx.removeEndpoint(id);
        lrus.delete(id);
        for (const [k, list] of order)
          order.set(
            k,
            list.filter((holder) => holder !== id),
          );
        continue;
      }
      const start = rand(universe.length - 64);
      const keys = universe.slice(start, start + 1 + rand(64));
      const capacity = 50 + rand(400);
      idx.add(id, keys, capacity);
      let e = lrus.get(id);
      if (!e) lrus.set(id, (e = { lru: new Map(), capacity }));
      for (const k of keys) {
        if (e.lru.delete(k)) {
          e.lru.set(k, true);
          continue;
        }
        e.lru.set(k, true);
        order.set(k, [...(order.get(k) ?? []).filter((holder) => holder !== id), id]);
        if (e.lru.size > e.capacity) {
          const oldest = e.lru.keys().next().value!;
          e.lru.delete(oldest);
          order.set(
            oldest,
            order.get(oldest)!.filter((holder) => holder !== id),
          );
        }
      }
      if (step % 50 === 0 || step === 3999) {
        expect(universe.map((k) => idx.holders(k))).toEqual(
          universe.map((k) => (order.get(k) ?? []).filter((holder) => lrus.get(holder)?.lru.has(k))),
        );
        expect(idx.size).toBe([...lrus.values()].reduce((sum, lru) => sum + lru.lru.size, 0));
      }
    }
    for (const id of endpoints) idx.removeEndpoint(id);
    expect(idx.size).toBe(0);
    for (const k of universe) expect(idx.holders(k)).toEqual([]);
  });

  it('block keys are the top 53 bits of the 64-bit hash', () => {
    expect(blockKey(0xffffffffffffffffn)).toBe(2 ** 53 - 1);
    expect(blockKey(1n << 11n)).toBe(1);
    for (const prompt of [
      { kind: 'text' as const, text: 'é'.repeat(700) + 'tail' },
      { kind: 'tokens' as const, tokens: Array.from({ length: 300 }, (_, i) => i * 7919) },
    ]) {
      const seed = chainSeed('m', 'salt');
      expect(promptBlockKeys(seed, prompt, 64, 0)).toEqual(promptBlockHashes(seed, prompt, 64, 0).map(blockKey));
      expect(promptBlockKeys(seed, prompt, 64, 2)).toEqual(promptBlockHashes(seed, prompt, 64, 2).map(blockKey));
    }
  });
});

const producerConfig = (params: string) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
  parameters: ${params}
- type: prefix-cache-scorer
- type: queue-scorer
dataLayer: {injectDefaults: false}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}]
`;

describe('approx-prefix-cache-producer', () => {
  const text = 'y'.repeat(64 * 4 * 5); // 5 blocks of 64 tokens

  it('block size: configured or auto-tuned from vllm:cache_config_info, floored at 64; maxPrefixTokensToMatch caps the blocks', () => {
    const cases: Array<[string, number, number, number]> = [
      ['{autoTune: false, blockSizeTokens: 16}', 0, 64, 5],
      ['{autoTune: false, blockSizeTokens: 128}', 0, 128, 3],
      ['{}', 16, 64, 5],
      ['{}', 256, 256, 2],
      ['{maxPrefixTokensToMatch: 128}', 0, 64, 2],
      ['{maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 3}', 0, 64, 3],
    ];
    for (const [params, reported, blockSize, blocks] of cases) {
      const h = harness(
        producerConfig(params),
        storeWith([spec('a', '10.0.0.1')], { a: { cacheBlockSize: reported } }),
      );
      const r = h.route(text);
      const s = prefixState(r.ctx, 'approx-prefix-cache-producer')!;
      expect([params, s.blockSizeTokens, s.totalBlocks]).toEqual([params, blockSize, blocks]);
    }
  });

  it('the pick is indexed; later requests match block by block and stop at the first block nobody holds', () => {
    const h = harness(
      producerConfig('{}'),
      storeWith([spec('a', '10.0.0.1'), spec('b', '10.0.0.2')], { b: { waitingQueueSize: 5 } }),
    );
    expect(h.route(text).destination).toBe('10.0.0.1:8000'); // lower queue
    // Same first 3 blocks, then different: a matches 3 of 5, b nothing.
    const variant = text.slice(0, 64 * 4 * 3) + 'z'.repeat(64 * 4 * 2);
    const r = h.route(variant);
    const s = prefixState(r.ctx, 'approx-prefix-cache-producer')!;
    expect(s.matched.get('default/a')).toBe(3);
    expect(s.matched.get('default/b')).toBeUndefined();
    expect(r.destination).toBe('10.0.0.1:8000');
  });

  it('LRU capacity comes from num_gpu_blocks when auto-tuning, else lruCapacityPerServer', async () => {
    const h = harness(producerConfig('{}'), storeWith([spec('a', '10.0.0.1')], { a: { cacheNumBlocks: 2 } }));
    h.route(text);
    // eslint-disable-next-line no-restricted-syntax -- the producer's own type, to reach its index
    const producer = h.config.plugins.get('approx-prefix-cache-producer') as unknown as ApproxPrefixCacheProducer;
    expect(producer.index.size).toBe(0); // updated off the decision path...
    producer.flush(); // ...on the next event-loop turn (or the next decision)
    expect(producer.index.size).toBe(2);
    const h2 = harness(
      producerConfig('{autoTune: false, blockSizeTokens: 64, lruCapacityPerServer: 4}'),
      storeWith([spec('a', '10.0.0.1')], { a: { cacheNumBlocks: 2 } }),
    );
    h2.route(text);
    // eslint-disable-next-line no-restricted-syntax -- the producer's own type, to reach its index
    const producer2 = h2.config.plugins.get('approx-prefix-cache-producer') as unknown as ApproxPrefixCacheProducer;
    producer2.flush();
    expect(producer2.index.size).toBe(4);
  });

  it('an endpoint that leaves the pool is forgotten; indexer size and hit ratio are exported', async () => {
    const store = storeWith([spec('a', '10.0.0.1')]);
    const h = harness(producerConfig('{}'), store);
    h.route(text);
    h.route(text);
    // eslint-disable-next-line no-restricted-syntax -- the producer's own type, to flush its pending updates
    (h.config.plugins.get('approx-prefix-cache-producer') as unknown as ApproxPrefixCacheProducer).flush();
    let metrics = await h.config.metrics.registry.metrics();
    const labels = { plugin_name: 'approx-prefix-cache-producer', plugin_type: 'approx-prefix-cache-producer' };
    expect(metricValue(metrics, 'llm_d_epp_prefix_indexer_size', labels)).toBe(5);
    expect(metricValue(metrics, 'llm_d_epp_prefix_indexer_hit_ratio_count', labels)).toBe(2);
    expect(metricValue(metrics, 'llm_d_epp_prefix_indexer_hit_ratio_sum', labels)).toBe(1);
    expect(metricValue(metrics, 'llm_d_epp_prefix_indexer_hit_bytes_sum', labels)).toBe(5 * 64 * 4);
    store.replaceAll([spec('b', '10.0.0.2')]);
    metrics = await h.config.metrics.registry.metrics();
    expect(metricValue(metrics, 'llm_d_epp_prefix_indexer_size', labels)).toBe(0);
  });
});
