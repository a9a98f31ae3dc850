import { afterEach, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { metricsText, metricValue, postJson, sseJson, waitFor } from '../helpers.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const M = 'step-model';
const words = (count: number, tag = 'w') => Array.from({ length: count }, (_, i) => `${tag}${i}`).join(' ');
const hist = async (name: string) => {
  const t = await metricsText(sim!.url);
  return { sum: metricValue(t, `${name}_sum`, { model_name: M })!, count: metricValue(t, `${name}_count`, { model_name: M })! };
};

/** A step-engine simulator running 20× faster than real time; metrics report simulated time. */
function stepSim(extra: Record<string, unknown> = {}) {
  return startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      model: [M],
      mode: 'random',
      engineModel: 'step',
      timeScale: 0.05,
      interTokenLatency: 20,
      prefillTimePerToken: 0.5,
      prefillOverhead: 10,
      maxNumBatchedTokens: 512,
      maxModelLen: 100_000,
      kvCacheSize: 100_000,
      maxNumSeqs: 64,
      ...extra,
    }),
  );
}

describe('step engine', () => {
  it('alone: prefill = overhead + tokens × per-token; one token per ITL step', async () => {
    sim = await stepSim();
    const started = performance.now();
    const r = await postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(200), max_tokens: 5, ignore_eos: true });
    const wallMs = performance.now() - started;
    expect(r.status).toBe(200);
    expect(r.body.usage.completion_tokens).toBe(5);
    const prefill = await hist('vllm:request_prefill_time_seconds');
    // 200 tokens fit one step: 10 ms + 200 × 0.5 ms = 110 ms of simulated time, plus the wall-clock time between
    // arrival and the first step × 20 at this time scale: at least 110 ms, at most the whole request in simulated time.
    expect(prefill.sum).toBeGreaterThanOrEqual(0.11 - 1e-9);
    expect(prefill.sum).toBeLessThanOrEqual(wallMs / 0.05 / 1000);
    const itl = await hist('vllm:inter_token_latency_seconds');
    expect(itl.count).toBe(4);
    expect(itl.sum).toBeCloseTo(4 * 0.02, 6);
  });

  it('a long prompt is prefilled in chunks of --max-num-batched-tokens', async () => {
    sim = await stepSim();
    const started = performance.now();
    await postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(1300), max_tokens: 1 });
    const wallMs = performance.now() - started;
    // Steps of 512, 512, 276 tokens: the time is the same as one pass, split over three steps (plus the wall-clock
    // gaps before and between steps, which a loaded machine stretches: bounded by the request's simulated duration).
    const sum = (await hist('vllm:request_prefill_time_seconds')).sum;
    expect(sum).toBeGreaterThanOrEqual((10 + 1300 * 0.5) / 1000 - 1e-9);
    expect(sum).toBeLessThanOrEqual(wallMs / 0.05 / 1000);
  });

  it('prefills queued on one engine wait for each other (prefill time grows with the prefill work)', async () => {
    sim = await stepSim();
    const [a, b] = await Promise.all([
      postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(4000, 'a'), max_tokens: 1 }),
      postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(4000, 'b'), max_tokens: 1 }),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const prefill = await hist('vllm:request_prefill_time_seconds');
    // Alone each takes 10 + 2000 = 2010 ms in 8 steps; sharing the 512-token budget, the second waits for the first.
    expect(prefill.count).toBe(2);
    expect(prefill.sum / 2).toBeGreaterThan(2.01 * 1.3);
  });

  it('a long prefill slows the decodes running on the same engine (interference)', async () => {
    sim = await stepSim({ maxNumBatchedTokens: 4096 });
    const decoding = postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'short', max_tokens: 40, ignore_eos: true, stream: true });
    await waitFor(() => sim!.engine.scheduler.running === 1, 5000, 'decode running');
    await postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(3000, 'p'), max_tokens: 1 });
    const r = await decoding;
    expect(sseJson(r.text).length).toBeGreaterThan(40);
    const t = await metricsText(sim.url);
    // Some decode step carried the 3000-token prefill: an ITL of 20 ms + 10 ms + 1500 ms lands in the >1 s buckets.
    const underOneSecond = metricValue(t, 'vllm:inter_token_latency_seconds_bucket', { model_name: M, le: '1' })!;
    const all = metricValue(t, 'vllm:inter_token_latency_seconds_count', { model_name: M })!;
    expect(all - underOneSecond).toBeGreaterThanOrEqual(1);
  });

  it('the request model (upstream) has no such interference', async () => {
    sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M], timeScale: 0.05, interTokenLatency: 20, prefillTimePerToken: 0.5, prefillOverhead: 10, maxModelLen: 100_000, kvCacheSize: 100_000 }));
    const decoding = postJson(`${sim.url}/v1/completions`, { model: M, prompt: 'short', max_tokens: 40, ignore_eos: true, stream: true });
    await waitFor(() => sim!.engine.scheduler.running === 1, 5000, 'decode running');
    await postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(3000, 'p'), max_tokens: 1 });
    await decoding;
    const t = await metricsText(sim.url);
    expect(metricValue(t, 'vllm:inter_token_latency_seconds_bucket', { model_name: M, le: '0.025' })).toBe(metricValue(t, 'vllm:inter_token_latency_seconds_count', { model_name: M }));
  });

  it('a remote-prefill request waits for its KV transfer, not for engine steps, then decodes', async () => {
    sim = await stepSim({ kvCacheTransferTimePerToken: 0.1 });
    const r = await postJson(`${sim.url}/v1/completions`, {
      model: M,
      prompt: words(1000),
      max_tokens: 3,
      ignore_eos: true,
      kv_transfer_params: { do_remote_prefill: true, remote_engine_id: 'x', remote_block_ids: [1], remote_host: 'h', remote_port: 1 },
    });
    expect(r.status).toBe(200);
    // Transfer 1000 × 0.1 ms = 100 ms, then the first decode step (20 ms) makes the first token.
    expect((await hist('vllm:request_prefill_time_seconds')).sum).toBeCloseTo(0.12, 2);
    expect((await hist('vllm:nixl_xfer_time_seconds')).sum).toBeCloseTo(0.1, 6);
  });

  it('reports prefills no step has started as waiting and the others as running (vLLM V1 semantics)', async () => {
    // 512-token steps of 0.5 ms/token: a 4000-token prompt takes 8 steps, and nothing else fits beside it.
    sim = await stepSim({ timeScale: 0.2 });
    const gauge = async (name: string) => metricValue(await metricsText(sim!.url), name, { model_name: M });
    const first = postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(4000, 'a'), max_tokens: 1 });
    await waitFor(() => sim!.engine.scheduler.running === 1, 5000, 'first admitted');
    const queued = [
      postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(600, 'b'), max_tokens: 1 }),
      postJson(`${sim.url}/v1/completions`, { model: M, prompt: words(600, 'c'), max_tokens: 1 }),
    ];
    await waitFor(() => sim!.engine.scheduler.running === 3, 5000, 'all admitted');
    // The first prompt's chunks fill every step for ~2 s of simulated time; the two behind it have no chunk yet.
    expect(await gauge('vllm:num_requests_waiting')).toBe(2);
    expect(await gauge('vllm:num_requests_running')).toBe(1);
    await Promise.all([first, ...queued]);
    await waitFor(async () => (await gauge('vllm:num_requests_waiting')) === 0 && (await gauge('vllm:num_requests_running')) === 0, 5000, 'drained');
  });

  it('client aborts leave the batch', async () => {
    sim = await stepSim({ interTokenLatency: 200 });
    const ac = new AbortController();
    const p = fetch(`${sim.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: M, prompt: 'x', max_tokens: 500, ignore_eos: true, stream: true }), signal: ac.signal }).then((response) => response.text()).catch(() => 'aborted');
    await waitFor(() => sim!.engine.scheduler.running === 1);
    ac.abort();
    await p;
    await waitFor(() => sim!.engine.scheduler.running === 0, 5000, 'released');
  });
});
