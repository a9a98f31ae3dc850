/**
 * The sidecar's HTTP surface off the inference routes: its own routes and the answers fastify gave when it served them
 * (the sidecar now serves them on node:http, server.ts; these are the bytes it must keep). Raw requests, so that
 * what goes on the wire (methods Node's fetch refuses, malformed targets, oversized headers) is the test's choice.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePortRange } from '../helpers.js';
import { startPd, type PdFixture } from './fixture.js';
import { RawConnection, type RawResponse } from './raw-http.js';

let f: PdFixture;
beforeAll(async () => {
  f = await startPd();
});
afterAll(() => f.close());

async function send(request: string, baseUrl = f.sidecar.url): Promise<RawResponse> {
  const conn = await RawConnection.open(baseUrl);
  try {
    await conn.write(request);
    return await conn.next(60_000);
  } finally {
    conn.destroy();
  }
}

/** Everything the server sends for one request with `connection: close` (for HEAD, whose head announces a length). */
function sendAndReadAll(request: string): Promise<string> {
  const u = new URL(f.sidecar.url);
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = net.connect(Number(u.port), u.hostname, () => socket.write(request));
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.once('close', () => resolve(received));
    socket.once('error', reject);
  });
}

const get = (target: string, method = 'GET') => send(`${method} ${target} HTTP/1.1\r\nhost: x\r\n\r\n`);
const withBody = (method: string, target: string, headers: string) =>
  send(`${method} ${target} HTTP/1.1\r\nhost: x\r\n${headers}content-length: 2\r\n\r\n{}`);

describe('sidecar HTTP surface (off the inference routes)', () => {
  it('GET and HEAD /health: 200, empty; GET and HEAD /ready: the same JSON head', async () => {
    for (const method of ['GET', 'HEAD']) {
      const health = await get('/health', method);
      expect(health.status).toBe(200);
      expect(health.headers['content-length']).toBe('0');
    }
    const ready = await get('/ready');
    expect(ready.status).toBe(200);
    expect(ready.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready', decoder: 'ok', ssrfAllowlist: 'off' });
    const head = await sendAndReadAll('HEAD /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head).toContain('content-type: application/json; charset=utf-8\r\n');
    expect(head).toContain(`content-length: ${Buffer.byteLength(ready.body)}\r\n`);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
  });

  it("matches the sidecar's routes as fastify's router did: query, fragment, percent-decoding, absolute form", async () => {
    for (const target of ['/health?x=1', '/health#frag', '/%68ealth', 'http://x/health']) {
      const r = await get(target);
      expect(r.status, target).toBe(200);
      expect(r.headers['content-length'], target).toBe('0');
    }
    // Not the sidecar's: relayed, so the decoder's answer (our simulator's 404 for a path it does not serve).
    for (const target of ['/health/', '//health', '/HEALTH', '/health;a=b', '/sidecar%2Fmetrics']) {
      const r = await get(target);
      expect(r.status, target).toBe(404);
      expect(r.body, target).toContain('is not served by this simulator');
    }
  });

  it('answers a method fastify did not route with its 404, and QUERY without a Content-Type with its 400', async () => {
    const propfind = await get('/x', 'PROPFIND');
    expect(propfind.status).toBe(404);
    expect(propfind.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(propfind.body).toBe('{"message":"Route PROPFIND:/x not found","error":"Not Found","statusCode":404}');
    const query = await withBody('QUERY', '/x', '');
    expect(query.status).toBe(400);
    expect(query.body).toBe(
      `{"statusCode":400,"code":"FST_ERR_ROUTE_MISSING_CONTENT_TYPE","error":"Bad Request","message":"Method 'QUERY' must provide a 'Content-Type' header."}`,
    );
  });

  it('answers a body-carrying method whose Content-Type is no media type with 415; relays a valid one', async () => {
    const expected =
      '{"statusCode":415,"code":"FST_ERR_CTP_INVALID_MEDIA_TYPE","error":"Unsupported Media Type","message":"Unsupported Media Type"}';
    for (const [method, contentType] of [
      ['POST', 'invalid'],
      ['POST', ''],
      ['PUT', 'text'],
      ['DELETE', 'a b/c'],
      ['OPTIONS', 'invalid'],
    ]) {
      const r = await withBody(method, '/admin', `content-type: ${contentType}\r\n`);
      expect(r.status, `${method} ${contentType}`).toBe(415);
      expect(r.body).toBe(expected);
    }
    // A valid media type (parameters not checked), no Content-Type, or a body-less method: relayed to the decoder.
    for (const [method, headers] of [
      ['POST', 'content-type: a/b;;\r\n'],
      ['POST', ''],
      ['GET', 'content-type: invalid\r\n'],
    ]) {
      const r = await withBody(method, '/admin', headers);
      expect(r.status, `${method} ${headers}`).toBe(404);
      expect(r.body).toContain('is not served by this simulator');
    }
  });

  it('answers a malformed percent-encoding in the path with 400 and the path in the message', async () => {
    const r = await get('/health%zz?q=1');
    expect(r.status).toBe(400);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.body).toBe(
      `{"error":"Bad Request","code":"FST_ERR_BAD_URL","message":"'/health%zz?q=1' is not a valid url component","statusCode":400}`,
    );
    // In the query only: not the router's concern, relayed.
    expect((await get('/v1/models?q=%zz')).status).toBe(200);
  });

  it('answers an unparsable request with 400 and oversized headers with 431, then closes', async () => {
    const garbage = await send('GARBAGE\r\n\r\n');
    expect(garbage.status).toBe(400);
    expect(garbage.body).toBe('{"error":"Bad Request","message":"Client Error","statusCode":400}');
    const big = await send(`GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(big.status).toBe(431);
    expect(big.body).toBe(
      '{"error":"Request Header Fields Too Large","message":"Exceeded maximum allowed HTTP header size","statusCode":431}',
    );
  });

  it('--metrics-port serves the sidecar metrics at /metrics on a port of its own (fastify, loaded for it)', async () => {
    const port = await freePortRange(1);
    const g = await startPd({ sidecar: { metricsPort: port } });
    try {
      expect(g.sidecar.metricsPort).toBe(port);
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('pd_router_sidecar_');
      const other = await fetch(`http://127.0.0.1:${port}/ready`);
      expect(other.status).toBe(404);
      expect(await other.json()).toEqual({
        message: 'Route GET:/ready not found',
        error: 'Not Found',
        statusCode: 404,
      });
    } finally {
      await g.close();
    }
  });
});
