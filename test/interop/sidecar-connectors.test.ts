/**
 * Differential sidecar connectors: the same client requests through pd-router's sidecar and llm-d-router ebab687's
 * pd-sidecar, each in front of recording pd-router simulators (the prefill one also serving a Mooncake bootstrap
 * server), for every connector and option issue 19 added: --kv-connector=mooncake with --mooncake-bootstrap-port,
 * --kv-connector=offloading with --p2p-connector-port and x-kv-cache-source-host-port, nixlv2 with --enable-p2p-pull,
 * and --decode-chunk-size. Compared: every leg's body (transfer and request ids replaced by their order of first use,
 * so a shared id must be shared the same way), the data-parallel rank header, the status and the answer.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import type { RequestRecord } from '../../src/sim/sim-engine.js';
import { parseSse, waitFor } from '../helpers.js';
import { UPSTREAM, startUpstreamSidecar } from './llm-d.js';
import { describeWith, need } from './need.js';
import { PeerSet, startPdRouterSidecar } from './pd-router-peers.js';

const req = await need(UPSTREAM.ebab687.source, UPSTREAM.ebab687.sidecar);

const MODEL = 'sim-model';
type Kind = 'pd-router' | 'ebab687';
const KINDS: Kind[] = ['pd-router', 'ebab687'];

const peers = new PeerSet();
let prefill: SimulatorHandle;
let decode: SimulatorHandle;

beforeAll(async () => {
  if (!req.ok) return;
  prefill = await startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      model: [MODEL],
      mode: 'echo',
      engineId: 'prefill-0',
      seed: 1,
      mooncakeBootstrapPort: 0,
    }),
  );
  decode = await startSimulator(
    simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId: 'decode-0', seed: 2 }),
  );
}, 60_000);

afterAll(async () => {
  await peers.closeAll();
  await Promise.all([prefill?.close(), decode?.close()]);
});

/** Both sidecars with the same upstream flags, in front of the decode simulator. */
async function sidecars(args: string[]): Promise<Record<Kind, string>> {
  return {
    'pd-router': peers.add(await startPdRouterSidecar({ modelServerPort: decode.port, extraArgs: args })).url,
    ebab687: peers.add(await startUpstreamSidecar('ebab687', { vllmPort: decode.port, extraArgs: args })).url,
  };
}

interface Outcome {
  status: number;
  contentType: string;
  text: string;
  prefill: RequestRecord[];
  decode: RequestRecord[];
}

/** One request; waits for `prefills` prefill legs (the concurrent connectors' prefill may end after the answer). */
async function send(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
  prefills: number,
): Promise<Outcome> {
  prefill.engine.clearRecords();
  decode.engine.clearRecords();
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  peers.check();
  await waitFor(() => prefill.engine.recentRequests().length >= prefills, 10_000, 'prefill legs recorded');
  return {
    status: r.status,
    contentType: (r.headers.get('content-type') ?? '').split(';')[0],
    text,
    prefill: [...prefill.engine.recentRequests()],
    decode: [...decode.engine.recentRequests()],
  };
}

const ID = /^(xfer-|tx)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** `value` with every id replaced by `<id N>` in order of first use (object keys visited sorted). */
function normalizeIds(value: unknown, ids = new Map<string, string>()): unknown {
  if (typeof value === 'string' && ID.test(value)) {
    if (!ids.has(value)) ids.set(value, `<id ${ids.size + 1}${value.startsWith('xfer-') ? ' xfer' : ''}>`);
    return ids.get(value);
  }
  if (Array.isArray(value)) return value.map((item) => normalizeIds(item, ids));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, normalizeIds((value as Record<string, unknown>)[key], ids)]),
    );
  return value;
}

/** The legs as compared: prefill then decode bodies, ids normalized across them, and the prefill rank header. */
function legsOf(outcome: Outcome): unknown {
  const ids = new Map<string, string>();
  return {
    prefill: outcome.prefill.map((leg) => ({
      body: normalizeIds(leg.body, ids),
      rank: leg.headers['x-data-parallel-rank'],
    })),
    decode: outcome.decode.map((leg) => normalizeIds(leg.body, ids)),
  };
}

const VOLATILE = new Set(['id', 'created']);
function stripVolatile(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripVolatile);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key]) => !VOLATILE.has(key))
        .map(([key, field]) => [key, stripVolatile(field)]),
    );
  return value;
}

/** The answer: the JSON body, or the SSE events in order, without ids and timestamps. */
function answerOf(outcome: Outcome): unknown {
  if (outcome.contentType === 'text/event-stream')
    return parseSse(outcome.text).map((frame) =>
      frame.data === '[DONE]' ? frame.data : stripVolatile(JSON.parse(frame.data)),
    );
  return stripVolatile(JSON.parse(outcome.text));
}

const chat = (fields: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten eleven twelve' }],
  ...fields,
});
const STREAM = { stream: true, stream_options: { include_usage: true } };

