import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { postJson, sseJson, waitFor } from '../helpers.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

describe('sglang connector', () => {
  it('sends the same body with one bootstrap triple to both legs, uncapped, stream unchanged', async () => {
    f = await startPd({ sidecar: { kvConnector: 'sglang', sglangBootstrapPort: 8998 } });
    const client = { model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 20, stream: true };
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, client, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(sseJson(r.text).length).toBeGreaterThan(1);
    const p = lastRecord(f.prefill).body as Record<string, unknown>;
    const d = lastRecord(f.decode).body as Record<string, unknown>;
    expect(p).toEqual(d);
    expect(p).toMatchObject({ ...client, bootstrap_host: '127.0.0.1', bootstrap_port: 8998 });
    expect(Number.isSafeInteger(p.bootstrap_room)).toBe(true);
  });

  it('a failed prefill stops the decode leg; the client gets a 502 saying why', async () => {
    f = await startPd({ sidecar: { kvConnector: 'sglang' }, decode: { timeToFirstToken: 60_000 } });
    // A prefiller that fails only when told to, so the decode leg is surely running on the decoder by then.
    let fail: () => void = () => undefined;
    const prefiller = createServer((_req, res) => {
      fail = () => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
    });
    await new Promise<void>((resolve) => prefiller.listen(0, '127.0.0.1', resolve));
    const target = `127.0.0.1:${(prefiller.address() as AddressInfo).port}`;
    try {
      const pending = postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': target });
      await waitFor(() => f!.decode.engine.scheduler.running === 1, 5000, 'decode leg running');
      fail();
      const r = await pending;
      expect(r.status).toBe(502);
      expect(r.body.message).toBe('prefill failed: the prefiller answered 500: {"error":"boom"}');
      await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode leg stopped');
      expect(records(f.decode)).toHaveLength(1);
      expect(records(f.decode)[0]!.aborted).toBe(true);
    } finally {
      prefiller.closeAllConnections();
      await new Promise((resolve) => prefiller.close(resolve));
    }
  });

  it('a prefill that times out stops the decode leg already running on the decoder', async () => {
    f = await startPd({ sidecar: { kvConnector: 'sglang', prefillTimeout: 2_000 }, decode: { timeToFirstToken: 60_000 } });
    await postJson(`${f.prefill.url}/admin/config`, { hang: true });
    const pending = postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': f.prefillHeader });
    await waitFor(() => f!.decode.engine.scheduler.running === 1, 5000, 'decode leg running');
    const r = await pending;
    expect(r.status).toBe(504);
    await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode leg stopped');
    expect(records(f.decode)).toHaveLength(1);
    expect(records(f.decode)[0]!.aborted).toBe(true);
  });
});

describe('shared-storage connector', () => {
  it('with cache_hit_threshold tries decode first; a cold cache falls back to prefill then decode', async () => {
    f = await startPd({ sidecar: { kvConnector: 'shared-storage' } });
    const client = { model: MODEL, prompt: 'w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20', max_tokens: 4, cache_hit_threshold: 0.5 };
    const r = await postJson(`${f.sidecar.url}/v1/completions`, client, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(r.body.choices[0].finish_reason).not.toBe('cache_threshold');
    // decode (cache_threshold), then prefill, then decode again with cache_hit_threshold 0
    const decodes = records(f.decode);
    expect(decodes).toHaveLength(2);
    expect((decodes[0]!.body as Record<string, unknown>).cache_hit_threshold).toBe(0.5);
    expect(decodes[0]!.finishReason).toBe('cache_threshold');
    expect((decodes[1]!.body as Record<string, unknown>).cache_hit_threshold).toBe(0);
    expect(lastRecord(f.prefill).body).toEqual({ ...client, max_tokens: 1, max_completion_tokens: 1, cache_hit_threshold: 0 });
  });

  it('streamed: the cache_threshold event is recognised in the SSE probe and the request goes to prefill then decode', async () => {
    f = await startPd({ sidecar: { kvConnector: 'shared-storage' } });
    const client = { model: MODEL, prompt: 'v1 v2 v3 v4 v5 v6 v7 v8 v9 v10 v11 v12 v13 v14 v15 v16 v17 v18 v19 v20', max_tokens: 4, cache_hit_threshold: 0.5, stream: true };
    const r = await postJson(`${f.sidecar.url}/v1/completions`, client, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(r.text).not.toContain('cache_threshold');
    expect(sseJson(r.text).map((config) => config.choices[0]?.text).join('')).toBe('v1 v2 v3 v4 ');
    expect(records(f.decode).map((record) => record.finishReason)).toEqual(['cache_threshold', expect.not.stringMatching(/^cache_threshold$/)]);
    expect(records(f.prefill)).toHaveLength(1);
  });

  it('a warm decode cache answers directly, without prefill', async () => {
    f = await startPd({ sidecar: { kvConnector: 'shared-storage' } });
    const prompt = 'a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15 a16 a17 a18 a19 a20 a21 a22 a23 a24 a25 a26 a27 a28 a29 a30 a31 a32 a33 a34';
    await postJson(`${f.decode.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
    f.decode.engine.clearRecords();
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 4, cache_hit_threshold: 0.5, stream: true }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(sseJson(r.text).map((config) => config.choices[0]?.text).join('')).toBe('a1 a2 a3 a4 ');
    expect(records(f.prefill)).toHaveLength(0);
    expect(records(f.decode)).toHaveLength(1);
  });

  it('without cache_hit_threshold: prefill with max tokens 1, then decode', async () => {
    f = await startPd({ sidecar: { kvConnector: 'shared-storage' } });
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x y', max_tokens: 3 }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(200);
    expect(lastRecord(f.prefill).body).toMatchObject({ max_tokens: 1, max_completion_tokens: 1, cache_hit_threshold: 0 });
    expect(lastRecord(f.prefill).kvTransferParams).toBeUndefined();
    expect(lastRecord(f.decode).body).toMatchObject({ max_tokens: 3, cache_hit_threshold: 0 });
  });
});
