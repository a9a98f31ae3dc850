/**
 * Differential sidecar legs: the same client requests through pd-router's sidecar and each upstream pd-sidecar
 * (llm-d-inference-scheduler v0.7.1, llm-d-router ebab687), NIXL v2, to recording pd-router simulators (each request
 * they receive is kept, headers and body). Compared, for every API type each sidecar handles, streamed or not: the
 * prefill leg's body and headers, the decode leg's body and headers, and the answer; then, for each fault (prefiller
 * down, prefiller 4xx, 5xx, 2xx without kv_transfer_params, decoder down), the status and body the client gets and the
 * legs that ran.
 */
import http from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import type { RequestRecord } from '../../src/sim/sim-engine.js';
import { freePortRange } from '../helpers.js';
import { UPSTREAM, UPSTREAM_RELEASES, startUpstreamSidecar, type UpstreamRelease } from './llm-d.js';
import { describeWith, need, type Requirement } from './need.js';
import { PeerSet, startPdRouterSidecar } from './pd-router-peers.js';

const sidecarReq = Object.fromEntries(await Promise.all(UPSTREAM_RELEASES.map(async (r) => [r, await need(UPSTREAM[r].source, UPSTREAM[r].sidecar)] as const)));
const allReq: Requirement = Object.values(sidecarReq).every((r) => r.ok)
  ? { ok: true, artifacts: {} }
  : { ok: false, reason: Object.values(sidecarReq).filter((r): r is { ok: false; reason: string } => !r.ok).map((r) => r.reason).join('; ') };

const MODEL = 'sim-model';
type Kind = 'pd-router' | 'pd-router --prefill-failure-policy=local' | UpstreamRelease;
const KINDS: Kind[] = ['pd-router', 'pd-router --prefill-failure-policy=local', 'ebab687', 'v0.7.1'];

interface Leg {
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  path: string;
}
interface Outcome {
  status: number;
  contentType: string;
  headers: Record<string, string>;
  text: string;
  prefill: Leg[];
  decode: Leg[];
}

/** A prefiller that answers 200 without kv_transfer_params (a prefill that "worked" but cannot be transferred). */
async function startParamlessPrefiller(): Promise<{ port: number; seen: Leg[]; close(): Promise<void> }> {
  const seen: Leg[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body: JSON.parse(Buffer.concat(parts).toString() || 'null'), path: req.url! });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'cmpl-paramless', object: 'text_completion', model: MODEL, choices: [{ index: 0, text: 'x', finish_reason: 'length' }], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as { port: number }).port, seen, close: () => new Promise((r) => server.close(() => r())) };
}

const peers = new PeerSet();
let prefill: SimulatorHandle;
let decode: SimulatorHandle;
let paramless: Awaited<ReturnType<typeof startParamlessPrefiller>>;
let closedPort: number;
/** Each kind's sidecar URL in front of the live decoder, and in front of a closed port. */
const sidecars = new Map<Kind, { live: string; deadDecoder: string }>();

beforeAll(async () => {
  if (!allReq.ok) return;
  prefill = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId: 'prefill-0', seed: 1 }));
  decode = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId: 'decode-0', seed: 2 }));
  paramless = await startParamlessPrefiller();
  closedPort = await freePortRange(1);
  for (const kind of KINDS) {
    const start = async (vllmPort: number) => {
      if (kind === 'ebab687' || kind === 'v0.7.1') return peers.add(await startUpstreamSidecar(kind, { vllmPort })).url;
      return peers.add(await startPdRouterSidecar({ modelServerPort: vllmPort, extraArgs: kind === 'pd-router' ? [] : ['--prefill-failure-policy=local'] })).url;
    };
    sidecars.set(kind, { live: await start(decode.port), deadDecoder: await start(closedPort) });
  }
}, 120_000);

afterAll(async () => {
  await peers.closeAll();
  await Promise.all([prefill?.close(), decode?.close(), paramless?.close()]);
});

const legsOf = (records: readonly RequestRecord[]): Leg[] => records.map((r) => ({ headers: r.headers, body: r.body, path: r.path }));

