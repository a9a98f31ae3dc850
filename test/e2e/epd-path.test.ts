/**
 * E/P/D end to end on loopback, every component its own process (`pd-router dev --encode 1 --prefill 1 --decode 1`):
 * gateway -> EPP (encode, prefill and decode profiles) -> decode sidecar (--ec-connector ec-nixl) -> encoder
 * simulator, then prefill simulator, then decode simulator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { postJson, recordedRequests } from '../helpers.js';

let stack: DevStack;
beforeAll(async () => {
  stack = await startDevStack({
    basePort: 0,
    gatewayPort: 0,
    profile: 'zero',
    encode: 1,
    prefill: 1,
    decode: 1,
    nonCachedTokens: 16,
  });
}, 180_000);
afterAll(() => stack?.close());

const MODEL = 'sim-model';
const records = recordedRequests;
const byId = async (url: string, id: string) =>
  (await records(url)).filter((item) => String(item.headers['x-request-id']).startsWith(id));

const IMAGE = { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } };
const longText = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');

describe('end to end: E/P/D', () => {
  it('prints an E/P/D shape', () => {
    expect(stack.shape).toBe('1E1P1D');
    expect(stack.encoders).toHaveLength(1);
  });

  it('a multimodal chat request reaches the encoder, the prefiller and the decoder, in that order', async () => {
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      {
        model: MODEL,
        messages: [{ role: 'user', content: [{ type: 'text', text: longText }, IMAGE] }],
        max_tokens: 4,
      },
      { 'x-request-id': 'e2e-epd-1', 'x-pd-router-debug': 'decision' },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('x-pd-router-decision')).toMatch(/^encode-prefill-decode/);
    const [encode] = await byId(stack.encoders[0].url, 'e2e-epd-1');
    const [prefill] = await byId(stack.prefills[0].url, 'e2e-epd-1');
    const [decode] = await byId(stack.decodes[0].sim.url, 'e2e-epd-1');
    expect([encode?.kind, prefill?.kind, decode?.kind]).toEqual(['encode', 'prefill', 'decode']);
    expect(encode.headers['x-request-id']).toBe('e2e-epd-1-enc-0');
    expect(encode.body.messages).toEqual([{ role: 'user', content: [IMAGE] }]);
    expect(encode.receivedAtMs).toBeLessThan(prefill.receivedAtMs);
    expect(prefill.receivedAtMs).toBeLessThan(decode.receivedAtMs);
    const encoderPort = Number(new URL(stack.encoders[0].url).port);
    for (const leg of [prefill, decode]) {
      const ec = Object.values(leg.body.ec_transfer_params as Record<string, any>);
      expect(ec).toHaveLength(1);
      expect(ec[0]).toMatchObject({ peer_host: '127.0.0.1', peer_port: encoderPort });
      expect(leg.body.cache_hit_threshold).toBe(0);
    }
  });

  it('a text-only request never reaches the encoder', async () => {
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 4 },
      { 'x-request-id': 'e2e-epd-2', 'x-pd-router-debug': 'decision' },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('x-pd-router-decision')).not.toMatch(/^encode/);
    expect(await byId(stack.encoders[0].url, 'e2e-epd-2')).toEqual([]);
    expect(await byId(stack.decodes[0].sim.url, 'e2e-epd-2')).toHaveLength(1);
  });
});
