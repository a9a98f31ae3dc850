/**
 * Precise prefix-cache routing end to end: pd-router simulators publish vLLM KV events over real ZMQ sockets on
 * loopback, a real EPP (ext_proc over gRPC) indexes them and routes by them, with upstream's precise sample configs
 * loaded unchanged (only addresses set with --config-param, as a deployment sets them). The simulators listen on
 * distinct loopback addresses (127.0.0.2, 127.0.0.3) so the topic's `kv@<pod-ip>@<model>` names one endpoint.
 *
 * To show the routing comes from events and not from the EPP's own picks, each prompt is first sent straight to one
 * simulator (bypassing the EPP): only that simulator's events can tell the EPP where its blocks are. Every wait ends
 * on an event (an index entry appearing, a counter moving), bounded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Publisher } from 'zeromq';
import { Encoder } from '@msgpack/msgpack';
import { encodeEventBatch, encodeSequence, key53, type BlockStoredEvent } from '../../src/common/kv-events/index.js';
import type { EppHandle } from '../../src/epp/index.js';
import type { PreciseCore } from '../../src/epp/kv-events/precise-core.js';
import { simConfig, startSimulator, tokenize, tokenId, type SimulatorHandle } from '../../src/sim/index.js';
import { EXPECTED, upstreamText } from '../fixtures/upstream-configs/index.js';
import { metricValue, metricsText, postJson, waitFor } from '../helpers.js';
import { ExtProcTestClient, body, headers, responseBody, responseHeaders, setHeadersOf } from './ext-proc-client.js';
import { spec, startTestEpp, type TestEpp } from './fixtures.js';

const MODEL = 'sim-model';
const HOSTS = ['127.0.0.2', '127.0.0.3'] as const;

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function coreOf(epp: EppHandle, name: string): PreciseCore {
  // eslint-disable-next-line no-restricted-syntax -- the plugin's internals, which the test reads
  const p = epp.config.plugins.get(name) as unknown as { core: PreciseCore };
  return p.core;
}

async function sims(overrides: (i: number) => Parameters<typeof simConfig>[0]): Promise<SimulatorHandle[]> {
  const out = await Promise.all(
    HOSTS.map((host, i) =>
      startSimulator(
        simConfig({
          host,
          port: 0,
          model: [MODEL],
          mode: 'echo',
          blockSize: 16,
          kvCacheSize: 4096,
          maxModelLen: 4096,
          ...overrides(i),
        }),
      ),
    ),
  );
  cleanup.push(() => Promise.all(out.map((sim) => sim.close(500))).then(() => undefined));
  return out;
}

async function epp(
  config: string,
  sims: SimulatorHandle[],
  params: string[],
  overrides: Parameters<typeof startTestEpp>[2] = {},
): Promise<TestEpp> {
  const t = await startTestEpp(
    config,
    sims.map((sim, i) => spec(`d${i}`, HOSTS[i], 'decode', {}, sim.port)),
    { configParam: params, ...overrides },
  );
  cleanup.push(() => t.close());
  return t;
}

/**
 * n consecutive ports free on every address, below the kernel's ephemeral range: a ZMQ socket that connects before
 * the other side binds would otherwise, now and then, connect to itself (TCP self-connect on an ephemeral port) and
 * hold the port the EPP then fails to bind.
 */
async function zmqPorts(count: number): Promise<number> {
  const net = await import('node:net');
  const tryBind = (port: number) =>
    new Promise<import('node:net').Server | undefined>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(undefined));
      srv.listen(port, '0.0.0.0', () => resolve(srv));
    });
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 12_000 + Math.floor(Math.random() * 20_000);
    const held: import('node:net').Server[] = [];
    for (let i = 0; i < count; i++) {
      const srv = await tryBind(base + i);
      if (!srv) break;
      held.push(srv);
    }
    await Promise.all(held.map((srv) => new Promise((resolve) => srv.close(resolve))));
    if (held.length === count) return base;
  }
  throw new Error(`no ${count} consecutive free ports`);
}

const words = (tag: string, count: number) => Array.from({ length: count }, (_, i) => `${tag}${i}`).join(' ');

