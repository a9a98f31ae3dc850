import { describe, expect, it } from 'vitest';
import { simConfig, startSimulator } from '../../src/sim/index.js';
import { metricsText, metricValue, postJson, waitFor } from '../helpers.js';

const M = 'cap-model';

/** Starts a request that will run for a long time; returns its settled promise and an abort switch. */
function longRequest(url: string, prompt = 'hold this request') {
  const ac = new AbortController();
  const done = fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: M, prompt, max_tokens: 2 }),
    signal: ac.signal,
  }).then(
    (response) => response.status,
    () => 'aborted' as const,
  );
  return { done, abort: () => ac.abort() };
}

describe('scheduler capacity', () => {
  it('runs max-num-seqs at once, queues up to max-waiting-queue-length, then answers 429; aborts release slots', async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M], maxNumSeqs: 1, maxWaitingQueueLength: 1, timeToFirstToken: 60_000 }));
    try {
      const a = longRequest(sim.url);
      await waitFor(() => sim.engine.scheduler.running === 1, 5000, 'first request running');
      const b = longRequest(sim.url);
      await waitFor(() => sim.engine.scheduler.waiting === 1, 5000, 'second request queued');
      let text = await metricsText(sim.url);
      expect(metricValue(text, 'vllm:num_requests_running', { model_name: M })).toBe(1);
      expect(metricValue(text, 'vllm:num_requests_waiting', { model_name: M })).toBe(1);

      const c = await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' });
      expect(c.status).toBe(429);
      expect(c.body.error).toEqual({ message: 'Failed to enqueue request, waiting requests queue is full', type: 'RateLimitError', param: null, code: 429 });

      // A client that leaves frees its slot: the queued request starts, then leaves too.
      a.abort();
      expect(await a.done).toBe('aborted');
      await waitFor(() => sim.engine.scheduler.waiting === 0 && sim.engine.scheduler.running === 1, 5000, 'queued request promoted');
      b.abort();
      await waitFor(() => sim.engine.scheduler.running === 0, 5000, 'all slots released');
      text = await metricsText(sim.url);
      expect(metricValue(text, 'vllm:num_requests_running', { model_name: M })).toBe(0);
      expect(metricValue(text, 'vllm:num_requests_waiting', { model_name: M })).toBe(0);
      expect(metricValue(text, 'vllm:kv_cache_usage_perc', { model_name: M })).toBe(0);
    } finally {
      await sim.close();
    }
  });

  it('KV capacity bounds the batch: a request waits until blocks are free; one that can never fit is a 500', async () => {
    // 4 blocks of 16 tokens; each request needs 3 (prompt 40 tokens + 2 output tokens).
    const sim = await startSimulator(
      simConfig({ host: '127.0.0.1', port: 0, model: [M], maxNumSeqs: 8, kvCacheSize: 4, blockSize: 16, timeToFirstToken: 60_000, maxModelLen: 4096 }),
    );
    try {
      const prompt = (word: string) => Array.from({ length: 40 }, (_, i) => `${word}${i}`).join(' ');
      const a = longRequest(sim.url, prompt('a'));
      await waitFor(() => sim.engine.scheduler.running === 1);
      expect(sim.engine.kv!.usage()).toBeCloseTo(3 / 4, 9); // three prompt blocks in use
      const b = longRequest(sim.url, prompt('b'));
      await waitFor(() => sim.engine.scheduler.waiting === 1, 5000, 'second request waiting for KV blocks');
      expect(sim.engine.scheduler.running).toBe(1);
      a.abort();
      await waitFor(() => sim.engine.scheduler.running === 1 && sim.engine.scheduler.waiting === 0, 5000, 'second request admitted');
      b.abort();
      await waitFor(() => sim.engine.scheduler.running === 0);

      const huge = await postJson(`${sim.url}/v1/completions`, { model: M, prompt: prompt('c').repeat(3), max_tokens: 1 });
      expect(huge.status).toBe(500);
      expect(huge.body.error.message).toBe('the kv cache does not have sufficient capacity to store this request');
    } finally {
      await sim.close();
    }
  });
});

