import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { postJson, sseJson } from '../helpers.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture;
beforeAll(async () => {
  f = await startPd({ prefill: { blockSize: 4 }, decode: { blockSize: 4 } });
});
afterAll(() => f.close());
beforeEach(() => {
  f.prefill.engine.clearRecords();
  f.decode.engine.clearRecords();
});

const PREFILL_KV = { do_remote_decode: true, do_remote_prefill: false, remote_engine_id: null, remote_block_ids: null, remote_host: null, remote_port: null };

async function pd(path: string, body: Record<string, unknown>) {
  const r = await postJson(`${f.sidecar.url}${path}`, body, { 'x-prefiller-host-port': f.prefillHeader });
  expect(records(f.prefill)).toHaveLength(1);
  expect(records(f.decode)).toHaveLength(1);
  const prefill = lastRecord(f.prefill);
  const decode = lastRecord(f.decode);
  // Every API: the decode leg carries the prefiller's kv_transfer_params (its engine, host, port and blocks).
  expect(decode.kvTransferParams).toMatchObject({ do_remote_prefill: true, do_remote_decode: false, remote_engine_id: 'prefill-0', remote_host: '127.0.0.1', remote_port: f.prefill.port });
  expect((decode.kvTransferParams as { remote_block_ids?: unknown }).remote_block_ids).toEqual(expect.arrayContaining([expect.anything()]));
  return { r, prefillBody: prefill.body as Record<string, any>, decodeBody: decode.body as Record<string, any>, prefill, decode };
}

describe('NIXL v2: exact prefill and decode bodies', () => {
  it('chat: every token field set to 1 on prefill, restored on decode; stream off on prefill and restored on decode', async () => {
    const client = { model: MODEL, messages: [{ role: 'user', content: 'a b c d e f g h' }], max_tokens: 100, min_tokens: 5, stream: true, stream_options: { include_usage: true }, temperature: 0.5, n: 1 };
    const { r, prefillBody, decodeBody, prefill, decode } = await pd('/v1/chat/completions', client);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    expect(prefillBody).toEqual({ ...client, max_tokens: 1, min_tokens: 1, max_completion_tokens: 1, stream: false, stream_options: undefined, kv_transfer_params: PREFILL_KV });
    expect('stream_options' in prefillBody).toBe(false);
    expect(prefill.kind).toBe('prefill');
    // The decode leg is the client's request plus the prefiller's kv_transfer_params, untouched.
    const prefillAnswerKv = decode.kvTransferParams as Record<string, unknown>;
    expect(decodeBody).toEqual({ ...client, kv_transfer_params: prefillAnswerKv });
    expect('max_completion_tokens' in decodeBody).toBe(false);
    expect(prefillAnswerKv).toMatchObject({ do_remote_prefill: true, do_remote_decode: false, remote_engine_id: 'prefill-0', remote_port: f.prefill.port, remote_host: '127.0.0.1' });
    expect(decode.kind).toBe('decode');
  });

  it('chat without token fields: capped on prefill, absent on decode', async () => {
    const client = { model: MODEL, messages: [{ role: 'user', content: 'hello' }] };
    const { prefillBody, decodeBody } = await pd('/v1/chat/completions', client);
    expect(prefillBody.max_tokens).toBe(1);
    expect(prefillBody.max_completion_tokens).toBe(1);
    expect(prefillBody.min_tokens).toBe(1);
    expect(prefillBody.stream).toBe(false);
    expect(Object.keys(decodeBody).sort()).toEqual(['kv_transfer_params', 'messages', 'model']);
  });

  it('chat with max_completion_tokens: capped then restored', async () => {
    const { prefillBody, decodeBody } = await pd('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 100 });
    expect(prefillBody.max_completion_tokens).toBe(1);
    expect(decodeBody.max_completion_tokens).toBe(100);
    expect('max_tokens' in decodeBody).toBe(false);
  });

  it('completions', async () => {
    const client = { model: MODEL, prompt: 'one two three', max_tokens: 7, stream: false };
    const { r, prefillBody, decodeBody } = await pd('/v1/completions', client);
    expect(r.status).toBe(200);
    expect(prefillBody).toMatchObject({ max_tokens: 1, max_completion_tokens: 1, min_tokens: 1, stream: false, kv_transfer_params: PREFILL_KV, prompt: 'one two three' });
    expect(decodeBody).toEqual({ ...client, kv_transfer_params: decodeBody.kv_transfer_params });
    expect(decodeBody.kv_transfer_params.remote_engine_id).toBe('prefill-0');
  });

  it('responses: max_output_tokens capped then restored; streaming restored', async () => {
    const client = { model: MODEL, input: 'hi there', max_output_tokens: 100, stream: true };
    const { r, prefillBody, decodeBody } = await pd('/v1/responses', client);
    expect(r.status).toBe(200);
    expect(prefillBody).toEqual({ ...client, max_output_tokens: 1, stream: false, kv_transfer_params: PREFILL_KV });
    expect(decodeBody).toEqual({ ...client, kv_transfer_params: decodeBody.kv_transfer_params });
    expect(r.text).toContain('event: response.completed');
  });

  it('responses without max_output_tokens: absent on decode', async () => {
    const { decodeBody, prefillBody } = await pd('/v1/responses', { model: MODEL, input: 'x' });
    expect(prefillBody.max_output_tokens).toBe(1);
    expect('max_output_tokens' in decodeBody).toBe(false);
  });

  it('messages (Anthropic)', async () => {
    const client = { model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'hey' }] };
    const { r, prefillBody, decodeBody } = await pd('/v1/messages', client);
    expect(r.status).toBe(200);
    expect(prefillBody).toMatchObject({ max_tokens: 1, max_completion_tokens: 1, min_tokens: 1, stream: false, kv_transfer_params: PREFILL_KV });
    expect(decodeBody.max_tokens).toBe(50);
    expect(r.body.type).toBe('message');
  });

  it('generate: caps inside sampling_params, restored on decode', async () => {
    const client = { model: MODEL, token_ids: [1, 2, 3, 4, 5], sampling_params: { max_tokens: 9, min_tokens: 2, temperature: 0 } };
    const { r, prefillBody, decodeBody } = await pd('/inference/v1/generate', client);
    expect(r.status).toBe(200);
    expect(prefillBody.sampling_params).toEqual({ max_tokens: 1, min_tokens: 1, temperature: 0 });
    expect(prefillBody.kv_transfer_params).toEqual(PREFILL_KV);
    expect(decodeBody.sampling_params).toEqual(client.sampling_params);
  });

  it('generate without sampling_params: created on prefill, absent on decode', async () => {
    const { prefillBody, decodeBody } = await pd('/inference/v1/generate', { model: MODEL, token_ids: [1, 2] });
    expect(prefillBody.sampling_params).toEqual({ max_tokens: 1, min_tokens: 1 });
    expect('sampling_params' in decodeBody).toBe(false);
  });

  it('a client kv_transfer_params is replaced on both legs', async () => {
    const { prefillBody, decodeBody } = await pd('/v1/completions', { model: MODEL, prompt: 'x', kv_transfer_params: { evil: true } });
    expect(prefillBody.kv_transfer_params).toEqual(PREFILL_KV);
    expect(decodeBody.kv_transfer_params.evil).toBeUndefined();
  });
});

