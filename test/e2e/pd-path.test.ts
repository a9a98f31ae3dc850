/**
 * The whole P/D path on loopback, every component its own process: gateway -> EPP (ext_proc) -> decode sidecar ->
 * prefill simulator + decode simulator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { metricsText, metricValue, postJson, sseJson, recordedRequests } from '../helpers.js';

let stack: DevStack;
beforeAll(async () => {
  stack = await startDevStack({
    basePort: 0,
    gatewayPort: 0,
    profile: 'zero',
    prefill: 1,
    decode: 1,
    nonCachedTokens: 64,
  });
}, 180_000);
afterAll(() => stack?.close());

const MODEL = 'sim-model';
const records = recordedRequests;
const eppMetrics = async () => metricsText(`http://127.0.0.1:${stack.epp.ports.metricsPort}`);
const decisions = async (type: string) =>
  metricValue(await eppMetrics(), 'llm_d_epp_disagg_decision_total', { decision_type: type }) ?? 0;

const longPrompt = Array.from({ length: 400 }, (_, i) => `topic${i}`).join(' ');

describe('end to end: gateway -> EPP -> sidecar -> simulators', () => {
  it("a long prompt is disaggregated: the prefill simulator gets a remote_decode request, the decode simulator that prefill's parameters", async () => {
    const before = await decisions('prefill-decode');
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: longPrompt }], max_tokens: 8 },
      { 'x-request-id': 'e2e-long-1' },
    );
    expect(r.status).toBe(200);
    expect(r.body.choices[0].message.role).toBe('assistant');
    const prefill = (await records(stack.prefills[0].url)).find(
      (item) => item.headers['x-request-id'] === 'e2e-long-1',
    )!;
    const decode = (await records(stack.decodes[0].sim.url)).find(
      (item) => item.headers['x-request-id'] === 'e2e-long-1',
    )!;
    expect(prefill.kind).toBe('prefill');
    expect(prefill.finishReason).toBe('remote_decode');
    expect(decode.kind).toBe('decode');
    expect(decode.kvTransferParams).toMatchObject({
      do_remote_prefill: true,
      remote_engine_id: 'prefill-0',
      remote_port: Number(new URL(stack.prefills[0].url).port),
    });
    expect(await decisions('prefill-decode')).toBe(before + 1);
    const sim = await metricsText(stack.prefills[0].url);
    expect(
      metricValue(sim, 'vllm:request_success_total', { model_name: MODEL, finish_reason: 'remote_decode' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('the repeat of that prompt is decode-only (its prefix is cached on the decode pod)', async () => {
    const before = await decisions('decode-only');
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: longPrompt }], max_tokens: 8 },
      { 'x-request-id': 'e2e-long-2' },
    );
    expect(r.status).toBe(200);
    expect((await records(stack.prefills[0].url)).some((item) => item.headers['x-request-id'] === 'e2e-long-2')).toBe(
      false,
    );
    expect(
      (await records(stack.decodes[0].sim.url)).find((item) => item.headers['x-request-id'] === 'e2e-long-2')!.kind,
    ).toBe('aggregated');
    expect(await decisions('decode-only')).toBe(before + 1);
  });

  it('a short prompt is decode-only', async () => {
    const r = await postJson(
      `${stack.gateway.url}/v1/completions`,
      { model: MODEL, prompt: 'Hi there', max_tokens: 4 },
      { 'x-request-id': 'e2e-short' },
    );
    expect(r.status).toBe(200);
    expect((await records(stack.prefills[0].url)).some((item) => item.headers['x-request-id'] === 'e2e-short')).toBe(
      false,
    );
  });

  it("streaming: a disaggregated request streams SSE back through sidecar and gateway, usage carries the prefiller's cached tokens", async () => {
    const prompt = Array.from({ length: 400 }, (_, i) => `stream${i}`).join(' ');
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      {
        model: MODEL,
        messages: [{ role: 'user', content: prompt }],
        max_tokens: 6,
        stream: true,
        stream_options: { include_usage: true },
      },
      { 'x-request-id': 'e2e-stream' },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const chunks = sseJson(r.text);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const prefill = (await records(stack.prefills[0].url)).find(
      (item) => item.headers['x-request-id'] === 'e2e-stream',
    )!;
    expect(chunks.at(-1).usage.prompt_tokens_details.cached_tokens).toBe(prefill.cachedTokens);
  });

  it("bad requests get the EPP's immediate response through the gateway", async () => {
    const r = await postJson(`${stack.gateway.url}/v1/chat/completions`, '{"model": ');
    expect(r.status).toBe(400);
    expect(r.text).toMatch(/^inference error: BadRequest - /);
  });

  it('a client-supplied x-prefiller-host-port cannot steer the sidecar', async () => {
    const r = await postJson(
      `${stack.gateway.url}/v1/completions`,
      { model: MODEL, prompt: 'short one', max_tokens: 2 },
      { 'x-prefiller-host-port': '10.66.66.66:1', 'x-request-id': 'e2e-smuggle' },
    );
    expect(r.status).toBe(200);
    expect(
      (await records(stack.decodes[0].sim.url)).find((item) => item.headers['x-request-id'] === 'e2e-smuggle')!.kind,
    ).toBe('aggregated');
  });
});
