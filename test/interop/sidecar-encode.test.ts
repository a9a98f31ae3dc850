/**
 * Differential E/PD legs: the same multimodal chat request through pd-router's sidecar and upstream's pd-sidecar
 * (llm-d-router ebab687: ec-nixl and ec-example; llm-d-inference-scheduler v0.7.1: ec-example) with --ec-connector,
 * x-encoder-hosts-ports and x-prefiller-host-port, to recording pd-router simulators: an encoder (--mm-encoder-only),
 * a prefiller and a decoder. Compared: what the encoder, the prefiller and the decoder receive (bodies, and the
 * request ids), and the order of the legs; then an unreachable encoder (502, nothing sent on); and pd-router's encoder
 * simulator against llm-d-inference-sim v0.10.2 --mm-encoder-only answering the same encode request.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import type { RequestRecord } from '../../src/sim/sim-engine.js';
import { freePortRange } from '../helpers.js';
import { UPSTREAM, startUpstreamSidecar, type UpstreamRelease } from './llm-d.js';
import { both, describeWith, need } from './need.js';
import { PeerSet, startPdRouterSidecar } from './pd-router-peers.js';
import { startUpstreamSim } from './upstream.js';

const req = both(
  await need(UPSTREAM.ebab687.source, UPSTREAM.ebab687.sidecar),
  await need(UPSTREAM['v0.7.1'].source, UPSTREAM['v0.7.1'].sidecar),
);

const MODEL = 'sim-model';
type Connector = 'ec-nixl' | 'ec-example';
type Kind = 'pd-router' | UpstreamRelease;
const CASES: Array<{ kind: Kind; connector: Connector }> = [
  { kind: 'pd-router', connector: 'ec-nixl' },
  { kind: 'ebab687', connector: 'ec-nixl' },
  { kind: 'pd-router', connector: 'ec-example' },
  { kind: 'ebab687', connector: 'ec-example' },
  // v0.7.1 has only ec-example.
  { kind: 'v0.7.1', connector: 'ec-example' },
];
const key = (sidecarCase: { kind: Kind; connector: Connector }) => `${sidecarCase.kind} ${sidecarCase.connector}`;

const peers = new PeerSet();
let encoder: SimulatorHandle;
let prefill: SimulatorHandle;
let decode: SimulatorHandle;
const sidecars = new Map<string, string>();

beforeAll(async () => {
  if (!req.ok) return;
  const sim = (engineId: string, extra: Record<string, unknown> = {}) =>
    startSimulator(
      simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId, seed: 1, ...extra }),
    );
  [encoder, prefill, decode] = await Promise.all([
    sim('encode-0', { mmEncoderOnly: true }),
    sim('prefill-0'),
    sim('decode-0'),
  ]);
  for (const sidecarCase of CASES) {
    const args = [`--ec-connector=${sidecarCase.connector}`];
    const url =
      sidecarCase.kind === 'pd-router'
        ? peers.add(await startPdRouterSidecar({ modelServerPort: decode.port, extraArgs: args })).url
        : peers.add(await startUpstreamSidecar(sidecarCase.kind, { vllmPort: decode.port, extraArgs: args })).url;
    sidecars.set(key(sidecarCase), url);
  }
}, 180_000);

afterAll(async () => {
  await peers.closeAll();
  await Promise.all([encoder?.close(), prefill?.close(), decode?.close()]);
});

const IMG_A = { type: 'image_url', image_url: { url: 'https://example.com/a.png' } };
const IMG_B = { type: 'image_url', image_url: { url: 'https://example.com/b.png' } };
const CLIENT = {
  model: MODEL,
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: [{ type: 'text', text: 'compare these' }, IMG_A, IMG_B, IMG_A] },
  ],
  max_tokens: 4,
  temperature: 0,
};

interface Legs {
  status: number;
  text: string;
  encode: RequestRecord[];
  prefill: RequestRecord[];
  decode: RequestRecord[];
}

let seq = 0;
async function send(sidecarCase: (typeof CASES)[number], encoders: string): Promise<Legs> {
  for (const sim of [encoder, prefill, decode]) sim.engine.clearRecords();
  const r = await fetch(`${sidecars.get(key(sidecarCase))}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-prefiller-host-port': `127.0.0.1:${prefill.port}`,
      'x-encoder-hosts-ports': encoders,
      'x-request-id': `epd-${++seq}`,
    },
    body: JSON.stringify(CLIENT),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  peers.check();
  return {
    status: r.status,
    text,
    encode: [...encoder.engine.recentRequests()],
    prefill: [...prefill.engine.recentRequests()],
    decode: [...decode.engine.recentRequests()],
  };
}

/** Each encoder request's body, in item order (its x-request-id ends in -enc-<item>). */
function encoderBodies(legs: Legs): unknown[] {
  const item = (rec: RequestRecord) => Number(/-enc-(\d+)$/.exec(String(rec.headers['x-request-id']))?.[1]);
  return [...legs.encode].sort((left, right) => item(left) - item(right)).map((rec) => rec.body);
}