describe('NIXL v2: cached_tokens come from the prefiller', () => {
  const prompt = Array.from({ length: 24 }, (_, i) => `t${i}`).join(' ');

  it('JSON: the decoder reports nearly all tokens cached; the client sees the prefiller\'s count', async () => {
    // Cold prefiller: 0 cached. The decode sim, after "pulling" the KV, reports prompt-1 cached.
    const cold = await pd('/v1/completions', { model: MODEL, prompt, max_tokens: 2 });
    expect(cold.decode.cachedTokens).toBe(23);
    expect(cold.r.body.usage.prompt_tokens_details.cached_tokens).toBe(0);
    f.prefill.engine.clearRecords();
    f.decode.engine.clearRecords();
    // Warm prefiller: its prefix cache holds 5 full blocks of 4 tokens.
    const warm = await pd('/v1/completions', { model: MODEL, prompt, max_tokens: 2 });
    expect(warm.prefill.cachedTokens).toBe(20);
    expect(warm.r.body.usage.prompt_tokens_details.cached_tokens).toBe(20);
  });

  it('SSE: the usage chunk is rewritten, other chunks and [DONE] pass unchanged', async () => {
    const { r, prefill, decode } = await pd('/v1/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: prompt }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = sseJson(r.text);
    const usage = chunks.find((config) => config.usage);
    // Every chat prompt starts with the same rendered block ("### user: "), so the prefiller has a few tokens cached.
    expect(prefill.cachedTokens).toBeGreaterThan(0);
    expect(decode.cachedTokens).toBeGreaterThan(prefill.cachedTokens!);
    expect(usage.usage.prompt_tokens_details.cached_tokens).toBe(prefill.cachedTokens);
    expect(chunks.filter((config) => config.usage === null).length).toBeGreaterThan(2);
    expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('a JSON answer over 32 KiB is rewritten too (upstream silently skipped it)', async () => {
    const big = await startPd({ prefill: { maxModelLen: 200_000, kvCacheSize: 100_000 }, decode: { maxModelLen: 200_000, kvCacheSize: 100_000 } });
    try {
      const longPrompt = Array.from({ length: 12_000 }, (_, i) => `w${i}`).join(' ');
      const r = await postJson(`${big.sidecar.url}/v1/completions`, { model: MODEL, prompt: longPrompt, max_tokens: 12_000 }, { 'x-prefiller-host-port': big.prefillHeader });
      expect(r.status).toBe(200);
      expect(r.text.length).toBeGreaterThan(64 * 1024);
      expect(lastRecord(big.decode).cachedTokens).toBe(11_999);
      expect(r.body.usage.prompt_tokens_details.cached_tokens).toBe(0);
      expect(Number(r.headers.get('content-length'))).toBe(Buffer.byteLength(r.text));
    } finally {
      await big.close();
    }
  });
});