/** Sends `body` through both sidecars and expects the same legs, status and answer. */
async function expectSame(
  urls: Record<Kind, string>,
  name: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
  prefills: number,
  compareAnswer = true,
): Promise<Record<Kind, Outcome>> {
  const o = {} as Record<Kind, Outcome>;
  for (const kind of KINDS) o[kind] = await send(urls[kind], path, body, headers, prefills);
  const where = `${name}\n${JSON.stringify(o).slice(0, 4000)}`;
  expect([o['pd-router'].status, o['pd-router'].contentType], where).toEqual([o.ebab687.status, o.ebab687.contentType]);
  expect(o['pd-router'].status, where).toBe(200);
  expect(o['pd-router'].prefill.length, where).toBe(prefills);
  expect(legsOf(o['pd-router']), where).toEqual(legsOf(o.ebab687));
  if (compareAnswer) expect(answerOf(o['pd-router']), where).toEqual(answerOf(o.ebab687));
  return o;
}

describeWith(req, "sidecar connectors: pd-router and llm-d-router ebab687's pd-sidecar, the same requests", () => {
  it('--kv-connector=mooncake: the bootstrap query, both legs with one transfer_id, the rank header', async () => {
    const urls = await sidecars([
      '--kv-connector=mooncake',
      `--mooncake-bootstrap-port=${prefill.mooncakeBootstrap!.port}`,
    ]);
    const prefiller = { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}` };
    for (const [name, path, body] of [
      ['chat, max_completion_tokens', '/v1/chat/completions', chat({ max_completion_tokens: 4 })],
      ['chat, streamed', '/v1/chat/completions', chat({ max_tokens: 4, ...STREAM })],
      ['completions', '/v1/completions', { model: MODEL, prompt: 'the quick brown fox', max_tokens: 4 }],
    ] as const) {
      const o = await expectSame(urls, `mooncake ${name}`, path, body, prefiller, 1);
      const kv = (o['pd-router'].decode[0].body as { kv_transfer_params: Record<string, unknown> }).kv_transfer_params;
      expect(kv.remote_engine_id).toBe('prefill-0');
      expect(kv.remote_bootstrap_addr).toBe(`http://127.0.0.1:${prefill.mooncakeBootstrap!.port}`);
    }
  }, 120_000);

  it('--kv-connector=offloading: remote_decoder and remote_prefiller legs; x-kv-cache-source-host-port pulls, P/D and local', async () => {
    const urls = await sidecars(['--kv-connector=offloading', '--p2p-connector-port=7001']);
    const prefiller = `127.0.0.1:${prefill.port}`;
    const body = chat({ max_completion_tokens: 4, ...STREAM });
    await expectSame(urls, 'offloading P/D', '/v1/chat/completions', body, { 'x-prefiller-host-port': prefiller }, 1);
    await expectSame(
      urls,
      'offloading P/D with a KV cache source',
      '/v1/chat/completions',
      body,
      { 'x-prefiller-host-port': prefiller, 'x-kv-cache-source-host-port': '10.9.9.9:8000' },
      1,
    );
    await expectSame(
      urls,
      'offloading P/D, the source is the prefiller',
      '/v1/chat/completions',
      body,
      { 'x-prefiller-host-port': prefiller, 'x-kv-cache-source-host-port': prefiller },
      1,
    );
    for (const source of ['10.9.9.9:8000', 'not-a-host-port', ':8000'])
      await expectSame(
        urls,
        `local, source ${source}`,
        '/v1/chat/completions',
        chat({ max_tokens: 4 }),
        {
          'x-kv-cache-source-host-port': source,
        },
        0,
      );
  }, 120_000);

  it('nixlv2 --enable-p2p-pull: the remote_kv_source pull composed onto the NIXL prefill leg', async () => {
    const urls = await sidecars(['--enable-p2p-pull', '--p2p-connector-port=7002']);
    await expectSame(
      urls,
      'nixlv2 with a KV cache source',
      '/v1/completions',
      { model: MODEL, prompt: 'the quick brown fox', max_tokens: 4 },
      { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}`, 'x-kv-cache-source-host-port': '10.9.9.9:8000' },
      1,
      // The cached_tokens rewrite differs by design on completions (see sidecar-legs.test.ts); the legs are the point.
      false,
    );
  }, 120_000);

  it('--decode-chunk-size: the chunk requests, and the stitched answer streamed or not, local and through NIXL', async () => {
    const urls = await sidecars(['--decode-chunk-size=4']);
    for (const [name, body] of [
      ['one chunk', chat({ max_tokens: 4 })],
      ['three chunks', chat({ max_completion_tokens: 10 })],
      ['three chunks, streamed', chat({ max_tokens: 10, ...STREAM })],
    ] as const) {
      const local = await expectSame(urls, `local ${name}`, '/v1/chat/completions', body, {}, 0);
      expect(local['pd-router'].decode.length).toBe(name === 'one chunk' ? 1 : 3);
      await expectSame(
        urls,
        `P/D ${name}`,
        '/v1/chat/completions',
        body,
        {
          'x-prefiller-host-port': `127.0.0.1:${prefill.port}`,
        },
        1,
      );
    }
  }, 180_000);
});
