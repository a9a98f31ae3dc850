/** drainOrClose: waiting for a slow client leaves no listeners behind. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { drainOrClose } from '../../src/common/index.js';

describe('drainOrClose', () => {
  it('resolves on drain and on close, removing both listeners each time', async () => {
    const listenerCounts: Array<[number, number]> = [];
    let waits = 0;
    const server = http.createServer(async (_req, res) => {
      const base: [number, number] = [res.listenerCount('drain'), res.listenerCount('close')];
      const chunk = Buffer.alloc(256 * 1024, 'x');
      for (let i = 0; i < 64; i++) {
        if (!res.write(chunk)) {
          waits++;
          await drainOrClose(res);
          listenerCounts.push([res.listenerCount('drain') - base[0], res.listenerCount('close') - base[1]]);
        }
      }
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { signal: AbortSignal.timeout(10_000) });
      expect((await res.arrayBuffer()).byteLength).toBe(64 * 256 * 1024);
      expect(waits).toBeGreaterThan(0);
      expect(listenerCounts.every(([d, c]) => d === 0 && c === 0)).toBe(true);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('resolves when the client goes away', async () => {
    let resolved!: (listeners: [number, number]) => void;
    const done = new Promise<[number, number]>((resolve) => (resolved = resolve));
    const server = http.createServer(async (_req, res) => {
      const chunk = Buffer.alloc(1024 * 1024, 'x');
      while (res.write(chunk));
      const closeListenersBefore = res.listenerCount('close');
      req.destroy();
      await drainOrClose(res);
      // Asserted in the test body: the 'drain' and 'close' listeners drainOrClose added are gone.
      resolved([res.listenerCount('drain'), res.listenerCount('close') - closeListenersBefore]);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const req = http.request({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, path: '/' });
    req.on('response', (req) => req.pause());
    req.on('error', () => undefined);
    req.end();
    try {
      const [drainListeners, closeListenersAdded] = await Promise.race([
        done,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('drainOrClose did not resolve on close')), 10_000)),
      ]);
      expect(drainListeners).toBe(0);
      expect(closeListenersAdded).toBeLessThanOrEqual(0);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
