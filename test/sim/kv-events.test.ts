/**
 * The simulator publishes vLLM's KV events from its simulated cache over real ZMQ sockets on loopback, and serves its
 * tokenizer over HTTP (/tokenize and vLLM's render endpoints). A test SUB socket stands in for the EPP and decodes
 * with the EPP's decoder. ZMQ PUB/SUB loses what is sent before a subscription has propagated, so each check first
 * probes with requests until one event arrives (bounded), then asserts on the events of the request it sends.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Subscriber } from 'zeromq';
import {
  BlockKeyHasher,
  decodeEventBatch,
  parseTopic,
  u64ToBigInt,
  type BlockStoredEvent,
  type KvEventBatch,
} from '../../src/common/kv-events/index.js';
import {
  simConfig,
  startSimulator,
  tokenize,
  tokenId,
  type SimulatorHandle,
  type SimConfig,
} from '../../src/sim/index.js';
import { postJson } from '../helpers.js';

const MODEL = 'sim-model';
const BS = 4;

interface Received {
  topic: string;
  seq: bigint;
  batch: KvEventBatch;
}

/** Reads a SUB socket continuously; `next(ms)` is the next message within `ms`, or undefined. */
export class Inbox {
  private readonly queue: Received[] = [];
  private waiter: (() => void) | undefined;
  constructor(readonly sub: Subscriber) {
    void (async () => {
      for (;;) {
        let frames: Buffer[];
        try {
          frames = await sub.receive();
        } catch {
          return;
        }
        const [t, s, p] = frames;
        this.queue.push({ topic: t.toString(), seq: s.readBigUInt64BE(0), batch: decodeEventBatch(p) });
        this.waiter?.();
      }
    })();
  }

  async next(ms: number): Promise<Received | undefined> {
    if (this.queue.length === 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        timer = setTimeout(resolve, ms);
      });
      clearTimeout(timer);
      this.waiter = undefined;
    }
    return this.queue.shift();
  }
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(
  overrides: Partial<SimConfig>,
  mode: 'epp-binds' | 'sim-binds',
): Promise<{ sim: SimulatorHandle; sub: Inbox }> {
  const sub = new Subscriber({ linger: 0 });
  cleanup.push(() => sub.close());
  sub.subscribe('');
  let sim: SimulatorHandle;
  if (mode === 'epp-binds') {
    await sub.bind('tcp://127.0.0.1:*');
    sim = await startSimulator(
      simConfig({
        host: '127.0.0.1',
        port: 0,
        model: [MODEL],
        mode: 'echo',
        blockSize: BS,
        zmqEndpoint: sub.lastEndpoint!,
        ...overrides,
      }),
    );
  } else {
    sim = await startSimulator(
      simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', blockSize: BS, ...overrides }),
    );
    sub.connect(sim.engine.kvEvents!.boundEndpoint!);
  }
  cleanup.push(() => sim.close(500));
  const inbox = new Inbox(sub);
  // Probe until the subscription has reached the publisher: each probe stores new blocks, so it publishes.
  for (let i = 0; ; i++) {
    if (i === 60) throw new Error('no KV event reached the subscriber after 60 probes');
    await postJson(`${sim.url}/v1/completions`, {
      model: MODEL,
      prompt: `probe number ${i} a b c d e f`,
      max_tokens: 1,
    });
    if (await inbox.next(500)) break;
  }
  // Drain what the probes left.
  while (await inbox.next(50));
  return { sim, sub: inbox };
}

const ids = (text: string) => tokenize(text).map(tokenId);

