/**
 * The E/PD encode stage (--ec-connector) over real HTTP on loopback: encoder simulators (--mm-encoder-only), a prefill
 * and a decode simulator, the sidecar in front of the decode one. Checked against llm-d-router ebab687's
 * connector_ec_common.go / connector_ec_nixl.go / connector_ec_shared_storage.go.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { encoderRequestBody, multimodalItems } from '../../src/sidecar/encode-stage.js';
import { ecTransferParams, mmHash } from '../../src/sim/encoder.js';
import { metricsText, metricValue, postJson } from '../helpers.js';
import { MODEL, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
let encoders: SimulatorHandle[] = [];
afterEach(async () => {
  await f?.close();
  await Promise.all(encoders.map((sim) => sim.close()));
  f = undefined;
  encoders = [];
});

async function startEncoders(count: number): Promise<SimulatorHandle[]> {
  encoders = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      startSimulator(
        simConfig({
          host: '127.0.0.1',
          port: 0,
          model: [MODEL],
          engineId: `encode-${i}`,
          seed: 10 + i,
          mmEncoderOnly: true,
        }),
      ),
    ),
  );
  return encoders;
}

const header = (sims: SimulatorHandle[]) => sims.map((sim) => `127.0.0.1:${sim.port}`).join(',');
const IMG_A = { type: 'image_url', image_url: { url: 'https://example.com/a.png' } };
const IMG_B = { type: 'image_url', image_url: { url: 'https://example.com/b.png' } };
const AUDIO = { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } };

function chat(content: unknown[], extra: Record<string, unknown> = {}) {
  return {
    model: MODEL,
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: [{ type: 'text', text: 'describe these' }, ...content] },
    ],
    max_tokens: 5,
    stream: true,
    stream_options: { include_usage: true },
    ...extra,
  };
}

describe('encode stage: request shape (unit)', () => {
  it('collects image/audio/video items in order, URL items deduplicated, inline audio kept', () => {
    const body = {
      messages: [
        { role: 'user', content: [IMG_A, { type: 'text', text: 'x' }, IMG_A, AUDIO, AUDIO] },
        { role: 'user', content: 'plain text' },
        {
          role: 'user',
          content: [
            { type: 'video_url', video_url: { url: 'v' } },
            { type: 'image', image: 'x' },
          ],
        },
      ],
    };
    expect(multimodalItems(body)).toEqual([IMG_A, AUDIO, AUDIO, { type: 'video_url', video_url: { url: 'v' } }]);
    expect(multimodalItems({ prompt: 'x' })).toEqual([]);
  });

  it("an encoder request is the client's body with one user message holding only the item, 1 token, not streamed", () => {
    const client = chat([IMG_A], { max_completion_tokens: 9, temperature: 0.5 });
    expect(encoderRequestBody(client, IMG_A)).toEqual({
      model: MODEL,
      messages: [{ role: 'user', content: [IMG_A] }],
      max_tokens: 1,
      max_completion_tokens: 1,
      stream: false,
      temperature: 0.5,
    });
    // max_completion_tokens only when the client sent it (reqcommon.PrimeSingleTokenRequest).
    expect(encoderRequestBody(chat([IMG_A]), IMG_A)).not.toHaveProperty('max_completion_tokens');
  });
});

describe('encode stage over HTTP', () => {
  it('ec-nixl E/P/D: encoder, then prefiller, then decoder; ec_transfer_params and cache_hit_threshold 0 on both legs', async () => {
    const [enc] = await startEncoders(1);
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl' } });
    const client = chat([IMG_A]);
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, client, {
      'x-prefiller-host-port': f.prefillHeader,
      'x-encoder-hosts-ports': header([enc]),
      'x-request-id': 'epd-1',
    });
    expect(r.status).toBe(200);
    const [e] = records(enc);
    const [p] = records(f.prefill);
    const [d] = records(f.decode);
    expect([e.kind, p.kind, d.kind]).toEqual(['encode', 'prefill', 'decode']);
    // Order: the encoder answered before the prefill was sent, the prefill before the decode.
    expect(e.receivedAtMs).toBeLessThan(p.receivedAtMs);
    expect(p.receivedAtMs).toBeLessThan(d.receivedAtMs);
    expect(e.path).toBe('/v1/chat/completions');
    expect(e.headers['x-request-id']).toBe('epd-1-enc-0');
    expect(e.headers['x-encoder-hosts-ports']).toBeUndefined();
    expect(e.body).toEqual({
      model: MODEL,
      messages: [{ role: 'user', content: [IMG_A] }],
      max_tokens: 1,
      stream: false,
    });
    const ec = ecTransferParams({ messages: [{ role: 'user', content: [IMG_A] }] }, '127.0.0.1', enc.port);
    expect(Object.keys(ec)).toEqual([mmHash(IMG_A)]);
    const pb = p.body as Record<string, unknown>;
    const db = d.body as Record<string, unknown>;
    expect(pb.ec_transfer_params).toEqual(ec);
    expect(pb.cache_hit_threshold).toBe(0);
    expect(pb).toMatchObject({ max_tokens: 1, stream: false, messages: client.messages });
    expect(db.ec_transfer_params).toEqual(ec);
    expect(db).toMatchObject({ cache_hit_threshold: 0, stream: true, max_tokens: 5, messages: client.messages });
    for (const rec of [p, d]) {
      expect(rec.headers['x-request-id']).toBe('epd-1');
      expect(rec.headers['x-encoder-hosts-ports']).toBeUndefined();
    }
  });

  it('several items fan out round-robin over several encoders; their ec_transfer_params are merged', async () => {
    const encs = await startEncoders(2);
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl' } });
    const r = await postJson(
      `${f.sidecar.url}/v1/chat/completions`,
      chat([IMG_A, IMG_B, IMG_A, AUDIO], { stream: false }),
      { 'x-prefiller-host-port': f.prefillHeader, 'x-encoder-hosts-ports': header(encs), 'x-request-id': 'fan' },
    );
    expect(r.status).toBe(200);
    // Items after dedup: A, B, AUDIO -> encoder 0 gets items 0 and 2, encoder 1 item 1.
    const items0 = records(encs[0]).map((rec) => [
      rec.headers['x-request-id'],
      (rec.body as any).messages[0].content[0],
    ]);
    const items1 = records(encs[1]).map((rec) => [
      rec.headers['x-request-id'],
      (rec.body as any).messages[0].content[0],
    ]);
    expect(items0.sort()).toEqual([
      ['fan-enc-0', IMG_A],
      ['fan-enc-2', AUDIO],
    ]);
    expect(items1).toEqual([['fan-enc-1', IMG_B]]);
    const ec = (records(f.prefill)[0].body as Record<string, any>).ec_transfer_params;
    expect(Object.keys(ec).sort()).toEqual([mmHash(IMG_A), mmHash(IMG_B), mmHash(AUDIO)].sort());
    expect(ec[mmHash(IMG_B)].peer_port).toBe(encs[1].port);
  });

  it('ec-example primes the encoders and sends no ec_transfer_params; E/D without a prefiller goes to the decoder', async () => {
    const [enc] = await startEncoders(1);
    f = await startPd({ sidecar: { ecConnector: 'ec-example' } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A], { stream: false }), {
      'x-encoder-hosts-ports': header([enc]),
    });
    expect(r.status).toBe(200);
    expect(records(enc)).toHaveLength(1);
    expect(records(f.prefill)).toHaveLength(0);
    const [d] = records(f.decode);
    expect(d.kind).toBe('aggregated');
    expect(d.body).not.toHaveProperty('ec_transfer_params');
    expect(d.body).toMatchObject({ cache_hit_threshold: 0 });
    expect(d.receivedAtMs).toBeGreaterThan(records(enc)[0].receivedAtMs);
  });

  it('a text-only request calls no encoder but still goes on with cache_hit_threshold 0 (as upstream)', async () => {
    const [enc] = await startEncoders(1);
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl' } });
    const r = await postJson(
      `${f.sidecar.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
      { 'x-prefiller-host-port': f.prefillHeader, 'x-encoder-hosts-ports': header([enc]) },
    );
    expect(r.status).toBe(200);
    expect(records(enc)).toHaveLength(0);
    expect(records(f.prefill)[0].body).toMatchObject({ cache_hit_threshold: 0 });
    expect(records(f.prefill)[0].body).not.toHaveProperty('ec_transfer_params');
  });

  it("a client's own ec_transfer_params never reaches an encoder, the prefiller or the decoder", async () => {
    const [enc] = await startEncoders(1);
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl' } });
    const forged = { evil: { peer_host: '169.254.169.254', peer_port: 80 } };
    // E/P/D: the encoders' params replace it; on the text-only and local paths it is removed too.
    await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A], { ec_transfer_params: forged }), {
      'x-prefiller-host-port': f.prefillHeader,
      'x-encoder-hosts-ports': header([enc]),
    });
    await postJson(`${f.sidecar.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      ec_transfer_params: forged,
    });
    const all = [...records(enc), ...records(f.prefill), ...records(f.decode)];
    expect(all).toHaveLength(4);
    for (const rec of all) expect(JSON.stringify(rec.body)).not.toContain('169.254.169.254');
    expect(Object.keys((records(f.prefill)[0].body as any).ec_transfer_params)).toEqual([mmHash(IMG_A)]);
  });

  it('without --ec-connector the header is ignored and never forwarded', async () => {
    const [enc] = await startEncoders(1);
    f = await startPd();
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A], { stream: false }), {
      'x-prefiller-host-port': f.prefillHeader,
      'x-encoder-hosts-ports': header([enc]),
    });
    expect(r.status).toBe(200);
    expect(records(enc)).toHaveLength(0);
    for (const rec of [...records(f.prefill), ...records(f.decode)]) {
      expect(rec.headers['x-encoder-hosts-ports']).toBeUndefined();
      expect(rec.body).not.toHaveProperty('cache_hit_threshold');
    }
  });

  it('an unreachable encoder: 502 naming it; neither the prefiller nor the decoder is called', async () => {
    // A port that refuses connections: bound, then closed.
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const deadPort = (srv.address() as AddressInfo).port;
    await new Promise((resolve) => srv.close(resolve));
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl' } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A]), {
      'x-prefiller-host-port': f.prefillHeader,
      'x-encoder-hosts-ports': `127.0.0.1:${deadPort}`,
    });
    expect(r.status).toBe(502);
    expect(r.body).toMatchObject({ object: 'error', type: 'BadGateway', code: 502 });
    expect(r.body.message).toBe(`encoder 127.0.0.1:${deadPort} could not be reached (ECONNREFUSED)`);
    expect(records(f.prefill)).toHaveLength(0);
    expect(records(f.decode)).toHaveLength(0);
  });

  it('an encoder answering an error: 502 naming it and the item', async () => {
    const [enc] = await startEncoders(1);
    await postJson(`${enc.url}/admin/config`, { 'return-error': 503 });
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl' } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A]), {
      'x-encoder-hosts-ports': header([enc]),
    });
    expect(r.status).toBe(502);
    expect(r.body.message).toBe(`encoder 127.0.0.1:${enc.port} answered 503 for multimodal item 0`);
    expect(records(f.decode)).toHaveLength(0);
  });

  it('an encoder past --encode-timeout: 504 naming it', async () => {
    const [enc] = await startEncoders(1);
    await postJson(`${enc.url}/admin/config`, { hang: true });
    f = await startPd({ sidecar: { ecConnector: 'ec-nixl', encodeTimeout: 300 } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A]), {
      'x-encoder-hosts-ports': header([enc]),
    });
    expect(r.status).toBe(504);
    expect(r.body.message).toBe(`encoder 127.0.0.1:${enc.port} did not answer multimodal item 0 within 300ms`);
    expect(records(f.decode)).toHaveLength(0);
    expect(
      metricValue(await metricsText(f.sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_timeouts_total', {
        stage: 'encode',
      }),
    ).toBe(1);
  });

  it('--encode-concurrency bounds the encoder requests in flight; above the bound they all run at once', async () => {
    // An encoder that counts the requests in flight and answers each when `release` says so.
    let inflight = 0;
    let most = 0;
    const waiting: Array<() => void> = [];
    let release: (count: number) => void = () => undefined;
    let arrivals = 0;
    const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
      arrivals++;
      req.resume();
      req.on('end', () => {
        inflight++;
        most = Math.max(most, inflight);
        waiting.push(() => {
          inflight--;
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"ec_transfer_params":{}}');
        });
        release(waiting.length);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const items = [IMG_A, IMG_B, AUDIO];
      // Bound 1: the encoder never answers, so the stage ends at --encode-timeout; by then a sidecar without the
      // bound would have sent all three requests (they go out together), a bounded one only the first.
      release = () => undefined;
      f = await startPd({ sidecar: { ecConnector: 'ec-nixl', encodeConcurrency: 1, encodeTimeout: 1_000 } });
      const one = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat(items, { stream: false }), {
        'x-encoder-hosts-ports': `127.0.0.1:${port}`,
      });
      expect(one.status).toBe(504);
      expect(arrivals).toBe(1);
      for (const answer of waiting.splice(0)) answer();
      await f.close();
      // Bound 3: the answers are held until all three requests have arrived, which only parallel requests can do.
      most = 0;
      inflight = 0;
      release = (count) => {
        if (count === items.length) for (const answer of waiting.splice(0)) answer();
      };
      f = await startPd({ sidecar: { ecConnector: 'ec-nixl', encodeConcurrency: 3 } });
      const three = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat(items, { stream: false }), {
        'x-encoder-hosts-ports': `127.0.0.1:${port}`,
      });
      expect(three.status).toBe(200);
      expect(most).toBe(3);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('SSRF: encoders outside the allowlist are dropped (P/D goes on without them); a malformed entry is a 400', async () => {
    const [enc] = await startEncoders(1);
    f = await startPd({
      sidecar: (ports) => ({
        ecConnector: 'ec-nixl',
        enableSsrfProtection: true,
        ssrfAllowlist: [`127.0.0.1:${ports.prefill}`],
      }),
    });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A], { stream: false }), {
      'x-prefiller-host-port': f.prefillHeader,
      'x-encoder-hosts-ports': header([enc]),
    });
    expect(r.status).toBe(200);
    expect(records(enc)).toHaveLength(0);
    expect(records(f.prefill)[0].body).not.toHaveProperty('ec_transfer_params');
    const bad = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat([IMG_A]), {
      'x-encoder-hosts-ports': 'not a host',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe('invalid x-encoder-hosts-ports header: expected host:port values');
  });
});

describe('encoder simulator (--mm-encoder-only)', () => {
  it('answers "!" per requested token, finish_reason length, ec_transfer_params per item pointing at itself', async () => {
    const [enc] = await startEncoders(1);
    // Whatever --mode says: an echo encoder answers "!" too.
    await enc.close();
    encoders = [
      await startSimulator(
        simConfig({
          host: '127.0.0.1',
          port: 0,
          model: [MODEL],
          mode: 'echo',
          engineId: 'encode-echo',
          mmEncoderOnly: true,
        }),
      ),
    ];
    const enc2 = encoders[0];
    const r = await postJson(`${enc2.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: [IMG_A, IMG_B] }],
      max_tokens: 3,
    });
    expect(r.status).toBe(200);
    expect(r.body.choices[0].message.content).toBe('!!!');
    expect(r.body.choices[0].finish_reason).toBe('length');
    // llm-d-inference-sim v0.10.2's names: sim_<modality>_<index in the request>_<FNV-1a of the URL> (its answer for
    // https://example.com/a.png alone is sim_img_0_b813296).
    expect(mmHash(IMG_A)).toBe('sim_img_0_b813296');
    expect(Object.keys(r.body.ec_transfer_params).sort()).toEqual([mmHash(IMG_A, 0), mmHash(IMG_B, 1)].sort());
    expect(r.body.ec_transfer_params[mmHash(IMG_A)]).toEqual({
      peer_host: '127.0.0.1',
      peer_port: enc2.port,
      size_bytes: 2359296,
      nixl_agent_metadata_b64: Buffer.from('NIXL_METADATA_PLACEHOLDER').toString('base64'),
    });
    expect(records(enc2)[0].kind).toBe('encode');
  });
});