describe('prefix cache and metrics after a known sequence', () => {
  it('a repeated prompt hits the prefix cache; counters and histograms add up', async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M], mode: 'echo', blockSize: 16 }));
    try {
      const prompt = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' '); // 40 tokens
      const first = await postJson(`${sim.url}/v1/completions`, { model: M, prompt, max_tokens: 5 });
      expect(first.body.usage.prompt_tokens).toBe(40);
      expect(first.body.usage.prompt_tokens_details.cached_tokens).toBe(0);
      const second = await postJson(`${sim.url}/v1/completions`, { model: M, prompt, max_tokens: 5 });
      // Two full blocks are reused; the last block is recomputed because vLLM always computes the last prompt token.
      expect(second.body.usage.prompt_tokens_details.cached_tokens).toBe(32);
      const other = await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'different prompt here', max_tokens: 5 });
      expect(other.body.usage.prompt_tokens_details.cached_tokens).toBe(0);
      const longer = await postJson(`${sim.url}/v1/completions`, { model: M, prompt: `${prompt} and then more words follow`, max_tokens: 5 });
      expect(longer.body.usage.prompt_tokens_details.cached_tokens).toBe(32);

      const text = await metricsText(sim.url);
      const l = { model_name: M };
      expect(metricValue(text, 'vllm:prefix_cache_queries_total', l)).toBe(40 + 40 + 3 + 45);
      expect(metricValue(text, 'vllm:prefix_cache_hits_total', l)).toBe(64);
      expect(metricValue(text, 'vllm:prompt_tokens_total', l)).toBe(128);
      expect(metricValue(text, 'vllm:generation_tokens_total', l)).toBe(5 + 5 + 3 + 5);
      expect(metricValue(text, 'vllm:request_success_total', { ...l, finish_reason: 'length' })).toBe(3);
      expect(metricValue(text, 'vllm:request_success_total', { ...l, finish_reason: 'stop' })).toBe(1);
      expect(metricValue(text, 'vllm:request_prompt_tokens_count', l)).toBe(4);
      expect(metricValue(text, 'vllm:request_prompt_tokens_sum', l)).toBe(128);
      expect(metricValue(text, 'vllm:request_params_max_tokens_sum', l)).toBe(20);
      expect(metricValue(text, 'vllm:e2e_request_latency_seconds_count', l)).toBe(4);
      expect(metricValue(text, 'vllm:time_to_first_token_seconds_count', l)).toBe(4);
      expect(metricValue(text, 'vllm:cache_config_info', { block_size: '16', num_gpu_blocks: '1024' })).toBe(1);
      expect(metricValue(text, 'vllm:kv_cache_usage_perc', l)).toBe(0);
      expect(text).toContain('process_cpu_seconds_total');
    } finally {
      await sim.close();
    }
  });
});

describe('fault injection and admin config', () => {
  it('hang holds requests until the client leaves; return-error and drop-connections fail them', async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M] }));
    try {
      const set = (body: unknown) => postJson(`${sim.url}/admin/config`, body);
      expect((await set({ hang: true })).status).toBe(200);
      await expect(postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' }, {}, 300)).rejects.toThrow(/aborted|timeout/i);
      expect((await set({ hang: false, 'return-error': 503 })).status).toBe(200);
      const failed = await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' });
      expect(failed.status).toBe(503);
      expect((await set({ 'return-error': 502, 'return-error-count': 2 })).status).toBe(200);
      expect((await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' })).status).toBe(502);
      expect((await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' })).status).toBe(502);
      expect((await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' })).status).toBe(200);
      expect((await set({ 'drop-connections': true })).status).toBe(200);
      await expect(postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' })).rejects.toThrow(/fetch failed/);
      expect((await set({ 'drop-connections': false })).status).toBe(200);
      expect((await postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'x' })).status).toBe(200);
    } finally {
      await sim.close();
    }
  });

  it('changes latencies at runtime with upstream key names and validates them', async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M] }));
    try {
      const ok = await postJson(`${sim.url}/admin/config`, { 'time-to-first-token': '250ms', 'inter-token-latency': 20_000_000, 'latency-calculator': 'constant' });
      expect(ok.status).toBe(200);
      expect(ok.body.latencies['time-to-first-token']).toBe('250ms');
      expect(ok.body.latencies['inter-token-latency']).toBe('20ms');
      expect(ok.body['latency-calculator']).toBe('constant');
      expect(sim.engine.latency.current.timeToFirstToken).toBe(250);
      const nested = await postJson(`${sim.url}/admin/config`, { latencies: { 'kv-cache-transfer-latency': '5ms' } });
      expect(nested.body.latencies['kv-cache-transfer-latency']).toBe('5ms');

      const notAllowed = await postJson(`${sim.url}/admin/config`, { mode: 'echo' });
      expect(notAllowed.status).toBe(400);
      expect(notAllowed.body.error.message).toBe("field 'mode' is not admin-configurable");
      const mixed = await postJson(`${sim.url}/admin/config`, { 'prefill-overhead': '1ms', latencies: { 'inter-token-latency': '1ms' } });
      expect(mixed.body.error.message).toMatch(/mix the flat layout/);
      const badDuration = await postJson(`${sim.url}/admin/config`, { 'prefill-overhead': 'soon' });
      expect(badDuration.body.error.message).toBe('field "prefill-overhead": time: invalid duration "soon"');
      const std = await postJson(`${sim.url}/admin/config`, { 'time-to-first-token-std-dev': '200ms' });
      expect(std.body.error.message).toBe('time to first token standard deviation cannot be more than 30% of time to first token');
      const get = (await fetch(`${sim.url}/admin/config`).then((response) => response.json())) as { latencies: Record<string, string> };
      expect(get.latencies['time-to-first-token']).toBe('250ms');
    } finally {
      await sim.close();
    }
  });

  it('data-parallel ranks are independent engines on their own ports', async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M], dataParallelSize: 2, engineId: 'dp' }));
    try {
      expect(sim.ranks).toHaveLength(2);
      const p = { do_remote_decode: true };
      const r0 = await postJson(`${sim.ranks[0]!.url}/v1/completions`, { model: M, prompt: 'x', max_tokens: 1, kv_transfer_params: p });
      const r1 = await postJson(`${sim.ranks[1]!.url}/v1/completions`, { model: M, prompt: 'x', max_tokens: 1, kv_transfer_params: p });
      expect(r0.body.kv_transfer_params.remote_engine_id).toBe('dp-dp0');
      expect(r1.body.kv_transfer_params.remote_engine_id).toBe('dp-dp1');
      expect(r1.body.kv_transfer_params.remote_port).toBe(sim.ranks[1]!.port);
    } finally {
      await sim.close();
    }
  });
});
