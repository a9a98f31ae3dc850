import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { getJson, metricsText, metricValue, postJson } from '../helpers.js';

let sim: SimulatorHandle;
const MODEL = 'pd-model';
const PREFILL_PARAMS = { do_remote_decode: true, do_remote_prefill: false, remote_engine_id: null, remote_block_ids: null, remote_host: null, remote_port: null };

beforeAll(async () => {
  sim = await startSimulator(
    simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'random', seed: 3, engineId: 'prefill-engine-1', advertiseHost: '10.1.2.3', blockSize: 4 }),
  );
});
afterAll(() => sim.close());

describe('P/D request kinds', () => {
  it('a do_remote_decode request is a prefill: finish_reason remote_decode and kv_transfer_params identifying this instance', async () => {
    const prompt = 'alpha beta gamma delta epsilon zeta eta theta iota';
    const r = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1, kv_transfer_params: PREFILL_PARAMS });
    expect(r.status).toBe(200);
    expect(r.body.choices[0].finish_reason).toBe('remote_decode');
    const kv = r.body.kv_transfer_params;
    expect(kv).toEqual({
      do_remote_decode: false,
      do_remote_prefill: true,
      remote_engine_id: 'prefill-engine-1',
      remote_block_ids: expect.any(Array),
      remote_host: '10.1.2.3',
      remote_port: sim.port,
      tp_size: 1,
      remote_request_id: expect.any(String),
    });
    // 9 prompt tokens in blocks of 4: three blocks, ids from this instance's KV cache.
    expect(kv.remote_block_ids).toHaveLength(3);
    expect(new Set(kv.remote_block_ids).size).toBe(3);
    expect(r.body.id).toBe(`cmpl-${kv.remote_request_id}`);
  });

  it.each([
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }],
    ['/v1/responses', { input: 'hi', max_output_tokens: 1 }],
    ['/v1/messages', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }],
    ['/inference/v1/generate', { token_ids: [5, 6, 7], sampling_params: { max_tokens: 1 } }],
  ])('%s prefill returns kv_transfer_params', async (path, extra) => {
    const r = await postJson(`${sim.url}${path}`, { model: MODEL, ...extra, kv_transfer_params: PREFILL_PARAMS });
    expect(r.status).toBe(200);
    expect(r.body.kv_transfer_params).toMatchObject({ do_remote_prefill: true, remote_engine_id: 'prefill-engine-1', remote_port: sim.port });
  });

  it('generate also reads kv_transfer_params from sampling_params.extra_args', async () => {
    const r = await postJson(`${sim.url}/inference/v1/generate`, {
      model: MODEL,
      token_ids: [1, 2, 3],
      sampling_params: { max_tokens: 1, extra_args: { kv_transfer_params: PREFILL_PARAMS } },
    });
    expect(r.body.choices[0].finish_reason).toBe('remote_decode');
    expect(r.body.kv_transfer_params.do_remote_prefill).toBe(true);
  });

  it('a streamed prefill is rejected with 400 as upstream', async () => {
    const r = await postJson(`${sim.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
      kv_transfer_params: PREFILL_PARAMS,
    });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: { message: 'Prefill does not support streaming', type: 'BadRequestError', param: null, code: 400 } });
  });

  it('a do_remote_prefill request is a decode: no kv params returned, prompt reported as cached, recorded verbatim', async () => {
    const params = { do_remote_decode: false, do_remote_prefill: true, remote_engine_id: 'eng-x', remote_block_ids: [4, 5], remote_host: 'h', remote_port: 1, tp_size: 1 };
    const r = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: 'one two three four five six', max_tokens: 3, kv_transfer_params: params }, { 'x-request-id': 'dec-1' });
    expect(r.status).toBe(200);
    expect(r.body.kv_transfer_params).toBeUndefined();
    expect(r.body.choices[0].finish_reason).not.toBe('remote_decode');
    expect(r.body.usage.prompt_tokens_details.cached_tokens).toBe(5);
    const records = (await getJson(`${sim.url}/admin/requests`)).body.requests as Array<Record<string, any>>;
    const rec = records.find((item) => item.headers['x-request-id'] === 'dec-1')!;
    expect(rec.kind).toBe('decode');
    expect(rec.kvTransferParams).toEqual(params);
    expect(rec.body.kv_transfer_params).toEqual(params);
    const text = await metricsText(sim.url);
    expect(metricValue(text, 'vllm:external_prefix_cache_hits_total', { model_name: MODEL })).toBeGreaterThanOrEqual(5);
    expect(metricValue(text, 'vllm:nixl_xfer_time_seconds_count', { model_name: MODEL })).toBeGreaterThanOrEqual(1);
  });

  it('counts prefills under finish_reason="remote_decode"', async () => {
    const text = await metricsText(sim.url);
    expect(metricValue(text, 'vllm:request_success_total', { model_name: MODEL, finish_reason: 'remote_decode' })).toBeGreaterThanOrEqual(6);
  });
});

describe('cache hit threshold (shared-storage connector support)', () => {
  it('answers at once with finish_reason cache_threshold when the hit rate is below the threshold, else decodes', async () => {
    const prompt = 'k1 k2 k3 k4 k5 k6 k7 k8 k9 k10';
    const cold = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 3, cache_hit_threshold: 0.5 });
    expect(cold.status).toBe(200);
    expect(cold.body.choices[0]).toMatchObject({ finish_reason: 'cache_threshold', text: '' });
    expect(cold.body.usage.completion_tokens).toBe(0);
    expect(cold.body.usage.prompt_tokens_details).toBeNull();
    // Warm the cache (block size 4: two full blocks of the 10-token prompt become reusable), then ask again.
    await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
    const warm = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 3, cache_hit_threshold: 0.5 });
    expect(warm.body.choices[0].finish_reason).not.toBe('cache_threshold');
    const forced = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 3 }, { 'x-cache-threshold-finish-reason': 'true' });
    expect(forced.body.choices[0].finish_reason).toBe('cache_threshold');
    const bad = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt, cache_hit_threshold: 2 });
    expect(bad.status).toBe(400);
  });
});

describe('request records', () => {
  it('keep a small body as parsed and cut a body over 64 KiB to its first 64 KiB of JSON', async () => {
    sim.engine.clearRecords();
    await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: 'small', max_tokens: 1 });
    const big = 'x'.repeat(70 * 1024);
    await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: big, max_tokens: 1 });
    const [small, large] = sim.engine.recentRequests();
    expect(small!.bodyTruncated).toBe(false);
    expect(small!.body).toMatchObject({ prompt: 'small' });
    expect(large!.bodyTruncated).toBe(true);
    expect(large!.body).toBe(JSON.stringify({ model: MODEL, prompt: big, max_tokens: 1 }).slice(0, 64 * 1024));
  });
});
