import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { metricsText, metricValue, postJson } from '../helpers.js';

let stack: DevStack;
beforeAll(async () => {
  stack = await startDevStack({
    mode: 'in-process',
    basePort: 0,
    gatewayPort: 0,
    profile: 'zero',
    nonCachedTokens: 64,
    epp: { decisionHeader: 'on-request' },
  });
}, 180_000);
afterAll(() => stack?.close());

const chat = (content: string, headers: Record<string, string> = {}) =>
  postJson(
    `${stack.gateway.url}/v1/chat/completions`,
    { model: 'sim-model', messages: [{ role: 'user', content }], max_tokens: 2 },
    headers,
  );

describe('the opt-in decision header', () => {
  it('is absent unless the client asks for it', async () => {
    const r = await chat('hello');
    expect(r.status).toBe(200);
    expect(r.headers.get('x-pd-router-decision')).toBeNull();
  });

  it("explains each decision: type, reason and the decider's numbers", async () => {
    const long = Array.from({ length: 200 }, (_, i) => `hdr${i}`).join(' ');
    const first = await chat(long, { 'x-pd-router-debug': 'decision' });
    expect(first.headers.get('x-pd-router-decision')).toMatch(
      /^prefill-decode; reason=above-threshold; inputTokens=\d+; hitTokens=0; nonCachedTokens=\d+; threshold=64/,
    );
    const repeat = await chat(long, { 'x-pd-router-debug': 'decision' });
    expect(repeat.headers.get('x-pd-router-decision')).toMatch(/^decode-only; reason=cached; /);
    const short = await chat('hi', { 'x-pd-router-debug': 'decision' });
    expect(short.headers.get('x-pd-router-decision')).toMatch(/^decode-only; reason=below-threshold; /);
    // The same reasons are counted for dashboards.
    const text = await metricsText(`http://127.0.0.1:${stack.epp.ports.metricsPort}`);
    for (const [type, reason] of [
      ['prefill-decode', 'above-threshold'],
      ['decode-only', 'cached'],
      ['decode-only', 'below-threshold'],
    ]) {
      expect(
        metricValue(text, 'llm_d_epp_disagg_decision_reason_total', { decision_type: type, reason: reason }),
      ).toBeGreaterThanOrEqual(1);
    }
  });
});
