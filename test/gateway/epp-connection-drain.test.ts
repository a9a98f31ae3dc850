/**
 * The EPP's connection stream guard closes an ext_proc connection that opens streams faster than nghttp2 allows them
 * to be reset (GOAWAY NO_ERROR, then the final GOAWAY). Requests whose ext_proc stream is already open on it, waiting
 * for the upstream's answer, must still finish through the EPP: the drain is the EPP's business, never the client's.
 *
 * The keepalive used to break that: grpc-js's server keepalive destroyed a closing session at its next tick (Node
 * refuses to ping a closing session), and every request still on it got 500 "endpoint picker failed on the response".
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postCompletion, startGatewayStack, type GatewayStack } from './fixtures.js';
import { waitFor } from '../helpers.js';

const BURST = 4;

const post = (stack: GatewayStack, stream: boolean) =>
  postCompletion(stack.gateway.url, { model: 'food-review', prompt: 'hi', stream }).done;

const drained = async (stack: GatewayStack) =>
  (await stack.epp!.metrics.connectionsDrained.get()).values.find(
    (metricValue) => metricValue.labels.reason === 'stream_burst',
  )?.value ?? 0;

const keepalives = async (stack: GatewayStack, result: string) =>
  (await stack.epp!.metrics.keepalivePings.get()).values.find((metricValue) => metricValue.labels.result === result)
    ?.value ?? 0;

describe.each([
  ['buffered', false],
  ['streamed', true],
])('the EPP drains the gateway connection while requests wait for their upstream (%s responses)', (_name, stream) => {
  let stack: GatewayStack;
  beforeAll(async () => {
    stack = await startGatewayStack({
      // A keepalive tick every 20 ms: several find the drained connection closing while its requests wait.
      epp: { connectionStreamBurst: BURST, connectionStreamRate: 0, grpcKeepaliveTime: 20 },
      gateway: { responseBodyMode: stream ? 'streamed' : 'none' },
    });
  });
  afterAll(() => stack.close());

  it('every held request completes with 200 through the EPP, and later requests are served on a new connection', async () => {
    const held: Array<() => void> = [];
    let holding = true;
    stack.decode.handler = (_req, res) => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }] }));
      };
      if (holding) held.push(answer);
      else answer();
    };
    // BURST requests open BURST streams: the bucket is empty but the connection not yet drained.
    const waiting = Array.from({ length: BURST }, () => post(stack, stream));
    await waitFor(() => held.length === BURST, 20_000, 'held requests at the decoder');
    expect(await drained(stack)).toBe(0);
    // The next request's stream drains the connection; it is answered at once.
    holding = false;
    const next = await post(stack, stream);
    expect(next.status).toBe(200);
    await waitFor(async () => (await drained(stack)) === 1, 20_000, 'connection drained');
    // The drained connection's keepalive comes due while it is closing (before the fix, it destroyed the connection).
    await waitFor(
      async () => (await keepalives(stack, 'closing')) >= 1,
      20_000,
      'a keepalive tick on the closing connection',
    );
    // The held requests' upstreams answer now: their response phase goes through the draining connection.
    for (const release of held.splice(0)) release();
    const results = await Promise.all(waiting);
    expect(results.map((result) => result.status)).toEqual(Array(BURST).fill(200));
    // New requests after the drain go over a new connection.
    for (let i = 0; i < 3; i++) expect((await post(stack, stream)).status).toBe(200);
  }, 60_000);
});

describe('clients that give up while others wait, across many drains', () => {
  let stack: GatewayStack;
  beforeAll(async () => {
    stack = await startGatewayStack({
      epp: { connectionStreamBurst: 8, connectionStreamRate: 0, grpcKeepaliveTime: 5 },
    });
  });
  afterAll(() => stack.close());

  it('no request that stays fails', async () => {
    let n = 0;
    stack.decode.handler = (_req, res) => {
      const delay = n++ % 7;
      const answer = () => {
        if (res.destroyed) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }] }));
      };
      setTimeout(answer, delay * 3);
    };
    const u = new URL(stack.gateway.url);
    const one = (abortAfterMs?: number) =>
      new Promise<number>((resolve) => {
        const req = http.request(
          {
            host: u.hostname,
            port: u.port,
            path: '/v1/completions',
            method: 'POST',
            headers: { 'content-type': 'application/json' },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
            res.on('error', () => resolve(-1));
          },
        );
        req.on('error', () => resolve(-1));
        req.end(JSON.stringify({ model: 'food-review', prompt: 'hi' }));
        if (abortAfterMs !== undefined) setTimeout(() => req.destroy(), abortAfterMs);
      });
    const kept: Array<Promise<number>> = [];
    const gone: Array<Promise<number>> = [];
    for (let i = 0; i < 400; i++) {
      if (i % 3 === 0) kept.push(one());
      else gone.push(one(i % 5));
      if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await Promise.all(gone);
    const statuses = await Promise.all(kept);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(await drained(stack)).toBeGreaterThan(3);
    expect(await keepalives(stack, 'timeout')).toBe(0);
  }, 120_000);
});