/**
 * Sends a prompt straight to a simulator and waits until the EPP has indexed its blocks there. PUB/SUB loses what is
 * published before the subscription has propagated, and a prompt whose blocks are cached is never reported again,
 * so fresh probe prompts go first until one of them is indexed (each probe bounded, at most 60).
 */
async function cacheOn(
  sim: SimulatorHandle,
  endpointId: string,
  core: PreciseCore,
  prompt: string,
  chat = false,
): Promise<void> {
  for (let probe = 0; ; probe++) {
    if (probe === 60) throw new Error(`no KV event from ${endpointId} reached the EPP after 60 probes`);
    const before = core.index?.entriesOf(endpointId) ?? 0;
    const r = await postJson(`${sim.url}/v1/completions`, {
      model: MODEL,
      prompt: words(`probe${probe}x${Math.random().toString(36).slice(2, 8)}x`, 140),
      max_tokens: 1,
    });
    expect(r.status).toBe(200);
    const deadline = Date.now() + 2000;
    while ((core.index?.entriesOf(endpointId) ?? 0) === before && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 5));
    if ((core.index?.entriesOf(endpointId) ?? 0) > before) break;
  }
  const r = chat
    ? await postJson(`${sim.url}/v1/chat/completions`, {
        model: MODEL,
        messages: [{ role: 'user', content: prompt }],
        max_tokens: 1,
      })
    : await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
  expect(r.status).toBe(200);
  const tokens = chat ? tokenize(`### user: ${prompt}\n`).map(tokenId) : tokenize(prompt).map(tokenId);
  // The simulator stores (and reports) full blocks of its own 16 tokens only.
  const keys = core.hasher.keys(MODEL, tokens.slice(0, Math.floor(tokens.length / 16) * 16)).map(key53);
  await waitFor(
    () => (core.index?.longestPrefix(keys, [endpointId]).blocks.get(endpointId) ?? 0) === keys.length,
    60_000,
    `the EPP to index the prompt's blocks on ${endpointId}`,
  );
}

