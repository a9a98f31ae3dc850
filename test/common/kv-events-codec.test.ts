/**
 * vLLM KV-event codec and llm-d block keys. The key vectors come from a Go program that calls what llm-d-kv-cache
 * v0.9.0's token processor calls (fxamacker/cbor canonical encoding of [parent, tokens, extra], hash/fnv 64a); the
 * payloads are built byte by byte as msgspec encodes vLLM's structs.
 */
import { Encoder } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import {
  BlockKeyHasher,
  decodeEventBatch,
  encodeEventBatch,
  key53,
  KvEventDecodeError,
  parseTopic,
  u64ToBigInt,
  type BlockStoredEvent,
} from '../../src/common/kv-events/index.js';

const keysOf = (seed: string, model: string, bs: number, toks: number[]) =>
  new BlockKeyHasher(bs, seed).keys(model, toks).map((k) => u64ToBigInt(k).toString());

describe('llm-d block keys from token ids', () => {
  it('match llm-d-kv-cache for seeds, models, block sizes and every CBOR integer width', () => {
    expect(keysOf('', 'm', 4, [1, 2, 3, 4, 5, 6, 7, 8, 9])).toEqual(['14686617092727577033', '9856792211163113858']);
    expect(
      keysOf('42', 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', 2, [0, 23, 24, 255, 256, 65535, 65536, 4294967295]),
    ).toEqual(['14066684390663260602', '11559031869948528969', '4235294100019076993', '11665925069607634945']);
    const t40 = Array.from({ length: 40 }, (_, i) => Number((BigInt(i) * 2654435761n) % 4294967291n));
    expect(keysOf('42', 'sim-model', 16, t40)).toEqual(['12703764190216443968', '198757807700635792']);
    expect(keysOf('', 'é-model', 1, [7])).toEqual(['5251939033561358057']);
  });

  it('chains from a parent: the keys of a suffix continue the keys of its prefix', () => {
    const h = new BlockKeyHasher(4);
    const all = h.keys('m', [1, 2, 3, 4, 5, 6, 7, 8]);
    expect(h.keys('m', [5, 6, 7, 8], all[0])).toEqual([all[1]]);
    expect(key53({ hi: 0, lo: 5 })).not.toBe(key53({ hi: 0, lo: 6 }));
  });
});

/** msgspec's array_like encoding of vLLM v0.10.2 (six BlockStored fields, rank present). */
function vllm0102Batch(): Uint8Array {
  const enc = new Encoder({ useBigInt64: true });
  const events = [
    ['BlockStored', [18446744073709551615n, 7], null, [1, 2, 3, 4, 5, 6, 7, 8], 4, null, 'GPU'],
    ['BlockRemoved', [7], 'GPU'],
    ['AllBlocksCleared'],
  ];
  const body = enc.encode([1.5, events, 0]);
  return body;
}

describe('vLLM event batches', () => {
  it('decode the array_like form of vLLM v0.10.2 (uint64 and small hashes, None parent, rank)', () => {
    const b = decodeEventBatch(vllm0102Batch());
    expect(b.ts).toBe(1.5);
    expect(b.dataParallelRank).toBe(0);
    const stored = b.events[0] as BlockStoredEvent;
    expect(stored.type).toBe('BlockStored');
    expect(stored.blockHashes.map(u64ToBigInt)).toEqual([18446744073709551615n, 7n]);
    expect(stored.parentBlockHash).toBeUndefined();
    expect(Array.from(stored.tokenIds)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(stored.medium).toBe('GPU');
    expect(stored.loraName).toBeUndefined();
    expect(b.events[1]).toEqual({
      type: 'BlockRemoved',
      blockHashes: [{ hi: 0, lo: 7 }],
      medium: 'GPU',
      groupIdx: undefined,
    });
    expect(b.events[2]).toEqual({ type: 'AllBlocksCleared' });
  });

  it('decode the map form (vLLM #42892, llm-d-inference-sim --use-vllm-map-event-format), bytes hashes, newer fields', () => {
    const enc = new Encoder({ useBigInt64: true });
    const payload = enc.encode({
      ts: 2.25,
      events: [
        {
          type: 'BlockStored',
          block_hashes: [new Uint8Array([9, 9, 0, 0, 0, 0, 0, 0, 1, 2])],
          parent_block_hash: 5,
          token_ids: [1, 2],
          block_size: 2,
          lora_id: 3,
          medium: 'CPU',
          lora_name: 'ad',
          extra_keys: [null],
          group_idx: 1,
          kv_cache_spec_kind: 'full',
        },
        { type: 'Future', x: 1 },
      ],
    });
    const b = decodeEventBatch(payload);
    const s = b.events[0] as BlockStoredEvent;
    expect(u64ToBigInt(s.blockHashes[0])).toBe(0x0000000000000102n);
    expect(u64ToBigInt(s.parentBlockHash!)).toBe(5n);
    expect([s.loraId, s.medium, s.loraName, s.groupIdx, s.extraKeys]).toEqual([3, 'CPU', 'ad', 1, [null]]);
    expect(b.events[1]).toEqual({ type: 'unknown', tag: 'Future' });
    expect(b.dataParallelRank).toBeUndefined();
  });

  it('round-trips through the encoder in both forms, ts as a float64 even when integral', () => {
    const ev: BlockStoredEvent = {
      type: 'BlockStored',
      blockHashes: [{ hi: 0xffffffff, lo: 1 }],
      parentBlockHash: { hi: 1, lo: 2 },
      tokenIds: Uint32Array.from([4, 5]),
      blockSize: 2,
      loraId: undefined,
      medium: 'GPU',
      loraName: undefined,
      extraKeys: undefined,
      groupIdx: undefined,
    };
    for (const format of ['array', 'map'] as const) {
      const bytes = encodeEventBatch(
        { ts: 3, events: [ev, { type: 'AllBlocksCleared' }], dataParallelRank: 1 },
        format,
      );
      expect(bytes[format === 'array' ? 1 : 4]).toBe(0xcb);
      expect(decodeEventBatch(bytes)).toEqual({
        ts: 3,
        events: [ev, { type: 'AllBlocksCleared' }],
        dataParallelRank: 1,
      });
    }
  });

  it('rejects malformed and truncated payloads with a reason, never another exception', () => {
    const whole = vllm0102Batch();
    const enc = new Encoder();
    const cases: Uint8Array[] = [
      whole.subarray(0, whole.length - 3),
      new Uint8Array([0xc1]),
      enc.encode('hello'),
      enc.encode([1, 'not events']),
      enc.encode([1, [[]]]),
      enc.encode([1, [[5]]]),
      enc.encode([1, [['BlockStored', 'x', null, [], 4]]]),
      enc.encode([1, [['BlockStored', [1], null, [-1], 4]]]),
      enc.encode([1, [['BlockStored', [1], null, [1], 0]]]),
      enc.encode([1, [['BlockRemoved', [new Uint8Array(0)]]]]),
      enc.encode({ ts: 1, events: [{ block_hashes: [] }] }),
    ];
    for (let cut = 1; cut < whole.length; cut += 7) cases.push(whole.subarray(0, cut));
    for (const c of cases) expect(() => decodeEventBatch(c)).toThrow(KvEventDecodeError);
    expect(() =>
      decodeEventBatch(new Encoder().encode([1, new Array(20).fill(['AllBlocksCleared'])]), {
        maxArrayLength: 10,
        maxStringLength: 100,
      }),
    ).toThrow(/max|length/i);
  });

  it('parses llm-d topics', () => {
    expect(parseTopic('kv@10.0.0.1@Qwen/Qwen3-8B')).toEqual({ podId: '10.0.0.1', model: 'Qwen/Qwen3-8B' });
    expect(parseTopic('kv@10.0.0.1:8000@m')).toEqual({ podId: '10.0.0.1:8000', model: 'm' });
    expect(parseTopic('other')).toEqual({ podId: 'other', model: '' });
  });
});