let seq = 0;
/** One request through one kind of sidecar; the legs each simulator (or the paramless prefiller) received. */
async function send(kind: Kind, path: string, body: unknown, o: { prefiller?: string; deadDecoder?: boolean } = {}): Promise<Outcome> {
  prefill.engine.clearRecords();
  decode.engine.clearRecords();
  paramless.seen.length = 0;
  const s = sidecars.get(kind)!;
  const r = await fetch(`${o.deadDecoder ? s.deadDecoder : s.live}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-prefiller-host-port': o.prefiller ?? `127.0.0.1:${prefill.port}`,
      'x-request-id': `legs-${++seq}`,
      authorization: 'Bearer client-token',
      'x-client-header': 'kept',
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  peers.check();
  return {
    status: r.status,
    contentType: (r.headers.get('content-type') ?? '').split(';')[0]!,
    headers: Object.fromEntries([...r.headers].filter(([k]) => !['date', 'content-length', 'transfer-encoding', 'connection', 'keep-alive'].includes(k))),
    text,
    prefill: [...legsOf(prefill.engine.recentRequests()), ...paramless.seen],
    decode: legsOf(decode.engine.recentRequests()),
  };
}

const stream = { stream: true, stream_options: { include_usage: true } };
const API_CASES: Array<{ name: string; path: string; body: Record<string, unknown> }> = [
  { name: 'completions', path: '/v1/completions', body: { model: MODEL, prompt: 'the quick brown fox jumps over the lazy dog', max_tokens: 4 } },
  { name: 'completions, streamed', path: '/v1/completions', body: { model: MODEL, prompt: 'the quick brown fox jumps over the lazy dog', max_tokens: 4, ...stream } },
  { name: 'chat', path: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'the quick brown fox' }], max_tokens: 4 } },
  { name: 'chat, streamed', path: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'the quick brown fox' }], max_completion_tokens: 4, ...stream } },
  { name: 'responses', path: '/v1/responses', body: { model: MODEL, input: 'the quick brown fox', max_output_tokens: 4 } },
  { name: 'responses, streamed', path: '/v1/responses', body: { model: MODEL, input: 'the quick brown fox', max_output_tokens: 4, stream: true } },
  { name: 'messages', path: '/v1/messages', body: { model: MODEL, messages: [{ role: 'user', content: 'the quick brown fox' }], max_tokens: 4 } },
  { name: 'messages, streamed', path: '/v1/messages', body: { model: MODEL, messages: [{ role: 'user', content: 'the quick brown fox' }], max_tokens: 4, stream: true } },
  { name: 'generate', path: '/inference/v1/generate', body: { model: MODEL, token_ids: [11, 12, 13, 14, 15], sampling_params: { max_tokens: 4 } } },
  { name: 'generate, streamed', path: '/inference/v1/generate', body: { model: MODEL, token_ids: [11, 12, 13, 14, 15], sampling_params: { max_tokens: 4 }, ...stream } },
];

// ---- Comparison helpers ----

const fmt = (v: unknown) => (v === undefined ? '<absent>' : JSON.stringify(v));

/** Leaf values by path (`.a.b[0]`); `prefix` names the SSE event a value came from. */
function flatten(v: unknown, path = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (Array.isArray(v)) v.forEach((x, i) => flatten(x, `${path}[${i}]`, out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(x, `${path}.${k}`, out);
  else out.set(path, v);
  return out;
}

/** The differences from `a` to `b` as sorted, unique "path: a -> b" lines. */
function flatDiff(a: unknown, b: unknown): string[] {
  const fa = flatten(a);
  const fb = flatten(b);
  const out = new Set<string>();
  for (const k of new Set([...fa.keys(), ...fb.keys()])) if (fa.get(k) !== fb.get(k) || fa.has(k) !== fb.has(k)) out.add(`${k}: ${fmt(fa.get(k))} -> ${fmt(fb.get(k))}`);
  return [...out].sort();
}

/** Fields that differ by construction between any two answers (ids, timestamps). */
const VOLATILE = new Set(['id', 'created', 'created_at', 'request_id', 'item_id']);
function stripVolatile(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripVolatile);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => !VOLATILE.has(k)).map(([k, x]) => [k, stripVolatile(x)]));
  return v;
}

/**
 * The answer as a comparable value: a JSON body, or the SSE events keyed by event name (`data` when unnamed) with the
 * events of one name merged in order, so a difference reads ".message_start.message.usage...: a -> b".
 */
function answerOf(o: Outcome): unknown {
  if (o.contentType !== 'text/event-stream') {
    try {
      return stripVolatile(JSON.parse(o.text));
    } catch {
      return o.text;
    }
  }
  const events: Record<string, unknown> = {};
  for (const block of o.text.split('\n\n')) {
    const lines = block.split('\n');
    const name = lines.find((l) => l.startsWith('event:'))?.slice(6).trim() ?? 'data';
    for (const l of lines.filter((x) => x.startsWith('data:'))) {
      const data = l.slice(5).trim();
      if (data === '[DONE]') {
        events.done = '[DONE]';
        continue;
      }
      // Same-named events are merged in order: a later event's set leaves overwrite an earlier one's.
      events[name] = merge(events[name], stripVolatile(JSON.parse(data)));
    }
  }
  return events;
}
function merge(a: unknown, b: unknown): unknown {
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
    for (const [k, v] of Object.entries(b)) out[k] = k in out ? merge(out[k], v) : v;
    return out;
  }
  return b ?? a;
}

const HEADERS_IGNORED = new Set(['host', 'content-length', 'connection']);
const headersOf = (l: Leg) => Object.fromEntries(Object.entries(l.headers).filter(([k]) => !HEADERS_IGNORED.has(k)));
const CLIENT_HEADERS = { 'content-type': 'application/json', authorization: 'Bearer client-token', 'x-client-header': 'kept' };
const UUID_V1 = /^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;
const sortedKeys = (o: object) => Object.keys(o).sort();

/** The legs of one request, as pd-router's sidecar sends them and as each upstream sidecar does. */
function checkLegHeaders(kind: Kind, o: Outcome, requestId: string, prefiller: string, passthrough: boolean): void {
  const legs = [...o.prefill, ...o.decode];
  for (const l of legs) {
    const h = headersOf(l);
    // Every sidecar forwards the client's headers and adds X-Forwarded-For.
    expect(h, kind).toMatchObject({ ...CLIENT_HEADERS, 'x-forwarded-for': '127.0.0.1' });
    if (kind === 'pd-router' || kind === 'pd-router --prefill-failure-policy=local') {
      // One x-request-id (the client's) and one W3C traceparent, the same on both legs; the routing header stripped.
      expect([h['x-request-id'], h['x-prefiller-host-port']], kind).toEqual([requestId, undefined]);
      expect(h.traceparent, kind).toMatch(TRACEPARENT);
      expect(h.traceparent, kind).toBe(headersOf(legs[0]!).traceparent);
    } else {
      expect(h.traceparent, kind).toBeUndefined();
      // Upstream appends its own request uuid to the client's x-request-id (two values), on P/D legs only.
      const ids = String(h['x-request-id']).split(', ');
      if (passthrough) expect(ids, kind).toEqual([requestId]);
      else {
        expect(ids[0], kind).toBe(requestId);
        expect(ids[1], kind).toMatch(UUID_V1);
        expect(h['x-request-id'], kind).toBe(headersOf(legs[0]!)['x-request-id']);
      }
      // v0.7.1 forwards the client's x-prefiller-host-port to both legs; llm-d-router removes it.
      expect(h['x-prefiller-host-port'], kind).toBe(kind === 'v0.7.1' ? prefiller : undefined);
    }
  }
}

/** The answer differences (from pd-router's) each upstream sidecar shows for a P/D request, with the reason. */
const ANSWER_DIFFERENCES: Record<string, Partial<Record<Kind, string[]>>> = {
  // v0.7.1 has no cached_tokens rewrite (llm-d #916 came later): the client sees the decoder's count.
  completions: { 'v0.7.1': ['.usage.prompt_tokens_details.cached_tokens: 0 -> 8'] },
  'completions, streamed': { 'v0.7.1': ['.data.usage.prompt_tokens_details.cached_tokens: 0 -> 8'] },
  chat: { 'v0.7.1': ['.usage.prompt_tokens_details.cached_tokens: 0 -> 8'] },
  'chat, streamed': { 'v0.7.1': ['.data.usage.prompt_tokens_details.cached_tokens: 0 -> 8'] },
  // llm-d-router's rewriter always writes usage.prompt_tokens_details (chat/completions' field) and, in streams, only a
  // top-level usage; pd-router writes the details object of the usage's own shape (input_tokens ->
  // input_tokens_details) and the Responses API's response.usage in its events.
  responses: { ebab687: ['.usage.input_tokens_details.cached_tokens: 0 -> 8', '.usage.prompt_tokens_details.cached_tokens: <absent> -> 0'] },
  'responses, streamed': { ebab687: ['.response.completed.response.usage.input_tokens_details.cached_tokens: 0 -> 8'] },
  messages: {
    ebab687: ['.usage.input_tokens_details.cached_tokens: 0 -> <absent>', '.usage.prompt_tokens_details.cached_tokens: <absent> -> 0'],
    // v0.7.1 does not disaggregate /v1/messages: the decoder prefilled itself (no cache read) and nothing is rewritten.
    'v0.7.1': ['.usage.cache_read_input_tokens: 8 -> 0', '.usage.input_tokens_details.cached_tokens: 0 -> <absent>'],
  },
  'messages, streamed': { 'v0.7.1': ['.message_delta.usage.prompt_tokens_details.cached_tokens: 0 -> <absent>', '.message_start.message.usage.cache_read_input_tokens: 8 -> 0'] },
};

/** API types llm-d-inference-scheduler v0.7.1's sidecar passes to the decoder as they are (it disaggregates chat and completions only). */
const V071_PASSTHROUGH = new Set(['/v1/responses', '/v1/messages', '/inference/v1/generate']);

describeWith(allReq, "sidecar legs: pd-router and llm-d's pd-sidecars (v0.7.1, ebab687), the same requests", () => {
  it('P/D legs for every API type, streamed or not: prefill and decode bodies and headers, and the answer', async () => {
    for (const c of API_CASES) {
      const outcomes = {} as Record<Kind, Outcome>;
      const ids = {} as Record<Kind, string>;
      for (const kind of KINDS) {
        outcomes[kind] = await send(kind, c.path, c.body);
        ids[kind] = `legs-${seq}`;
      }
      const prefiller = `127.0.0.1:${prefill.port}`;
      const pd = outcomes['pd-router'];
      const where = (kind: Kind) => `${c.name} via ${kind}\n${JSON.stringify(outcomes[kind]).slice(0, 3000)}`;
      for (const kind of KINDS) {
        const o = outcomes[kind];
        const passthrough = kind === 'v0.7.1' && V071_PASSTHROUGH.has(c.path);
        expect([o.status, o.contentType, o.prefill.length, o.decode.length], where(kind)).toEqual([200, pd.contentType, passthrough ? 0 : 1, 1]);
        expect(o.headers, where(kind)).toEqual(pd.headers);
        checkLegHeaders(kind, o, ids[kind], prefiller, passthrough);
        const decodeLeg = o.decode[0]!;
        const { kv_transfer_params: kv, ...decodeRest } = decodeLeg.body as Record<string, unknown>;
        // The decode leg is the client's request, with the prefiller's kv_transfer_params (none when passed through).
        expect(decodeRest, where(kind)).toEqual(c.body);
        if (passthrough) {
          expect(kv, where(kind)).toBeUndefined();
          expect(Object.keys(decodeLeg.body as object), where(kind)).toEqual(Object.keys(c.body));
        } else {
          const { remote_request_id: rid, ...params } = kv as Record<string, unknown>;
          expect(params, where(kind)).toEqual({ do_remote_decode: false, do_remote_prefill: true, remote_engine_id: 'prefill-0', remote_block_ids: [0], remote_host: '127.0.0.1', remote_port: prefill.port, tp_size: 1 });
          expect(typeof rid, where(kind)).toBe('string');
          // pd-router appends the parameters to the client's own bytes; upstream re-encodes a Go map (keys sorted).
          const keys = Object.keys(decodeLeg.body as object);
          expect(keys, where(kind)).toEqual(kind.startsWith('pd-router') ? [...Object.keys(c.body), 'kv_transfer_params'] : sortedKeys(decodeLeg.body as object));
          // The prefill leg: llm-d-router's body exactly; v0.7.1 caps max_tokens and max_completion_tokens but does not set min_tokens.
          const pdPrefill = pd.prefill[0]!.body as Record<string, unknown>;
          const { min_tokens: _min, ...withoutMin } = pdPrefill;
          expect(o.prefill[0]!.body, where(kind)).toEqual(kind === 'v0.7.1' ? withoutMin : pdPrefill);
          expect(o.prefill[0]!.path, where(kind)).toBe(c.path);
        }
        expect(decodeLeg.path, where(kind)).toBe(c.path);
        // The answer: the same but for the listed cached-token differences (the local-fallback flag changes nothing here).
        expect(flatDiff(answerOf(pd), answerOf(o)), where(kind)).toEqual(kind.startsWith('pd-router') ? [] : (ANSWER_DIFFERENCES[c.name]?.[kind] ?? []));
      }
      // pd-router's prefill leg, as llm-d-router builds it: stream false, no stream_options, every token limit of the API type 1.
      const limits = c.path === '/v1/responses' ? { max_output_tokens: 1 } : c.path === '/inference/v1/generate' ? {} : { max_tokens: 1, max_completion_tokens: 1, min_tokens: 1 };
      const { stream: _s, stream_options: _so, ...clientRest } = c.body;
      const expectedPrefill = {
        ...clientRest,
        ...limits,
        ...(c.path === '/inference/v1/generate' ? { sampling_params: { max_tokens: 1, min_tokens: 1 } } : {}),
        stream: false,
        kv_transfer_params: { do_remote_decode: true, do_remote_prefill: false, remote_engine_id: null, remote_block_ids: null, remote_host: null, remote_port: null },
      };
      expect(pd.prefill[0]!.body, c.name).toEqual(expectedPrefill);
    }
  }, 180_000);

  interface Fault {
    name: string;
    setup?: () => void;
    teardown?: () => void;
    prefiller?: () => string;
    deadDecoder?: boolean;
  }
  const FAULTS: Fault[] = [
    { name: 'prefiller down', prefiller: () => `127.0.0.1:${closedPort}` },
    { name: 'prefiller 400', setup: () => (prefill.engine.faults.returnError = 400), teardown: () => (prefill.engine.faults.returnError = 0) },
    { name: 'prefiller 500', setup: () => (prefill.engine.faults.returnError = 500), teardown: () => (prefill.engine.faults.returnError = 0) },
    { name: 'prefiller 2xx without kv_transfer_params', prefiller: () => `127.0.0.1:${paramless.port}` },
    { name: 'decoder down', deadDecoder: true },
  ];

  it('faults: what the client gets and which legs ran, for each sidecar; with --prefill-failure-policy=local, pd-router answers as v0.7.1', async () => {
    const served = (o: Outcome) => `${o.status} ${o.contentType} prefill=${o.prefill.length} decode=${o.decode.length}`;
    const LOCAL = 'pd-router --prefill-failure-policy=local';
    for (const c of [API_CASES[0]!, API_CASES[3]!]) {
      const ct = c.name.includes('streamed') ? 'text/event-stream' : 'application/json';
      for (const f of FAULTS) {
        const o = {} as Record<Kind, Outcome>;
        for (const kind of KINDS) {
          f.setup?.();
          try {
            o[kind] = await send(kind, c.path, c.body, { prefiller: f.prefiller?.(), deadDecoder: f.deadDecoder });
          } finally {
            f.teardown?.();
          }
        }
        const where = `${f.name} / ${c.name}\n${JSON.stringify(o).slice(0, 4000)}`;
        const json = (k: Kind) => JSON.parse(o[k].text);
        const summary = Object.fromEntries(KINDS.map((k) => [k, served(o[k])]));
        switch (f.name) {
          case 'prefiller down':
            // pd-router: 502 with an error saying so (no address); llm-d-router: Go's reverse proxy's bare 502; v0.7.1
            // (and pd-router with the local policy): the decoder prefills itself.
            expect(summary, where).toEqual({ 'pd-router': '502 application/json prefill=0 decode=0', [LOCAL]: `200 ${ct} prefill=0 decode=1`, ebab687: '502  prefill=0 decode=0', 'v0.7.1': `200 ${ct} prefill=0 decode=1` });
            expect(json('pd-router'), where).toEqual({ object: 'error', message: 'the prefiller could not be reached (ECONNREFUSED)', type: 'BadGateway', param: '', code: 502 });
            expect(o.ebab687.text, where).toBe('');
            break;
          case 'prefiller 400':
            // Everyone relays the prefiller's own answer (a client error is never served locally).
            expect(new Set(Object.values(summary)), where).toEqual(new Set(['400 application/json prefill=1 decode=0']));
            for (const k of KINDS) expect([o[k].text, o[k].headers], where).toEqual([o['pd-router'].text, o['pd-router'].headers]);
            expect(json('pd-router').error.code, where).toBe(400);
            break;
          case 'prefiller 500':
            // pd-router relays it as llm-d-router does; v0.7.1 (and pd-router with the local policy) serves locally.
            expect(summary, where).toEqual({ 'pd-router': '500 application/json prefill=1 decode=0', [LOCAL]: `200 ${ct} prefill=1 decode=1`, ebab687: '500 application/json prefill=1 decode=0', 'v0.7.1': `200 ${ct} prefill=1 decode=1` });
            expect([o.ebab687.text, o.ebab687.headers], where).toEqual([o['pd-router'].text, o['pd-router'].headers]);
            expect(json('pd-router').error.code, where).toBe(500);
            break;
          case 'prefiller 2xx without kv_transfer_params':
            // pd-router refuses to let the decoder silently recompute (502 saying why); both upstreams decode with
            // kv_transfer_params: null, which vLLM reads as absent; pd-router's local policy decodes without it.
            expect(summary, where).toEqual({ 'pd-router': '502 application/json prefill=1 decode=0', [LOCAL]: `200 ${ct} prefill=1 decode=1`, ebab687: `200 ${ct} prefill=1 decode=1`, 'v0.7.1': `200 ${ct} prefill=1 decode=1` });
            expect(json('pd-router'), where).toEqual({ object: 'error', message: 'the prefiller answered without kv_transfer_params; is vLLM started with --kv-transfer-config? (the decoder would recompute the prompt)', type: 'BadGateway', param: '', code: 502 });
            expect(o[LOCAL].decode[0]!.body, where).toEqual(c.body);
            for (const k of ['ebab687', 'v0.7.1'] as const) expect(o[k].decode[0]!.body, where).toEqual({ ...c.body, kv_transfer_params: null });
            break;
          case 'decoder down':
            // The same 503 and body everywhere (pd-router uses upstream's message); upstream sends it as text/plain (Go
            // sniffs a body written without a content type), pd-router as application/json.
            expect(summary, where).toEqual({ 'pd-router': '503 application/json prefill=1 decode=0', [LOCAL]: '503 application/json prefill=1 decode=0', ebab687: '503 text/plain prefill=1 decode=0', 'v0.7.1': '503 text/plain prefill=1 decode=0' });
            for (const k of KINDS) expect(json(k), where).toEqual({ object: 'error', message: 'The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.', type: 'ServiceUnavailable', param: '', code: 503 });
            break;
        }
        // With --prefill-failure-policy=local, pd-router answers every fault as v0.7.1 does: the same status, content
        // type, legs and answer; a local decode leg is the client's request as it came.
        const servedBut = (x: Outcome) => (f.name === 'decoder down' ? served({ ...x, contentType: '(listed above)' }) : served(x));
        expect(servedBut(o[LOCAL]), where).toBe(servedBut(o['v0.7.1']));
        if (f.name !== 'decoder down') expect(o[LOCAL].headers, where).toEqual(o['v0.7.1'].headers);
        expect(flatDiff(answerOf(o[LOCAL]), answerOf(o['v0.7.1'])), where).toEqual([]);
        if (o[LOCAL].decode.length > 0 && f.name !== 'prefiller 2xx without kv_transfer_params') expect(o[LOCAL].decode[0]!.body, where).toEqual(o['v0.7.1'].decode[0]!.body);
      }
    }
  }, 180_000);
});