describe('pd-router sim publishes vLLM KV events', () => {
  it('--zmq-endpoint (llm-d-inference-sim): BlockStored with the token ids, parent chain and llm-d block hashes; topic kv@<ip>@<model>', async () => {
    const { sim, sub } = await setup({ hashSeed: '42' }, 'epp-binds');
    const prompt = 'alpha beta gamma delta epsilon zeta eta theta iota kappa';
    expect((await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 })).status).toBe(200);
    const m = (await sub.next(30_000))!;
    expect(parseTopic(m.topic)).toEqual({ podId: '127.0.0.1', model: MODEL });
    expect(m.batch.dataParallelRank).toBe(0);
    const stored = m.batch.events.filter((event): event is BlockStoredEvent => event.type === 'BlockStored');
    expect(stored).toHaveLength(1);
    const tokens = ids(prompt);
    const full = Math.floor(tokens.length / BS);
    expect(Array.from(stored[0].tokenIds)).toEqual(tokens.slice(0, full * BS));
    expect(stored[0].blockSize).toBe(BS);
    expect(stored[0].parentBlockHash).toBeUndefined();
    expect(stored[0].medium).toBe('GPU');
    expect(stored[0].blockHashes.map(u64ToBigInt)).toEqual(
      new BlockKeyHasher(BS, '42').keys(MODEL, tokens).map(u64ToBigInt),
    );

    // The same prefix plus more: only the new blocks, chained to the last cached one.
    const longer = `${prompt} lambda mu nu xi omicron pi rho sigma`;
    await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: longer, max_tokens: 1 });
    const m2 = (await sub.next(30_000))!;
    const s2 = m2.batch.events[0] as BlockStoredEvent;
    expect(m2.seq).toBe(m.seq + 1n);
    const all = new BlockKeyHasher(BS, '42').keys(MODEL, ids(longer));
    expect(u64ToBigInt(s2.parentBlockHash!)).toBe(u64ToBigInt(all[full - 1]));
    expect(s2.blockHashes.map(u64ToBigInt)).toEqual(all.slice(full).map(u64ToBigInt));
  });

  it('evictions are BlockRemoved, a prefix-cache reset is AllBlocksCleared (map format, --kv-events-config bind mode)', async () => {
    const cfg = JSON.stringify({
      enable_kv_cache_events: true,
      publisher: 'zmq',
      endpoint: 'tcp://127.0.0.1:*',
      topic: 'kv@10.9.8.7@sim-model',
    });
    const { sim, sub } = await setup(
      { kvEventsConfig: cfg, kvCacheSize: 8, useVllmMapEventFormat: true, maxModelLen: 64 },
      'sim-binds',
    );
    // 8 blocks: a 6-block prompt then another 6-block prompt evicts cached blocks of the first.
    const a = Array.from({ length: 24 }, (_, i) => `a${i}`).join(' ');
    const b = Array.from({ length: 24 }, (_, i) => `b${i}`).join(' ');
    await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: a, max_tokens: 1 });
    await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: b, max_tokens: 1 });
    const seen: string[] = [];
    for (let m = await sub.next(30_000); m; m = await sub.next(1000)) {
      expect(m.topic).toBe('kv@10.9.8.7@sim-model');
      seen.push(...m.batch.events.map((event) => event.type));
      if (seen.includes('BlockRemoved') && seen.filter((type) => type === 'BlockStored').length >= 2) break;
    }
    expect(seen).toContain('BlockRemoved');
    expect((await postJson(`${sim.url}/reset_prefix_cache`, {})).status).toBe(200);
    const cleared = (await sub.next(30_000))!;
    expect(cleared.batch.events).toEqual([{ type: 'AllBlocksCleared' }]);
  });

  it("serves /tokenize and the render endpoints with the engine's own tokenizer; bad bodies and models get 400 and 404", async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], maxModelLen: 512 }));
    cleanup.push(() => sim.close(500));
    const t = await postJson(`${sim.url}/tokenize`, { model: MODEL, prompt: 'Hello, world!' });
    expect(t.body).toEqual({ count: 4, max_model_len: 512, tokens: ids('Hello, world!'), token_strs: null });
    const chat = { model: MODEL, messages: [{ role: 'user', content: 'Hello, world!' }] };
    const rendered = ids('### user: Hello, world!\n');
    expect((await postJson(`${sim.url}/tokenize`, chat)).body.tokens).toEqual(rendered);
    expect((await postJson(`${sim.url}/v1/chat/completions/render`, chat)).body).toEqual({ token_ids: rendered });
    expect((await postJson(`${sim.url}/v1/completions/render`, { model: MODEL, prompt: ['a b', 'c'] })).body).toEqual([
      { token_ids: ids('a b') },
      { token_ids: ids('c') },
    ]);
    // The chat's prompt_tokens count is the render's length: the ids are the engine's.
    expect(
      (await postJson(`${sim.url}/v1/chat/completions`, { ...chat, max_tokens: 1 })).body.usage.prompt_tokens,
    ).toBe(rendered.length);
    expect((await postJson(`${sim.url}/tokenize`, { model: 'other', prompt: 'x' })).status).toBe(404);
    expect((await postJson(`${sim.url}/tokenize`, { prompt: 'x', messages: [] })).status).toBe(400);
    expect((await postJson(`${sim.url}/v1/completions/render`, '{not json')).status).toBe(400);
    expect((await postJson(`${sim.url}/v1/chat/completions/render`, { model: MODEL })).status).toBe(400);
  });
});
