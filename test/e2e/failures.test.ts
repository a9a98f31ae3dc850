/**
 * Failures on the whole path, every component its own process, killed with SIGKILL as a crash would. No request may
 * hang: each one is bounded and must end with an answer or a clear error.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { getJson, metricsText, metricValue, postJson, waitFor } from '../helpers.js';

let stack: DevStack | undefined;
afterEach(async () => {
  await stack?.close(2_000);
  stack = undefined;
});

const MODEL = 'sim-model';
const prompt = (tag: string) => Array.from({ length: 400 }, (_, i) => `${tag}${i}`).join(' ');

/** Sends a request and resolves with its status, or the error message; never hangs (15 s bound). */
function send(gateway: string, tag: string, extra: Record<string, unknown> = {}): Promise<number | string> {
  return postJson(`${gateway}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: prompt(tag) }], max_tokens: 4, ...extra }, {}, 15_000).then(
    (jsonResponse) => jsonResponse.status,
    (err: Error) => err.message,
  );
}

const running = async (url: string) => metricValue(await metricsText(url), 'vllm:num_requests_running', { model_name: MODEL }) ?? -1;

/** Waits until the EPP itself sees `n` endpoints (discovery reloaded, dead endpoints gone or stale). */
async function eppSees(devStack: DevStack, count: number): Promise<void> {
  const url = `http://127.0.0.1:${devStack.epp.ports.metricsPort}`;
  await waitFor(async () => metricValue(await metricsText(url), 'llm_d_epp_ready_endpoints') === count, 10_000, `EPP to see ${count} endpoints`);
}

describe('a prefill simulator killed mid-run', () => {
  it('in-flight requests are served by the sidecar failure policy (local), and the EPP stops choosing the dead prefiller', async () => {
    stack = await startDevStack({
      basePort: 0,
      gatewayPort: 0,
      profile: 'zero',
      prefill: 2,
      decode: 1,
      nonCachedTokens: 64,
      prefillFailurePolicy: 'local',
      prefillSim: { timeToFirstToken: 3_000, latencyCalculator: 'constant' },
    });
    const s = stack;
    const inflight = [send(s.gateway.url, 'a'), send(s.gateway.url, 'b'), send(s.gateway.url, 'c')];
    await waitFor(async () => (await running(s.prefills[0]!.url)) + (await running(s.prefills[1]!.url)) === 3, 10_000, 'three prefills in flight');
    const victim = (await running(s.prefills[0]!.url)) > 0 ? 0 : 1;
    await s.prefills[victim]!.kill();
    await waitFor(() => !s.liveEndpoints().includes(`prefill-${victim}`), 5_000, 'endpoint dropped from discovery');
    const survivor = s.prefills[1 - victim]!;
    // Requests already on the survivor finish after its 3 s prefill; new ones need not wait.
    expect((await postJson(`${survivor.url}/admin/config`, { 'time-to-first-token': '0s' })).status).toBe(200);
    const statuses = await Promise.all(inflight);
    expect(statuses).toEqual([200, 200, 200]);
    const fallbacks = metricValue(await metricsText(s.decodes[0]!.sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'fallback_local' }) ?? 0;
    expect(fallbacks).toBeGreaterThanOrEqual(1);
    // Once discovery dropped it, new long prompts go to the survivor only.
    await eppSees(s, 2);
    const prefillsOnSurvivor = async () => ((await getJson(`${survivor.url}/admin/requests`)).body.requests as Array<{ kind: string }>).filter((result) => result.kind === 'prefill').length;
    const fallbacksNow = async () => metricValue(await metricsText(s.decodes[0]!.sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'fallback_local' }) ?? 0;
    const [prefillsBefore, fallbacksBefore] = [await prefillsOnSurvivor(), await fallbacksNow()];
    for (let i = 0; i < 4; i++) expect(await send(s.gateway.url, `after${i}`)).toBe(200);
    // Each of the four was prefilled by the survivor, none fell back to a local prefill after trying the dead one.
    expect((await prefillsOnSurvivor()) - prefillsBefore).toBe(4);
    expect(await fallbacksNow()).toBe(fallbacksBefore);
  }, 180_000);
});

describe('a decode simulator killed', () => {
  it('its in-flight request ends with an error, not a hang; later requests go to the other decode pod', async () => {
    stack = await startDevStack({ basePort: 0, gatewayPort: 0, profile: 'zero', prefill: 1, decode: 2, nonCachedTokens: 64, decodeSim: { interTokenLatency: 20_000, latencyCalculator: 'constant' } });
    const s = stack;
    // ignore_eos makes the simulator produce all max_tokens, so the stream stays open between tokens.
    const inflight = postJson(`${s.gateway.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: prompt('dec') }], max_tokens: 4, stream: true, ignore_eos: true }, {}, 15_000).then(
      (jsonResponse) => ({ status: jsonResponse.status, text: jsonResponse.text }),
      (err: Error) => ({ status: 0, text: err.message }),
    );
    await waitFor(async () => (await running(s.decodes[0]!.sim.url)) + (await running(s.decodes[1]!.sim.url)) === 1, 10_000, 'decode in flight');
    const victim = (await running(s.decodes[0]!.sim.url)) === 1 ? 0 : 1;
    await s.decodes[victim]!.sim.kill();
    const result = await inflight;
    // The stream had started (status 200) and ends with an SSE error event (then [DONE], as vLLM ends a failed
    // stream), or the connection is cut.
    if (result.status === 200) {
      const events = result.text.split('\n\n').filter(Boolean);
      expect(events.at(-2)).toMatch(/^data: \{"error":\{"message":"upstream failed/);
      expect(events.at(-1)).toBe('data: [DONE]');
    } else {
      expect(['fetch failed', 'terminated']).toContain(result.text);
    }
    await waitFor(() => !s.liveEndpoints().includes(`decode-${victim}`), 5_000, 'decode endpoint dropped');
    await eppSees(s, 2);
    const other = s.decodes[1 - victim]!;
    expect((await postJson(`${other.sim.url}/admin/config`, { 'inter-token-latency': '0s' })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect(await send(s.gateway.url, `later${i}`)).toBe(200);
  }, 180_000);
});

describe('the EPP killed', () => {
  it('fail-closed: the gateway answers 500 at once', async () => {
    stack = await startDevStack({ basePort: 0, gatewayPort: 0, profile: 'zero', failureModeAllow: false });
    expect(await send(stack.gateway.url, 'ok')).toBe(200);
    await stack.epp.kill();
    const r = await postJson(`${stack.gateway.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    expect(r.status).toBe(500);
    expect(r.text).toContain('endpoint picker unavailable');
    const failures = metricValue(await metricsText(stack.gateway.url, '/gateway/metrics'), 'pd_router_gateway_requests_total', { code: '500' });
    expect(failures).toBe(1);
  }, 180_000);

  it('fail-open: requests go to a decode sidecar (local prefill) and succeed', async () => {
    stack = await startDevStack({ basePort: 0, gatewayPort: 0, profile: 'zero', failureModeAllow: true });
    await stack.epp.kill();
    const statuses = await Promise.all([send(stack.gateway.url, 'fo1'), send(stack.gateway.url, 'fo2', { stream: true })]);
    expect(statuses).toEqual([200, 200]);
    const text = await metricsText(stack.gateway.url, '/gateway/metrics');
    expect(metricValue(text, 'pd_router_gateway_fail_open_total')).toBe(2);
  }, 180_000);
});
