/**
 * Inference POSTs take the hot path; while the sidecar closes they must still get the 503 every route gets (the one
 * fastify gave, server.ts), and a request already in flight must still finish.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.js';
import { MODEL, startPd, type PdFixture } from './fixture.js';

let f: PdFixture;
beforeAll(async () => {
  // Every answer takes 300 ms, so a request is still in flight when the close starts.
  f = await startPd({ decode: { timeToFirstToken: 300 } });
});
afterAll(() => f.close());

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('sidecar closing', () => {
  it(
    'an inference POST that arrives while closing gets 503; the one in flight completes',
    { timeout: 180_000 },
    async () => {
      const port = f.sidecar.ports[0];
      const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 2 });
      const request = `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      const socket = connect(port, '127.0.0.1');
      let received = '';
      const ended = new Promise<void>((resolve) => {
        socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
        socket.once('close', () => resolve());
      });
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write(request);
      await waitFor(
        async () => ((await f.sidecar.metrics.inflight.get()).values[0]?.value ?? 0) >= 1,
        5_000,
        'the first request in flight',
      );

      const closing = f.sidecar.close(5_000);
      await waitFor(() => refusesConnections(port), 5_000, 'the listener to close');
      // Pipelined on the open connection, after the close began.
      socket.write(request);
      await ended;
      await closing;

      const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));
      expect(statuses).toEqual([200, 503]);
      expect(received).toContain('"statusCode":503');
    },
  );
});
