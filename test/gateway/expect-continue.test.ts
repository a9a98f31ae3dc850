/**
 * `Expect: 100-continue` (curl sends it for bodies over 1 MiB): the gateway answers as a proxy should, like Envoy
 * (which answers the expectation itself and removes the header): 100 Continue, then the body goes through the EPP to
 * the endpoint; or, when the declared body is over --max-request-body-size, the final 413 without reading the body.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayStack, type GatewayStack } from './fixtures.js';

interface ContinueResult {
  sawContinue: boolean;
  status: number;
  body: string;
  /** Whether the client wrote its body (only after a 100 Continue). */
  sentBody: boolean;
}

/** A client that sends the headers, waits for 100 Continue before it writes the body, and reads the final answer. */
function postExpectingContinue(url: string, body: Buffer, timeoutMs = 10_000): Promise<ContinueResult> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${url}/v1/completions`);
    let sawContinue = false;
    let sentBody = false;
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length, expect: '100-continue' },
      timeout: timeoutMs,
    });
    req.on('continue', () => {
      sawContinue = true;
      sentBody = true;
      req.end(body);
    });
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => {
        if (!sentBody) req.destroy();
        resolve({ sawContinue, status: res.statusCode!, body: Buffer.concat(parts).toString(), sentBody });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.flushHeaders();
  });
}

describe('Expect: 100-continue through the gateway', () => {
  let s: GatewayStack;
  beforeAll(async () => {
    s = await startGatewayStack({ gateway: { maxRequestBodySize: 4 * 1024 * 1024 } });
  });
  afterAll(() => s.close());

  it('a 2 MiB body: 100 Continue, then the EPP routes it and the endpoint gets it whole, without the Expect header', async () => {
    const prompt = 'x'.repeat(2 * 1024 * 1024);
    const payload = Buffer.from(JSON.stringify({ model: 'food-review', prompt }));
    const r = await postExpectingContinue(s.gateway.url, payload);
    expect(r).toMatchObject({ sawContinue: true, status: 200 });
    const got = s.decode.requests.at(-1)!;
    expect(got.body.length).toBe(payload.length);
    expect(got.headers.expect).toBeUndefined();
    expect(got.headers['x-gateway-destination-endpoint']).toBe(s.decode.hostPort);
  });

  it('a declared body over --max-request-body-size: 413 at once, no 100 Continue, the body never sent', async () => {
    const before = s.decode.requests.length;
    const r = await postExpectingContinue(s.gateway.url, Buffer.alloc(5 * 1024 * 1024, 0x20));
    expect(r).toMatchObject({ sawContinue: false, sentBody: false, status: 413 });
    expect(r.body).toContain('request body exceeds 4194304 bytes');
    expect(s.decode.requests.length).toBe(before);
  });
});
