/**
 * Routing headers end to end: whatever routing headers a client sends (every entry of ROUTING_HEADERS), the request
 * that reaches the decode sidecar carries only the EPP's: on decode-only and P/D decisions, header-only requests, and
 * when a fail-open gateway skips an EPP that is unreachable or broken.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DESTINATION_ENDPOINT, PREFILLER_HOST_PORT, ROUTING_HEADERS } from '../../src/common/pd-contract.js';
import { startFailingEpp, startGatewayStack, type GatewayStack, type RecordedRequest } from './fixtures.js';

const MARK = '6.6.6.6';
/** Every routing header with a value naming the smuggler (one in upper case, as clients may send it). */
const smuggled: Record<string, string> = Object.fromEntries(ROUTING_HEADERS.map((host, i) => [i === 0 ? host.toUpperCase() : host, `${MARK}:${i + 1}`]));
const LONG_PROMPT = 'Summarize the following text. '.repeat(10);

/** The routing headers of a request as the upstream received it. */
function routing(request: RecordedRequest): Record<string, unknown> {
  return Object.fromEntries(ROUTING_HEADERS.filter((host) => request.headers[host] !== undefined).map((host) => [host, request.headers[host]]));
}

async function post(url: string, prompt: string, headers: Record<string, string> = smuggled): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'food-review', prompt }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res.status;
}

describe('through the gateway and the EPP', () => {
  let s: GatewayStack;
  beforeAll(async () => {
    s = await startGatewayStack();
  });
  afterAll(() => s.close());

  it('decode-only: the sidecar sees the EPP\'s destination and no other routing header', async () => {
    expect(await post(s.gateway.url, 'hi')).toBe(200);
    expect(routing(s.decode.requests.at(-1)!)).toEqual({ [DESTINATION_ENDPOINT]: s.decode.hostPort });
  });

  it('P/D: the sidecar sees the EPP\'s destination and prefiller, nothing the client sent (x-prefiller-url included)', async () => {
    expect(await post(s.gateway.url, `A fresh question. ${LONG_PROMPT}`)).toBe(200);
    expect(routing(s.decode.requests.at(-1)!)).toEqual({ [DESTINATION_ENDPOINT]: s.decode.hostPort, [PREFILLER_HOST_PORT]: s.prefill.hostPort });
  });

  it('a header-only request (GET, no body): none of the client\'s routing headers arrive', async () => {
    const before = s.prefill.requests.length + s.decode.requests.length;
    const res = await fetch(`${s.gateway.url}/v1/models`, { headers: smuggled, signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const all = [...s.prefill.requests, ...s.decode.requests];
    expect(all.length).toBe(before + 1);
    const got = all.find((request) => request.method === 'GET')!;
    expect(JSON.stringify(routing(got))).not.toContain(MARK);
    expect(Object.keys(routing(got))).toEqual([DESTINATION_ENDPOINT]);
  });
});

describe('a fail-open gateway strips every routing header when it skips the EPP', () => {
  const failOpen = (result: { decode: { hostPort: string } }) => ({ failureModeAllow: true, fallbackEndpoints: [result.decode.hostPort] });

  it('EPP unreachable: the fallback endpoint gets none of them', async () => {
    const s = await startGatewayStack({ epp: false, gateway: failOpen });
    try {
      expect(await post(s.gateway.url, `A fresh question. ${LONG_PROMPT}`)).toBe(200);
      expect(s.decode.requests).toHaveLength(1);
      expect(routing(s.decode.requests[0]!)).toEqual({});
      expect(await s.gateway.metrics.failOpen.get()).toMatchObject({ values: [{ value: 1 }] });
    } finally {
      await s.close();
    }
  });

  it('EPP failing every stream: the fallback endpoint gets none of them', async () => {
    const broken = await startFailingEpp();
    const s = await startGatewayStack({ epp: false, eppAddress: broken.address, gateway: failOpen });
    try {
      expect(await post(s.gateway.url, 'hi')).toBe(200);
      expect(s.decode.requests).toHaveLength(1);
      expect(routing(s.decode.requests[0]!)).toEqual({});
      expect(await s.gateway.metrics.eppFailures.get()).toMatchObject({ values: [{ value: 1, labels: { stage: 'stream' } }] });
    } finally {
      await s.close();
      await broken.close();
    }
  });
});

describe('deep JSON through a fail-open gateway', () => {
  it('is the EPP\'s 400, and nothing reaches the sidecar (the EPP is not skipped)', async () => {
    const s = await startGatewayStack({ gateway: (result) => ({ failureModeAllow: true, fallbackEndpoints: [result.decode.hostPort] }) });
    try {
      for (const depth of [4_100, 100_000]) {
        const res = await fetch(`${s.gateway.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...smuggled },
          body: `{"model":"food-review","messages":[{"role":"user","content":"hi"}],"tools":${'['.repeat(depth)}${']'.repeat(depth)}}`,
          signal: AbortSignal.timeout(10_000),
        });
        expect(res.status).toBe(400);
        expect(await res.text()).toBe("inference error: BadRequest - error unmarshaling request bodyMap: invalid character '[' exceeded max depth");
      }
      expect([...s.decode.requests, ...s.prefill.requests]).toEqual([]);
      expect(await s.gateway.metrics.failOpen.get()).toMatchObject({ values: [{ value: 0 }] });
    } finally {
      await s.close();
    }
  });
});
