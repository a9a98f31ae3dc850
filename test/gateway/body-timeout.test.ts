/** The gateway's request body timeout (--request-body-timeout): a stalled upload gets 408 and its connection closes. */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayStack, type GatewayStack } from './fixtures.js';

describe('a stalled upload through the gateway', () => {
  let s: GatewayStack;
  beforeAll(async () => {
    s = await startGatewayStack({ gateway: { requestBodyTimeout: 300 } });
  });
  afterAll(() => s.close());

  it('gets 408 naming the pause, the connection is closed, and neither the EPP nor an endpoint sees the request', async () => {
    const u = new URL(s.gateway.url);
    const result = await new Promise<{ status: number; body: string; closed: boolean }>((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': 1000 }, timeout: 10_000 });
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.on('end', () => {
          const socket = req.socket!;
          const settle = () => resolve({ status: res.statusCode!, body: Buffer.concat(parts).toString(), closed: true });
          if (socket.destroyed) settle();
          else socket.once('close', settle);
        });
      });
      req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
      // 100 of the 1000 announced bytes, then nothing.
      req.write('{"model":"food-review","prompt":"' + 'x'.repeat(67));
    });
    expect(result).toEqual({ status: 408, body: 'request body made no progress for 300ms (100 bytes received)', closed: true });
    expect([...s.decode.requests, ...s.prefill.requests]).toEqual([]);
    expect(await s.epp!.metrics.llmd!.streamsTotal.get()).toMatchObject({ values: [] });
    expect((await s.gateway.metrics.requests.get()).values).toEqual([expect.objectContaining({ labels: { code: '408' }, value: 1 })]);
  });
});