/** Routes one request through the EPP and returns the chosen endpoint. */
async function route(
  client: ExtProcTestClient,
  payload: Record<string, unknown>,
  path = '/v1/completions',
): Promise<string> {
  const call = client.open();
  call.send(
    headers({ ':method': 'POST', ':path': path, ':authority': 'envoy', 'content-type': 'application/json' }),
    body(JSON.stringify({ model: MODEL, ...payload }), true),
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

describe('precise prefix-cache routing from KV events (real ZMQ, real EPP, simulators)', () => {
  it('llm-d-router sim-epp-kvcache-config.yaml: bound socket, token-producer vllm-http, routes each prompt to the pod whose events hold it', async () => {
    const port = await zmqPorts(1);
    const s = await sims(() => ({ zmqEndpoint: `tcp://127.0.0.1:${port}` }));
    const t = await epp(upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'), s, [
      `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
      `precise-prefix-cache-producer.kvEventsConfig.discoverPods=false`,
      `token-producer.vllm.url=http://${HOSTS[0]}:${s[0].port}`,
      `token-producer.modelName=${MODEL}`,
    ]);
    const core = coreOf(t.epp, 'precise-prefix-cache-producer');
    const ids = t.epp.store.all().map((endpoint) => endpoint.id);
    const cases = [
      { prompt: words('alpha', 80), on: 1 },
      { prompt: words('beta', 80), on: 0 },
      { prompt: words('gamma', 80), on: 1 },
    ];
    for (const c of cases) await cacheOn(s[c.on], ids[c.on], core, c.prompt);
    for (const c of cases)
      expect(await route(t.client, { prompt: c.prompt, max_tokens: 1 })).toBe(`${HOSTS[c.on]}:${s[c.on].port}`);
    // Chat: tokenized by the simulator's /v1/chat/completions/render, as the engine renders it.
    const chat = words('delta', 60);
    await cacheOn(s[0], ids[0], core, chat, true);
    expect(
      await route(t.client, { messages: [{ role: 'user', content: chat }], max_tokens: 1 }, '/v1/chat/completions'),
    ).toBe(`${HOSTS[0]}:${s[0].port}`);
    const m = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    expect(metricValue(m, 'llm_d_epp_kv_cache_index_lookup_hits_total')).toBeGreaterThan(0);
    expect(metricValue(m, 'llm_d_epp_kv_cache_events_total', { event_type: 'BlockStored' })).toBeGreaterThan(0);
    expect(
      metricValue(m, 'llm_d_epp_precise_prefix_cache_fallback_total', {
        plugin_name: 'precise-prefix-cache-producer',
        reason: 'no-tokens',
      }),
    ).toBeUndefined();
    expect(metricValue(m, 'llm_d_epp_kv_cache_index_entries')).toBe(core.index!.size);
  }, 120_000);

  it('llm-d v0.7.1 sim-epp-no-hit-lru.yaml: per-endpoint connections to vLLM-style bound publishers (rank r on socketPort + r), tokenized by the pool', async () => {
    const port = await zmqPorts(2);
    // vLLM binds a wildcard endpoint; each simulator is rank r of its pod, so it publishes on socketPort + r.
    const s = await sims((i) => ({
      kvEventsConfig: JSON.stringify({
        enable_kv_cache_events: true,
        publisher: 'zmq',
        endpoint: `tcp://*:${port + i}`,
        topic: `kv@${HOSTS[i]}@${MODEL}`,
      }),
    }));
    const t = await startTestEpp(
      upstreamText('llm-d-inference-scheduler-v0.7.1/deploy/config/sim-epp-no-hit-lru.yaml'),
      s.map((sim, i) => spec(`pod${i}-rank-${i}`, HOSTS[i], 'decode', {}, sim.port)),
      { configParam: [`precise-prefix-cache-scorer.kvEventsConfig.podDiscoveryConfig.socketPort=${port}`] },
    );
    cleanup.push(() => t.close());
    expect(
      t.epp.config.warnings.some((warning) => /tokenProcessorConfig is ignored, as llm-d v0.7.1/.test(warning)),
    ).toBe(true);
    const core = coreOf(t.epp, 'precise-prefix-cache-scorer');
    expect(core.settings.blockSizeTokens).toBe(16);
    const ids = t.epp.store.all().map((endpoint) => endpoint.id);
    const cases = [
      { prompt: words('kappa', 70), on: 0 },
      { prompt: words('lambda', 70), on: 1 },
      { prompt: words('mu', 70), on: 0 },
    ];
    for (const c of cases) await cacheOn(s[c.on], ids[c.on], core, c.prompt);
    for (const c of cases)
      expect(await route(t.client, { prompt: c.prompt, max_tokens: 1 })).toBe(`${HOSTS[c.on]}:${s[c.on].port}`);
    const m = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    expect(metricValue(m, 'llm_d_epp_kv_cache_events_active_subscribers')).toBe(2);
    expect(
      metricValue(m, 'llm_d_epp_kv_cache_events_messages_received_total', { pod_identifier: ids[0] }),
    ).toBeGreaterThan(0);
  }, 120_000);

  it('a tokenizer that fails or times out: the request is routed from the approximate index at once, counted', async () => {
    const port = await zmqPorts(2);
    const s = await sims(() => ({ zmqEndpoint: `tcp://127.0.0.1:${port}` }));
    // Nothing listens on port+1: connection refused, then the backoff answers without waiting.
    const t = await epp(upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-tokenizer-vllm-http-config.yaml'), s, [
      `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
      `precise-prefix-cache-producer.kvEventsConfig.discoverPods=false`,
      `token-producer.vllm.url=http://127.0.0.1:${port + 1}`,
      `token-producer.vllm.timeout=2s`,
    ]);
    const prompt = words('nu', 60);
    const first = await route(t.client, { prompt, max_tokens: 1 });
    // The approximate index learned the pick: the repeat goes to the same endpoint.
    expect(await route(t.client, { prompt, max_tokens: 1 })).toBe(first);
    const m = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    expect(
      metricValue(m, 'llm_d_epp_tokenization_failures_total', { plugin_name: 'token-producer', reason: 'connection' }),
    ).toBe(1);
    expect(
      metricValue(m, 'llm_d_epp_tokenization_failures_total', { plugin_name: 'token-producer', reason: 'backoff' }),
    ).toBe(1);
    expect(
      metricValue(m, 'llm_d_epp_precise_prefix_cache_fallback_total', {
        plugin_name: 'precise-prefix-cache-producer',
        reason: 'no-tokens',
      }),
    ).toBe(2);
  }, 120_000);

  it('a tokenizer that never answers: the request waits only vllm.timeout, then is routed from the approximate index (reason timeout)', async () => {
    const port = await zmqPorts(1);
    const s = await sims(() => ({}));
    const { createServer } = await import('node:http');
    let arrived = 0;
    const silent = createServer(() => {
      arrived++;
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    cleanup.push(() => silent.closeAllConnections());
    const t = await epp(upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-tokenizer-vllm-http-config.yaml'), s, [
      `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
      `precise-prefix-cache-producer.kvEventsConfig.discoverPods=false`,
      `token-producer.vllm.url=http://127.0.0.1:${(silent.address() as import('node:net').AddressInfo).port}`,
      `token-producer.vllm.timeout=300ms`,
    ]);
    const started = performance.now();
    expect([`${HOSTS[0]}:${s[0].port}`, `${HOSTS[1]}:${s[1].port}`]).toContain(
      await route(t.client, { prompt: words('pi', 30), max_tokens: 1 }),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(arrived).toBe(1);
    const m = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    expect(
      metricValue(m, 'llm_d_epp_tokenization_failures_total', { plugin_name: 'token-producer', reason: 'timeout' }),
    ).toBe(1);
  }, 120_000);

  it("speculativeIndexing: the pick holds the request's blocks until speculativeTTL, before any event", async () => {
    const port = await zmqPorts(1);
    const s = await sims(() => ({}));
    const t = await epp(upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'), s, [
      `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
      `precise-prefix-cache-producer.kvEventsConfig.discoverPods=false`,
      'precise-prefix-cache-producer.speculativeIndexing=true',
      'precise-prefix-cache-producer.speculativeTTL=30s',
      `token-producer.vllm.url=http://${HOSTS[0]}:${s[0].port}`,
      `token-producer.modelName=${MODEL}`,
    ]);
    const core = coreOf(t.epp, 'precise-prefix-cache-producer');
    const prompt = words('rho', 64);
    const pick = await route(t.client, { prompt, max_tokens: 1 });
    const id = t.epp.store.all().find((endpoint) => endpoint.hostPort === pick)!.id;
    const keys = core.hasher.keys(MODEL, tokenize(prompt).map(tokenId)).map(key53);
    expect(keys.length).toBe(4);
    expect(core.index!.longestPrefix(keys, [id]).blocks.get(id)).toBe(4);
    expect(await route(t.client, { prompt, max_tokens: 1 })).toBe(pick);
    core.index!.expireSpeculative(Date.now() + 31_000);
    expect(core.index!.longestPrefix(keys, [id]).blocks.get(id) ?? 0).toBe(0);
  }, 120_000);

  it('bad publishers: malformed and truncated batches, wrong frames, unknown events, unknown pods, a flood are counted and dropped; the EPP keeps routing by events', async () => {
    const port = await zmqPorts(1);
    const s = await sims(() => ({ zmqEndpoint: `tcp://127.0.0.1:${port}` }));
    const t = await epp(
      upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'),
      s,
      [
        `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
        `precise-prefix-cache-producer.kvEventsConfig.discoverPods=false`,
        `token-producer.vllm.url=http://${HOSTS[1]}:${s[1].port}`,
        `token-producer.modelName=${MODEL}`,
      ],
      { kvEventsMaxMessageRate: 200 },
    );
    const core = coreOf(t.epp, 'precise-prefix-cache-producer');
    const ids = t.epp.store.all().map((endpoint) => endpoint.id);
    const pub = new Publisher({ linger: 0, sendHighWaterMark: 100_000 });
    cleanup.push(() => pub.close());
    pub.connect(`tcp://127.0.0.1:${port}`);
    const metrics = async () => metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    const dropped = async (reason: string) =>
      metricValue(await metrics(), 'llm_d_epp_kv_cache_events_dropped_total', { reason }) ?? 0;
    const good = encodeEventBatch({ ts: 1, events: [{ type: 'AllBlocksCleared' }] });
    let seq = 0n;
    const send = (topic: string, payload: Uint8Array) => pub.send([topic, encodeSequence(seq++), Buffer.from(payload)]);
    // Until the subscription has reached this publisher, messages are lost: send until one is counted.
    await waitFor(
      async () => {
        await send('kv@10.1.1.1@sim-model', good);
        return (await dropped('unknown_pod')) > 0;
      },
      60_000,
      'the EPP to count a message from an unknown pod',
    );
    const before = {
      malformed: await dropped('malformed'),
      frames: await dropped('frames'),
      unknown: await dropped('unknown_event'),
    };
    await send(`kv@${HOSTS[0]}@sim-model`, good.subarray(0, good.length - 2));
    await send(`kv@${HOSTS[0]}@sim-model`, new Uint8Array([0xc1, 0xc1]));
    await send(`kv@${HOSTS[0]}@sim-model`, new Encoder().encode([1, [['BlockStored', 'not hashes', null, [], 16]]]));
    await pub.send([`kv@${HOSTS[0]}@sim-model`, Buffer.from('short')]);
    await send(`kv@${HOSTS[0]}@sim-model`, new Encoder().encode([1, [['FutureEvent', 1], ['AllBlocksCleared']]]));
    await waitFor(
      async () =>
        (await dropped('malformed')) >= before.malformed + 3 &&
        (await dropped('frames')) >= before.frames + 1 &&
        (await dropped('unknown_event')) >= before.unknown + 1,
      60_000,
      'the bad messages to be counted',
    );
    // A flood from one publisher (2000 messages at once against --kv-events-max-message-rate 200): beyond the rate, dropped and counted; memory stays within the index bound.
    const stored = (i: number): BlockStoredEvent => ({
      type: 'BlockStored',
      blockHashes: [{ hi: 7, lo: i }],
      parentBlockHash: undefined,
      tokenIds: Uint32Array.from({ length: 16 }, (_, j) => i * 16 + j),
      blockSize: 16,
      loraId: undefined,
      medium: 'GPU',
      loraName: undefined,
      extraKeys: undefined,
      groupIdx: undefined,
    });
    for (let i = 0; i < 2_000; i++)
      await send(`kv@${HOSTS[0]}@sim-model`, encodeEventBatch({ ts: 1, events: [stored(i)] }));
    await waitFor(async () => (await dropped('rate_limited')) > 0, 60_000, 'the flood to be rate limited');
    expect(core.index!.size).toBeLessThanOrEqual(core.index!.maxEntries);
    // Still routing by events, and ready.
    expect(t.epp.ready()).toBe(true);
    const prompt = words('xi', 64);
    await cacheOn(s[1], ids[1], core, prompt);
    expect(await route(t.client, { prompt, max_tokens: 1 })).toBe(`${HOSTS[1]}:${s[1].port}`);
  }, 180_000);

  it('an endpoint leaving the pool leaves the index at once; a KV-events address that cannot be bound makes the EPP NOT_SERVING, or not with --kv-events-required=false', async () => {
    const port = await zmqPorts(1);
    const s = await sims(() => ({ zmqEndpoint: `tcp://127.0.0.1:${port}` }));
    const t = await epp(upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'), s, [
      `precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
      `precise-prefix-cache-producer.kvEventsConfig.discoverPods=false`,
      `token-producer.vllm.url=http://${HOSTS[0]}:${s[0].port}`,
    ]);
    const core = coreOf(t.epp, 'precise-prefix-cache-producer');
    const ids = t.epp.store.all().map((endpoint) => endpoint.id);
    await cacheOn(s[0], ids[0], core, words('omicron', 40));
    expect(core.index!.entriesOf(ids[0])).toBeGreaterThan(0);
    const { writeFileSync } = await import('node:fs');
    const { endpointsYaml } = await import('./fixtures.js');
    writeFileSync(t.file, endpointsYaml([spec('d1', HOSTS[1], 'decode', {}, s[1].port)]));
    await waitFor(() => t.epp.store.all().length === 1, 60_000, 'the endpoint to leave');
    expect(core.index!.entriesOf(ids[0])).toBe(0);

    // The same address again: EADDRINUSE.
    const busy = await startTestEpp(
      upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'),
      [spec('d0', HOSTS[0], 'decode', {}, s[0].port)],
      {
        configParam: [`precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`],
      },
    );
    cleanup.push(() => busy.close());
    await waitFor(() => busy.epp.store.synced, 60_000, 'discovery');
    expect(busy.epp.ready()).toBe(false);
    expect(coreOf(busy.epp, 'precise-prefix-cache-producer').unavailable).toMatch(
      /cannot bind the KV-events socket tcp:\/\/127.0.0.1:\d+: .*in use/i,
    );
    const lenient = await startTestEpp(
      upstreamText('llm-d-router-ebab687/deploy/config/sim-epp-kvcache-config.yaml'),
      [spec('d0', HOSTS[0], 'decode', {}, s[0].port)],
      {
        configParam: [`precise-prefix-cache-producer.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`],
        kvEventsRequired: false,
      },
    );
    cleanup.push(() => lenient.close());
    await waitFor(() => lenient.epp.store.synced, 60_000, 'discovery');
    expect(lenient.epp.ready()).toBe(true);
    // Served from the approximate index meanwhile.
    expect(await route(lenient.client, { prompt: 'x y z', max_tokens: 1 })).toBe(`${HOSTS[0]}:${s[0].port}`);
    expect(
      metricValue(
        await metricsText(`http://127.0.0.1:${lenient.epp.metricsPort}`),
        'llm_d_epp_precise_prefix_cache_fallback_total',
        { plugin_name: 'precise-prefix-cache-producer', reason: 'unavailable' },
      ),
    ).toBe(1);
  }, 180_000);
});

