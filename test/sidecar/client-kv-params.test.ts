/**
 * A client's kv_transfer_params (SGLang: its bootstrap triple) never reaches a model server, whatever the path; the
 * only kv_transfer_params a model server gets is the prefiller's, on the decode leg the sidecar builds.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { clientTransferFields } from '../../src/sidecar/client-kv-params.js';
import { sidecarConfig, startSidecar, type SidecarHandle } from '../../src/sidecar/index.js';
import { postJson } from '../helpers.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

/** What a client would use to make the decoder pull KV blocks from a host of its choosing. */
const EVIL = { do_remote_prefill: true, do_remote_decode: false, remote_engine_id: 'evil', remote_block_ids: [0, 1], remote_host: '10.6.6.6', remote_port: 5600 };

const post = (url: string, raw: string | Buffer, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: raw, signal: AbortSignal.timeout(10_000) });

describe('local path (no prefill header)', () => {
  it.each(['nixlv2', 'shared-storage', 'sglang'] as const)('%s: the client\'s kv_transfer_params is removed; the rest of the body is kept', async (kvConnector) => {
    f = await startPd({ sidecar: { kvConnector } });
    const client = { model: MODEL, prompt: 'hello there', max_tokens: 2, temperature: 0, kv_transfer_params: EVIL };
    const r = await post(`${f.sidecar.url}/v1/completions`, JSON.stringify(client));
    expect(r.status).toBe(200);
    const d = lastRecord(f.decode);
    expect(d.kvTransferParams).toBeUndefined();
    expect(d.kind).toBe('aggregated');
    const { kv_transfer_params: _removed, ...kept } = client;
    expect(d.body).toEqual(kept);
  });

  it('a key spelled with escapes is the same key to the model server, and is removed too', async () => {
    f = await startPd();
    const raw = `{"model":"${MODEL}","prompt":"x","max_tokens":1,"kv\\u005ftransfer_params":${JSON.stringify(EVIL)}}`;
    expect(JSON.parse(raw).kv_transfer_params).toEqual(EVIL);
    expect((await post(`${f.sidecar.url}/v1/completions`, raw)).status).toBe(200);
    expect(lastRecord(f.decode).kvTransferParams).toBeUndefined();
  });

  it('generate: sampling_params.extra_args.kv_transfer_params is removed, the other extra_args kept', async () => {
    f = await startPd();
    const client = { model: MODEL, token_ids: [1, 2, 3], sampling_params: { max_tokens: 2, extra_args: { kv_transfer_params: EVIL, mine: 1 } } };
    expect((await post(`${f.sidecar.url}/inference/v1/generate`, JSON.stringify(client))).status).toBe(200);
    const d = lastRecord(f.decode);
    expect(d.kvTransferParams).toBeUndefined();
    expect(d.body).toEqual({ ...client, sampling_params: { max_tokens: 2, extra_args: { mine: 1 } } });
  });

  it('sglang: the client\'s bootstrap triple is removed', async () => {
    f = await startPd({ sidecar: { kvConnector: 'sglang' } });
    const client = { model: MODEL, prompt: 'x', max_tokens: 1, bootstrap_host: '10.6.6.6', bootstrap_port: 1, bootstrap_room: 7 };
    expect((await post(`${f.sidecar.url}/v1/completions`, JSON.stringify(client))).status).toBe(200);
    expect(lastRecord(f.decode).body).toEqual({ model: MODEL, prompt: 'x', max_tokens: 1 });
  });

  it('a body without them goes byte for byte, escapes and spacing included', async () => {
    f = await startPd();
    const raw = `{ "model" : "${MODEL}", "prompt":"caf\\u00e9  kv_transfer", "max_tokens":1 }`;
    expect((await post(`${f.sidecar.url}/v1/completions`, raw)).status).toBe(200);
    expect(lastRecord(f.decode).body).toEqual(JSON.parse(raw));
  });
});