/** A prefill or decode body without the KV handshake, which each P/D connector builds its own way. */
function withoutKv(body: unknown): Record<string, unknown> {
  const { kv_transfer_params: _kv, ...rest } = body as Record<string, unknown>;
  return rest;
}

describeWith(req, 'E/PD legs: pd-router vs upstream pd-sidecar (--ec-connector)', () => {
  for (const connector of ['ec-nixl', 'ec-example'] as const) {
    it(`${connector}: the encoder, the prefiller and the decoder get the same bodies, in the same order`, async () => {
      const ours = await send({ kind: 'pd-router', connector }, `127.0.0.1:${encoder.port}`);
      expect(ours.status, ours.text).toBe(200);
      // Two distinct images (the repeated URL is encoded once), then one prefill, then one decode.
      expect(ours.encode).toHaveLength(2);
      const lastEncode = Math.max(...ours.encode.map((rec) => rec.receivedAtMs));
      expect(lastEncode).toBeLessThan(ours.prefill[0].receivedAtMs);
      expect(ours.prefill[0].receivedAtMs).toBeLessThan(ours.decode[0].receivedAtMs);
      for (const kind of CASES.filter((other) => other.connector === connector && other.kind !== 'pd-router')) {
        const theirs = await send(kind, `127.0.0.1:${encoder.port}`);
        const name = key(kind);
        expect(theirs.status, `${name}: ${theirs.text}`).toBe(200);
        expect([theirs.encode.length, theirs.prefill.length, theirs.decode.length], name).toEqual([2, 1, 1]);
        expect(Math.max(...theirs.encode.map((rec) => rec.receivedAtMs)), name).toBeLessThan(
          theirs.prefill[0].receivedAtMs,
        );
        // v0.7.1 sets max_tokens only on an encoder request; ebab687 (and pd-router) also max_completion_tokens when
        // the client sent it, which this client does not: the encoder bodies are the same for all three.
        expect(encoderBodies(ours), name).toEqual(encoderBodies(theirs));
        const ourPrefill = withoutKv(ours.prefill[0].body);
        // v0.7.1's NIXL v2 prefill leg does not cap min_tokens (ebab687's does; sidecar-legs.test.ts): a P/D
        // connector difference, not an encode-stage one.
        if (kind.kind === 'v0.7.1') delete ourPrefill.min_tokens;
        expect(ourPrefill, name).toEqual(withoutKv(theirs.prefill[0].body));
        expect(withoutKv(ours.decode[0].body), name).toEqual(withoutKv(theirs.decode[0].body));
        // Upstream names encoder requests <its new request UUID>-enc-<i>; pd-router <the client's id>-enc-<i>.
        for (const rec of theirs.encode) expect(String(rec.headers['x-request-id']), name).toMatch(/-enc-[01]$/);
      }
      if (connector === 'ec-nixl')
        expect(
          Object.keys((ours.prefill[0].body as Record<string, unknown>).ec_transfer_params as object),
        ).toHaveLength(2);
    });
  }

  it('an unreachable encoder: every sidecar answers 502 and sends nothing to the prefiller or the decoder', async () => {
    const closed = await freePortRange(1);
    for (const sidecarCase of CASES) {
      const legs = await send(sidecarCase, `127.0.0.1:${closed}`);
      expect(legs.status, `${key(sidecarCase)}: ${legs.text}`).toBe(502);
      expect([legs.prefill.length, legs.decode.length], key(sidecarCase)).toEqual([0, 0]);
      if (sidecarCase.kind === 'pd-router')
        expect(JSON.parse(legs.text).message).toBe(`encoder 127.0.0.1:${closed} could not be reached (ECONNREFUSED)`);
    }
  });

  it('the encoder simulator answers an encode request as llm-d-inference-sim --mm-encoder-only does', async () => {
    const upstreamEncoder = await startUpstreamSim(['--model', MODEL, '--mm-encoder-only'], {
      name: 'upstream encoder',
    });
    try {
      const body = {
        model: MODEL,
        messages: [
          {
            role: 'user',
            content: [
              IMG_A,
              IMG_B,
              { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
              { type: 'video_url', video_url: { url: 'https://example.com/v.mp4' } },
            ],
          },
        ],
        max_tokens: 3,
        stream: false,
      };
      const ask = async (url: string) => {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(30_000),
        });
        expect(r.status).toBe(200);
        return (await r.json()) as Record<string, any>;
      };
      const [theirs, ours] = [await ask(upstreamEncoder.url), await ask(encoder.url)];
      expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
      expect(ours.choices).toEqual(theirs.choices);
      expect(Object.keys(ours.ec_transfer_params).sort()).toEqual(Object.keys(theirs.ec_transfer_params).sort());
      for (const [hash, entry] of Object.entries(theirs.ec_transfer_params as Record<string, any>)) {
        // The one intended difference: pd-router's encoder names itself, upstream's a placeholder peer.
        expect(entry).toMatchObject({ peer_host: 'DUMMY', peer_port: 1234 });
        expect(ours.ec_transfer_params[hash]).toEqual({ ...entry, peer_host: '127.0.0.1', peer_port: encoder.port });
      }
    } finally {
      await upstreamEncoder.close();
    }
  });
});