describe('every precise sample config of llm-d v0.7.1 and llm-d-router loads unchanged and routes by KV events', () => {
  for (const [file, e] of Object.entries(EXPECTED)) {
    if (!e.loads || e.drive !== 'precise') continue;
    it(
      file,
      async () => {
        const text = upstreamText(file);
        const precise = text.includes('type: precise-prefix-cache-scorer')
          ? 'precise-prefix-cache-scorer'
          : 'precise-prefix-cache-producer';
        const bound = text.includes('zmqEndpoint');
        const port = await zmqPorts(2);
        // Bound mode: the simulators connect to the EPP's socket. Per-endpoint mode (no zmqEndpoint): each simulator binds
        // as vLLM does, rank r of its pod on socketPort + r.
        const s = await sims((i) =>
          bound
            ? { zmqEndpoint: `tcp://127.0.0.1:${port}` }
            : {
                kvEventsConfig: JSON.stringify({
                  enable_kv_cache_events: true,
                  publisher: 'zmq',
                  endpoint: `tcp://*:${port + i}`,
                  topic: `kv@${HOSTS[i]}@${MODEL}`,
                }),
              },
        );
        const params = bound
          ? [
              `${precise}.kvEventsConfig.zmqEndpoint=tcp://127.0.0.1:${port}`,
              `${precise}.kvEventsConfig.discoverPods=false`,
            ]
          : [`${precise}.kvEventsConfig.podDiscoveryConfig.socketPort=${port}`];
        // llm-d-router's token-producer asks a render server at localhost:8000 in the sample: here, a simulator.
        if (text.includes('vllm:'))
          params.push(`token-producer.vllm.url=http://${HOSTS[0]}:${s[0].port}`, `token-producer.modelName=${MODEL}`);
        const t = await startTestEpp(
          text,
          s.map((sim, i) => spec(`pod${i}-rank-${i}`, HOSTS[i], 'decode', {}, sim.port)),
          { configParam: params },
        );
        cleanup.push(() => t.close());
        const core = coreOf(t.epp, precise);
        const ids = t.epp.store.all().map((endpoint) => endpoint.id);
        const cases = [0, 1, 1, 0].map((on, i) => ({ on, prompt: words(`w${i}z`, 140) }));
        for (const c of cases) await cacheOn(s[c.on], ids[c.on], core, c.prompt);
        for (const c of cases)
          expect(await route(t.client, { prompt: c.prompt, max_tokens: 1 })).toBe(`${HOSTS[c.on]}:${s[c.on].port}`);
      },
      150_000,
    );
  }
});