describe('P/D legs', () => {
  it('nixlv2: the decode leg carries the prefiller\'s kv_transfer_params, never the client\'s; the prefill leg the NIXL shape', async () => {
    f = await startPd();
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x', max_tokens: 2, kv_transfer_params: EVIL }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(lastRecord(f.prefill).kvTransferParams).toMatchObject({ do_remote_decode: true, remote_host: null });
    expect(lastRecord(f.decode).kvTransferParams).toMatchObject({ remote_engine_id: 'prefill-0', do_remote_prefill: true });
    expect(JSON.stringify(lastRecord(f.decode).body)).not.toContain('10.6.6.6');
  });

  it('nixlv2, generate: the client\'s extra_args.kv_transfer_params reaches neither leg', async () => {
    f = await startPd();
    const client = { model: MODEL, token_ids: [1, 2], sampling_params: { max_tokens: 2, extra_args: { kv_transfer_params: EVIL } } };
    const r = await postJson(`${f.sidecar.url}/inference/v1/generate`, client, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    for (const rec of [lastRecord(f.prefill), lastRecord(f.decode)]) expect(JSON.stringify(rec.body)).not.toContain('10.6.6.6');
  });

  it.each(['sglang', 'shared-storage'] as const)('%s: neither leg carries the client\'s kv_transfer_params', async (kvConnector) => {
    f = await startPd({ sidecar: { kvConnector } });
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x', max_tokens: 2, kv_transfer_params: EVIL }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(records(f.prefill)).toHaveLength(1);
    for (const rec of [lastRecord(f.prefill), lastRecord(f.decode)]) {
      expect(rec.kvTransferParams).toBeUndefined();
      expect(rec.body).not.toHaveProperty('kv_transfer_params');
    }
  });
});

describe('passthrough (any other path: vLLM\'s /invocations reads any JSON body)', () => {
  /** A model server that records the raw bodies it gets (the simulator records inference routes only). */
  async function recordingServer(): Promise<{ port: number; bodies: Buffer[]; close: () => Promise<void> }> {
    const bodies: Buffer[] = [];
    const server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (chunk: Buffer) => parts.push(chunk));
      req.on('end', () => {
        bodies.push(Buffer.concat(parts));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      port: (server.address() as AddressInfo).port,
      bodies,
      close: () => {
        server.closeAllConnections();
        return new Promise((resolve) => server.close(() => resolve()));
      },
    };
  }

  let model: Awaited<ReturnType<typeof recordingServer>> | undefined;
  let sidecar: SidecarHandle | undefined;
  afterEach(async () => {
    await sidecar?.close();
    await model?.close();
    sidecar = model = undefined;
  });

  async function start() {
    model = await recordingServer();
    sidecar = await startSidecar(sidecarConfig({ host: '127.0.0.1', port: 0, secureProxy: false, modelServerHost: '127.0.0.1', modelServerPort: model.port }));
    return { model, sidecar };
  }

  const evil = JSON.stringify(EVIL);
  it.each([
    ['plain', Buffer.from(`{"prompt":"x","kv_transfer_params":${evil}}`)],
    ['escaped key', Buffer.from(`{"prompt":"x","\\u006bv_transfer_params":${evil}}`)],
    ['NaN elsewhere (Python\'s json reads it)', Buffer.from(`{"prompt":"x","temperature":NaN,"kv_transfer_params":${evil}}`)],
    ['UTF-16 LE without BOM (Python\'s json detects it)', Buffer.from(`{"prompt":"x","kv_transfer_params":${evil}}`, 'utf16le')],
    ['UTF-8 with BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{"prompt":"x","kv_transfer_params":${evil}}`)])],
  ])('%s: removed before the body is sent on', async (_name, raw) => {
    const { model: m, sidecar: s } = await start();
    // Even with a content type that is not JSON: /invocations parses the body whatever it says.
    const r = await post(`${s.url}/invocations`, raw, { 'content-type': 'multipart/form-data; boundary=x' });
    expect(r.status).toBe(200);
    const got = m.bodies.at(-1)!.toString('utf8');
    expect(got).not.toContain('10.6.6.6');
    expect(JSON.parse(got)).toMatchObject({ prompt: 'x' });
  });

  it('a body without them is sent byte for byte (binary uploads too)', async () => {
    const { model: m, sidecar: s } = await start();
    const bodies = [
      Buffer.from('{ "input" : "caf\\u00e9",  "x":NaN }'),
      Buffer.from([0x00, 0x01, 0xff, 0xfe, 0x5c, 0x75, 0x00, 0x7b]),
      Buffer.from('--x\r\ncontent-disposition: form-data; name="file"\r\n\r\nkv_transfer_params? no\r\n--x--\r\n'),
    ];
    for (const raw of bodies) {
      expect((await post(`${s.url}/v1/audio/transcriptions`, raw, { 'content-type': 'application/octet-stream' })).status).toBe(200);
      expect(m.bodies.at(-1)!.equals(raw)).toBe(true);
    }
  });
});

describe('the byte scan and the parse behind it', () => {
  const fields = clientTransferFields('nixlv2');
  /** `key` with some of its characters written as \uXXXX escapes (`pick` says which). */
  const escaped = (key: string, pick: boolean[]) =>
    [...key].map((ch, i) => (pick[i % pick.length] ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : ch)).join('');
  const encodings = ['utf8', 'utf8-bom', 'utf16le', 'utf16be'] as const;
  const encode = (text: string, enc: (typeof encodings)[number]) =>
    enc === 'utf8'
      ? Buffer.from(text)
      : enc === 'utf8-bom'
        ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])
        : enc === 'utf16le'
          ? Buffer.from(text, 'utf16le')
          : Buffer.from(text, 'utf16le').swap16();

  it('whatever the other fields, however the key is spelled and the body encoded, kv_transfer_params is found and removed', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== 'kv_transfer_params' && k !== '__proto__'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 18 }),
        fc.constantFrom(...encodings),
        fc.jsonValue({ maxDepth: 2 }),
        (others, pick, enc, kv) => {
          const inner = JSON.stringify(others).slice(1, -1);
          const text = `{${inner}${inner ? ',' : ''}"${escaped('kv_transfer_params', pick)}":${JSON.stringify(kv)}}`;
          const out = fields.stripRaw(encode(text, enc), 256);
          if ('error' in out) throw new Error(out.error);
          expect(out.removed).toBe(true);
          const parsed = JSON.parse(out.bytes.toString('utf8'));
          expect(Object.hasOwn(parsed, 'kv_transfer_params')).toBe(false);
          expect(parsed).toEqual(JSON.parse(JSON.stringify(others)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a body without them comes back as the same bytes', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        const raw = Buffer.from(JSON.stringify(value));
        fc.pre(!raw.includes('kv_transfer_params'));
        const out = fields.stripRaw(raw, 256);
        expect('bytes' in out && out.bytes === raw).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
