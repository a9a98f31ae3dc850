/**
 * The client's request body on every path (P/D, local, passthrough): read within --request-body-timeout and
 * --max-request-body-size before any upstream leg, and never left half read on a keep-alive connection.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { sidecarConfig, startSidecar } from '../../src/sidecar/index.js';
import { MODEL, records, startPd, type PdFixture } from './fixture.js';
import { RawConnection, requestHead } from './raw-http.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const MiB = 1024 * 1024;
const small = JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 1 });

/** Resolves true when the connection closes within `ms`, false otherwise (the bound of a test that checks a close). */
function closesWithin(connection: RawConnection, ms: number): Promise<boolean> {
  return Promise.race([connection.closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
}

describe('request body deadline on every path', () => {
  const paths: Array<[string, string, (fx: PdFixture) => Record<string, string>]> = [
    ['P/D', '/v1/completions', (fx) => ({ 'x-prefiller-host-port': fx.prefillHeader })],
    ['local', '/v1/completions', () => ({})],
    ['passthrough', '/admin/config', () => ({})],
  ];
  it.each(paths)('%s: a stalled upload gets 408 after --request-body-timeout and the connection is closed', async (_name, path, headers) => {
    f = await startPd({ sidecar: { requestBodyTimeout: 300 } });
    const c = await RawConnection.open(f.sidecar.url);
    try {
      await c.write(requestHead('POST', path, { 'content-type': 'application/json', 'content-length': 1000, ...headers(f) }));
      await c.write('{"model":"'); // and nothing more
      const r = await c.next(10_000);
      expect(r.status).toBe(408);
      expect(JSON.parse(r.body)).toEqual({
        object: 'error',
        message: 'request body not received within 300ms (--request-body-timeout)',
        type: 'RequestTimeout',
        param: '',
        code: 408,
      });
      expect(r.headers.connection).toBe('close');
      expect(await closesWithin(c, 5_000)).toBe(true);
      expect(records(f.decode)).toHaveLength(0);
      expect(records(f.prefill)).toHaveLength(0);
    } finally {
      c.destroy();
    }
  });
});

describe('a body over the model server\'s limit', () => {
  it.each([
    ['local', '/v1/completions'],
    ['passthrough', '/admin/config'],
  ])('%s: the model server\'s 413 is relayed every time, and the keep-alive connection serves the next request', async (_name, path) => {
    // The decoder takes 1 MiB; the sidecar reads up to its default 32 MiB.
    f = await startPd({ decode: { maxRequestBodySize: MiB } });
    const big = JSON.stringify({ model: MODEL, prompt: 'word '.repeat((3 * MiB) / 5) });
    const c = await RawConnection.open(f.sidecar.url);
    try {
      for (let i = 0; i < 5; i++) {
        // Not awaited: while the sidecar does not read, the write cannot complete.
        void c.write(requestHead('POST', path, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) }) + big);
        const refused = await c.next(10_000);
        expect(refused.status).toBe(413);
        expect(JSON.parse(refused.body).error.message).toBe(`request body exceeds ${MiB} bytes`);
        // /admin/config with an empty object changes nothing and answers the current settings.
        const next = path === '/admin/config' ? '{}' : small;
        await c.write(requestHead('POST', path, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(next) }) + next);
        expect((await c.next(10_000)).status).toBe(200);
      }
    } finally {
      c.destroy();
    }
  }, 60_000);
});

describe('a model server that fails mid-upload', () => {
  it.each([
    ['local', '/v1/completions'],
    ['passthrough', '/v1/embeddings'],
  ])('%s: the client gets an answer and its keep-alive connection serves the next request', async (_name, path) => {
    // A model server that drops the connection after 64 KiB of a body (the simulator cannot fail this way).
    const model = http.createServer((req, res) => {
      let got = 0;
      req.on('data', (chunk: Buffer) => {
        got += chunk.length;
        if (got > 64 * 1024) req.socket.destroy();
      });
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    });
    await new Promise<void>((resolve) => model.listen(0, '127.0.0.1', resolve));
    const sidecar = await startSidecar(
      sidecarConfig({ host: '127.0.0.1', port: 0, secureProxy: false, modelServerHost: '127.0.0.1', modelServerPort: (model.address() as AddressInfo).port }),
    );
    const c = await RawConnection.open(sidecar.url);
    try {
      const big = JSON.stringify({ model: MODEL, input: 'word '.repeat((4 * MiB) / 5) });
      void c.write(requestHead('POST', path, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) }) + big);
      expect((await c.next(10_000)).status).toBe(502);
      // Not awaited: with the first body left unread, this write would never complete.
      void c.write(requestHead('POST', path, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(small) }) + small);
      expect((await c.next(10_000)).status).toBe(200);
    } finally {
      c.destroy();
      await sidecar.close();
      model.closeAllConnections();
      await new Promise((resolve) => model.close(resolve));
    }
  }, 30_000);
});

describe('bodies the sidecar answers without reading', () => {
  it('a route that ignores its body (GET /sidecar/metrics) with a declared body over the limit: answered, then the connection closes', async () => {
    f = await startPd({ sidecar: { maxRequestBodySize: MiB } });
    const c = await RawConnection.open(f.sidecar.url);
    try {
      await c.write(requestHead('GET', '/sidecar/metrics', { 'content-length': 10 * MiB }));
      const r = await c.next(10_000);
      expect(r.status).toBe(200);
      // Not kept open waiting for 10 MiB that the sidecar would only throw away.
      expect(await closesWithin(c, 5_000)).toBe(true);
    } finally {
      c.destroy();
    }
  });

  it('a route that ignores its body, with a small body sent: the body is drained and the connection reused', async () => {
    f = await startPd();
    const c = await RawConnection.open(f.sidecar.url);
    try {
      await c.write(requestHead('GET', '/health', { 'content-length': 5 }) + 'hello');
      expect((await c.next()).status).toBe(200);
      await c.write(requestHead('GET', '/health', {}));
      expect((await c.next()).status).toBe(200);
    } finally {
      c.destroy();
    }
  });

  it('a P/D request refused before its body (invalid prefill target) with a declared body over the limit: answered at once, Connection: close', async () => {
    f = await startPd({ sidecar: { maxRequestBodySize: MiB } });
    const c = await RawConnection.open(f.sidecar.url);
    try {
      await c.write(requestHead('POST', '/v1/completions', { 'content-type': 'application/json', 'content-length': 10 * MiB, 'x-prefiller-host-port': 'no-port' }));
      const r = await c.next(10_000);
      expect(r.status).toBe(400);
      expect(r.headers.connection).toBe('close');
      expect(await closesWithin(c, 5_000)).toBe(true);
    } finally {
      c.destroy();
    }
  });
});
