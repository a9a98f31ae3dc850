/**
 * `Expect: 100-continue` (curl sends it for bodies over 1 MiB): the sidecar answers "100 Continue" when it is about to
 * read the body, or the final status without it when the request is refused first.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

interface ExpectResult {
  status: number;
  body: string;
  /** "100 Continue" arrived (before the final answer). */
  continued: boolean;
  /** The body was sent (only after "100 Continue"). */
  bodySent: boolean;
  connection?: string;
}

/** A real client: sends the head with Expect: 100-continue and the body only once "100 Continue" arrives. */
function postExpecting(url: string, body: string, headers: Record<string, string> = {}): Promise<ExpectResult> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    let continued = false;
    let bodySent = false;
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent: false,
        timeout: 10_000,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue', ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (config: string) => (text += config));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: text, continued, bodySent, connection: res.headers.connection });
          if (!bodySent) req.destroy();
        });
      },
    );
    req.on('continue', () => {
      continued = true;
      bodySent = true;
      req.end(body);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10s')));
    req.on('error', (err) => {
      if (!bodySent) reject(err);
    });
    // The head goes out now; the body waits for "100 Continue".
    req.flushHeaders();
  });
}

describe('Expect: 100-continue', () => {
  const body = JSON.stringify({ model: MODEL, prompt: 'expect continue', max_tokens: 2 });

  it.each([
    ['P/D', '/v1/completions', true],
    ['local', '/v1/completions', false],
  ])('%s: 100 Continue, then the body, then the answer', async (_name, path, pd) => {
    f = await startPd();
    const r = await postExpecting(`${f.sidecar.url}${path}`, body, pd ? { 'x-prefiller-host-port': f.prefillHeader } : {});
    expect(r.continued).toBe(true);
    expect(r.status).toBe(200);
    const decoded = lastRecord(f.decode);
    expect(decoded.body).toEqual(pd ? { ...JSON.parse(body), kv_transfer_params: expect.any(Object) } : JSON.parse(body));
    expect(decoded.headers.expect).toBeUndefined();
    expect(records(f.prefill)).toHaveLength(pd ? 1 : 0);
  });

  it('passthrough: 100 Continue, then the body, then the answer', async () => {
    f = await startPd();
    const r = await postExpecting(`${f.sidecar.url}/admin/config`, '{}');
    expect(r.continued).toBe(true);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toHaveProperty('latencies');
  });

  it('a declared Content-Length over --max-request-body-size: 413 at once, no 100 Continue, no upload, connection closed', async () => {
    f = await startPd({ sidecar: { maxRequestBodySize: 4096 } });
    const r = await postExpecting(`${f.sidecar.url}/v1/completions`, JSON.stringify({ model: MODEL, prompt: 'x'.repeat(10_000) }));
    expect(r.continued).toBe(false);
    expect(r.bodySent).toBe(false);
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body)).toEqual({
      object: 'error',
      message: 'request body exceeds 4096 bytes (--max-request-body-size)',
      type: 'RequestTooLarge',
      param: '',
      code: 413,
    });
    expect(r.connection).toBe('close');
    expect(records(f.decode)).toHaveLength(0);
  });

  it('a prefill target refused by SSRF protection: 403 without 100 Continue or upload', async () => {
    f = await startPd({ sidecar: { enableSsrfProtection: true, ssrfAllowlist: ['10.0.0.1:8000'] } });
    const r = await postExpecting(`${f.sidecar.url}/v1/completions`, body, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.continued).toBe(false);
    expect(r.bodySent).toBe(false);
    expect(r.status).toBe(403);
    expect(r.connection).toBe('close');
    expect(records(f.prefill)).toHaveLength(0);
  });
});
