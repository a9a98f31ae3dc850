/**
 * KV events against the upstream simulator (llm-d-inference-sim v0.10.2, which publishes vLLM's KV events with
 * llm-d-kv-cache's block keys as block hashes):
 *
 * - pd-router's EPP, loading llm-d-router's sim-epp-kvcache-config.yaml unchanged (addresses set with --config-param),
 *   indexes the events of two upstream instances, one in vLLM's array encoding and one in the map encoding
 *   (`--use-vllm-map-event-format`), tokenizes with the upstream simulator's /v1/completions/render, and routes each
 *   prompt to the instance whose events hold it (the prompt is first sent straight to that instance, so only its
 *   events can tell the EPP);
 * - pd-router's simulator and the upstream simulator, given the same prompt, model, block size and hash seed, publish
 *   the same topic shape and the same BlockStored (block hashes, token ids, block size, medium), decoded by the same
 *   decoder the EPP uses.
 *
 * The upstream instances listen on every IPv4 address; each is addressed on its own loopback IP (127.0.0.2, .3) and
 * told it with POD_IP, which names its topic `kv@<pod-ip>@<model>`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Subscriber } from 'zeromq';
import {
  decodeEventBatch,
  key53,
  parseTopic,
  u64ToBigInt,
  type BlockStoredEvent,
  type KvEventBatch,
} from '../../src/common/kv-events/index.js';
import type { PreciseCore } from '../../src/epp/kv-events/precise-core.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { upstreamText } from '../fixtures/upstream-configs/index.js';
import { postJson, waitFor } from '../helpers.js';
import { body, headers, responseBody, responseHeaders, setHeadersOf } from '../epp/ext-proc-client.js';
import { spec, startTestEpp, type TestEpp } from '../epp/fixtures.js';
import { MODEL, skipInterop, startUpstreamSim, type UpstreamSim } from './upstream.js';

const HOSTS = ['127.0.0.2', '127.0.0.3'] as const;
const SIM_ARGS = [
  '--model',
  MODEL,
  '--enable-kvcache',
  '--block-size',
  '16',
  '--kv-cache-size',
  '2048',
  '--hash-seed',
  '42',
  '--max-model-len',
  '4096',
  '--event-batch-size',
  '1',
];

/** A free port below the ephemeral range (a ZMQ socket connecting before the bind could otherwise connect to itself). */
async function zmqPort(): Promise<number> {
  const net = await import('node:net');
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 12_000 + Math.floor(Math.random() * 20_000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port');
}

const words = (tag: string, count: number) => Array.from({ length: count }, (_, i) => `${tag}${i}`).join(' ');

async function renderIds(url: string, prompt: string): Promise<number[]> {
  const r = await postJson(`${url}/v1/completions/render`, { model: MODEL, prompt });
  expect(r.status).toBe(200);
  return r.body[0].token_ids as number[];
}

describe.skipIf(skipInterop())('KV events: pd-router against llm-d-inference-sim v0.10.2', () => {
  const sims: UpstreamSim[] = [];
  let t: TestEpp;
  let core: PreciseCore;

  beforeAll(async () => {
    const port = await zmqPort();
    sims.push(
      ...(await Promise.all(
        HOSTS.map((ip, i) =>
          startUpstreamSim(
            [
              ...SIM_ARGS,
              '--zmq-endpoint',
              `tcp://127.0.0.1:${port}`,
              ...(i === 1 ? ['--use-vllm-map-event-format'] : []),
            ],
            { env: { POD_IP: ip }, name: `upstream ${ip}` },
          ),
        ),
      )),
    );
    t = await startTestEpp(
      upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'),
      sims.map((sim, i) => spec(`up${i}`, HOSTS[i], 'decode', {}, sim.port)),
      {
        configParam: [
          `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
          'precise-prefix-cache-producer.kvEventsConfig.discoverPods=false',
          `token-producer.vllm.url=http://${HOSTS[0]}:${sims[0].port}`,
          `token-producer.modelName=${MODEL}`,
        ],
      },
    );
    // eslint-disable-next-line no-restricted-syntax -- the plugin's internals, which the test reads
    core = (t.epp.config.plugins.get('precise-prefix-cache-producer') as unknown as { core: PreciseCore }).core;
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await Promise.all(sims.map((sim) => sim.close()));
  });

  /** Sends the prompt straight to upstream instance i once its events reach the EPP, then waits for its blocks in the index. */
  async function cacheOn(i: number, prompt: string): Promise<void> {
    const sim = sims[i];
    const id = t.epp.store.all()[i].id;
    for (let probe = 0; ; probe++) {
      if (probe === 60)
        throw new Error(
          `no KV event from ${id} reached the EPP after 60 probes; upstream output:\n${sim.output().slice(-3000)}`,
        );
      const before = core.index?.entriesOf(id) ?? 0;
      expect(
        (
          await postJson(`${sim.url}/v1/completions`, {
            model: MODEL,
            prompt: words(`probe${probe}x${Math.random().toString(36).slice(2, 8)}x`, 40),
            max_tokens: 1,
          })
        ).status,
      ).toBe(200);
      const deadline = Date.now() + 3000;
      while ((core.index?.entriesOf(id) ?? 0) === before && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      if ((core.index?.entriesOf(id) ?? 0) > before) break;
    }
    expect((await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 })).status).toBe(200);
    const ids = await renderIds(sim.url, prompt);
    const keys = core.hasher.keys(MODEL, ids).map(key53);
    expect(keys.length).toBeGreaterThan(2);
    await waitFor(
      () => (core.index?.longestPrefix(keys, [id]).blocks.get(id) ?? 0) === keys.length,
      60_000,
      `the EPP to index the prompt on ${id}`,
    );
  }

  async function route(prompt: string): Promise<string> {
    const c = t.client;
    const call = c.open();
    call.send(
      headers({
        ':method': 'POST',
        ':path': '/v1/completions',
        ':authority': 'envoy',
        'content-type': 'application/json',
      }),
      body(JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }), true),
    );
    const [h] = await call.waitFor(2);
    const set = new Map(
      setHeadersOf(h.request_headers!.response.header_mutation).map(([k, value]) => [k.toLowerCase(), value]),
    );
    call.send(
      responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
      responseBody('{"choices":[]}', true),
    );
    await call.waitFor(3);
    call.end();
    await call.ended;
    return set.get('x-gateway-destination-endpoint')!;
  }

  it("pd-router's EPP routes by the upstream simulator's events (array and map encodings) with llm-d-router's precise config", async () => {
    const cases = [
      { on: 1, prompt: words('alpha', 90) },
      { on: 0, prompt: words('beta', 90) },
      { on: 1, prompt: words('gamma', 90) },
      { on: 0, prompt: words('delta', 90) },
    ];
    for (const c of cases) await cacheOn(c.on, c.prompt);
    for (const c of cases) expect(await route(c.prompt)).toBe(`${HOSTS[c.on]}:${sims[c.on].port}`);
    const dropped = (await t.epp.metrics.registry.getSingleMetric('llm_d_epp_kv_cache_events_dropped_total')!.get())
      .values;
    expect(
      dropped
        .filter((sample) => sample.labels.reason === 'malformed' || sample.labels.reason === 'unknown_event')
        .every((sample) => sample.value === 0),
    ).toBe(true);
  }, 240_000);

  it("pd-router's simulator publishes what the upstream simulator publishes, decoded by the same decoder", async () => {
    const sub = new Subscriber({ linger: 0 });
    await sub.bind('tcp://127.0.0.1:*');
    const inbox: Array<{ topic: string; batch: KvEventBatch }> = [];
    const pump = (async () => {
      for (;;) {
        const [topic, , payload] = await sub.receive().catch(() => [] as Buffer[]);
        if (!topic) return;
        inbox.push({ topic: topic.toString(), batch: decodeEventBatch(payload) });
      }
    })();
    sub.subscribe('kv@');
    let upstream: UpstreamSim | undefined;
    let ours: SimulatorHandle | undefined;
    try {
      upstream = await startUpstreamSim([...SIM_ARGS, '--zmq-endpoint', sub.lastEndpoint!], {
        env: { POD_IP: '10.20.30.40' },
        name: 'upstream publisher',
      });
      ours = await startSimulator(
        simConfig({
          host: '127.0.0.1',
          port: 0,
          model: [MODEL],
          blockSize: 16,
          kvCacheSize: 2048,
          hashSeed: '42',
          maxModelLen: 4096,
          zmqEndpoint: sub.lastEndpoint!,
          advertiseHost: '10.20.30.41',
        }),
      );
      const storedFrom = (pod: string) =>
        inbox
          .filter((message) => parseTopic(message.topic).podId === pod)
          .flatMap((message) =>
            message.batch.events.filter((event): event is BlockStoredEvent => event.type === 'BlockStored'),
          );
      // Probe both until events from each arrive (the subscription must reach each publisher first).
      for (let probe = 0; storedFrom('10.20.30.40').length === 0 || storedFrom('10.20.30.41').length === 0; probe++) {
        if (probe === 60) throw new Error('no KV events from both simulators after 60 probes');
        const p = words(`probe${probe}`, 40);
        await postJson(`${upstream.url}/v1/completions`, { model: MODEL, prompt: p, max_tokens: 1 });
        await postJson(`${ours.url}/v1/completions`, { model: MODEL, prompt: p, max_tokens: 1 });
        const deadline = Date.now() + 3000;
        while (
          (storedFrom('10.20.30.40').length === 0 || storedFrom('10.20.30.41').length === 0) &&
          Date.now() < deadline
        )
          await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const prompt = words('epsilon', 70);
      const n = [storedFrom('10.20.30.40').length, storedFrom('10.20.30.41').length];
      await postJson(`${upstream.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
      await postJson(`${ours.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
      await waitFor(
        () => storedFrom('10.20.30.40').length > n[0] && storedFrom('10.20.30.41').length > n[1],
        60_000,
        'BlockStored from both for the prompt',
      );
      const theirs = storedFrom('10.20.30.40').slice(n[0]);
      const mine = storedFrom('10.20.30.41').slice(n[1]);
      const flat = (events: BlockStoredEvent[]) => ({
        hashes: events.flatMap((event) => event.blockHashes.map((hash) => u64ToBigInt(hash).toString())),
        tokens: events.flatMap((event) => Array.from(event.tokenIds)),
        blockSize: [...new Set(events.map((event) => event.blockSize))],
        medium: [...new Set(events.map((event) => event.medium))],
      });
      expect(flat(mine)).toEqual(flat(theirs));
      expect(flat(mine).hashes.length).toBeGreaterThan(2);
      expect(inbox.find((message) => parseTopic(message.topic).podId === '10.20.30.41')!.topic).toBe(
        `kv@10.20.30.41@${MODEL}`,
      );
      expect(inbox.find((message) => parseTopic(message.topic).podId === '10.20.30.40')!.topic).toBe(
        `kv@10.20.30.40@${MODEL}`,
      );
    } finally {
      await ours?.close(500);
      await upstream?.close();
      sub.close();
      await pump;
    }
  }, 240_000);
});
