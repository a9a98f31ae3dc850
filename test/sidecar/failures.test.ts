import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/common/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { metricsText, metricValue, postJson } from '../helpers.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const body = { model: MODEL, prompt: 'some prompt words', max_tokens: 3 };
const adminSet = (url: string, cfg: unknown) => postJson(`${url}/admin/config`, cfg);
const send = (fx: PdFixture, header = fx.prefillHeader) => postJson(`${fx.sidecar.url}/v1/completions`, body, { 'x-prefiller-host-port': header });
const sidecarMetric = async (fx: PdFixture, name: string, labels: Record<string, string>) => metricValue(await metricsText(fx.sidecar.url, '/sidecar/metrics'), name, labels) ?? 0;

/** A prefiller that answers 200 with the given body. */
async function fakePrefiller(answer: string): Promise<{ hostPort: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    hostPort: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits: () => hits,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe('prefill failure policy: fail (default, as upstream)', () => {
  it('relays the prefiller\'s error status and body verbatim and does not call decode', async () => {
    f = await startPd();
    await adminSet(f.prefill.url, { 'return-error': 500 });
    const r = await send(f);
    expect(r.status).toBe(500);
    expect(r.body.error.message).toBe('Simulated error set by /admin/config (code 500)');
    expect(records(f.decode)).toHaveLength(0);
  });

  it('a prefiller that cannot be reached is a 502 saying so (without its address)', async () => {
    f = await startPd();
    const port = await closedPort();
    const r = await send(f, `127.0.0.1:${port}`);
    expect(r.status).toBe(502);
    expect(r.body).toMatchObject({ object: 'error', type: 'BadGateway', code: 502 });
    expect(r.body.message).toBe('the prefiller could not be reached (ECONNREFUSED)');
    expect(records(f.decode)).toHaveLength(0);
  });

  it('retries 502/503/504 up to --prefill-max-retries on the same host, then succeeds', async () => {
    f = await startPd({ sidecar: { prefillMaxRetries: 3, prefillRetryBackoff: 5 } });
    await adminSet(f.prefill.url, { 'return-error': 503, 'return-error-count': 2 });
    const r = await send(f);
    expect(r.status).toBe(200);
    expect(records(f.prefill)).toHaveLength(3);
    expect((lastRecord(f.decode).kvTransferParams as Record<string, unknown>).remote_engine_id).toBe('prefill-0');
    expect(await sidecarMetric(f, 'pd_router_sidecar_prefill_retries_total', { connector: 'nixlv2', reason: '503' })).toBe(2);
  });

  it('gives up after the retries and relays the last error; 500 is never retried', async () => {
    f = await startPd({ sidecar: { prefillMaxRetries: 2, prefillRetryBackoff: 5 } });
    await adminSet(f.prefill.url, { 'return-error': 502 });
    expect((await send(f)).status).toBe(502);
    expect(records(f.prefill)).toHaveLength(3);
    f.prefill.engine.clearRecords();
    await adminSet(f.prefill.url, { 'return-error': 500 });
    expect((await send(f)).status).toBe(500);
    expect(records(f.prefill)).toHaveLength(1);
  });

  it('a 2xx prefill answer without kv_transfer_params is a 502 saying so, never a silent recompute or a retry', async () => {
    f = await startPd({ sidecar: { prefillMaxRetries: 3, prefillFailurePolicy: 'retry', prefillRetryBackoff: 5 } });
    const fake = await fakePrefiller('{"id":"x","choices":[]}');
    try {
      const r = await send(f, fake.hostPort);
      expect(r.status).toBe(502);
      expect(r.body.message).toContain('the prefiller answered without kv_transfer_params');
      expect(fake.hits()).toBe(1);
      expect(records(f.decode)).toHaveLength(0);
    } finally {
      await fake.close();
    }
  });

  it('a 2xx prefill answer that is not JSON is a 502 saying so', async () => {
    f = await startPd();
    const fake = await fakePrefiller('<html>oops</html>');
    try {
      const r = await send(f, fake.hostPort);
      expect(r.status).toBe(502);
      expect(r.body.message).toBe('the prefiller answered 200 with a body that is not JSON');
    } finally {
      await fake.close();
    }
  });
});

describe('prefill failure policy: retry', () => {
  it('also retries connection errors, then answers 502', async () => {
    f = await startPd({ sidecar: { prefillFailurePolicy: 'retry', prefillMaxRetries: 2, prefillRetryBackoff: 5 } });
    const port = await closedPort();
    const r = await send(f, `127.0.0.1:${port}`);
    expect(r.status).toBe(502);
    expect(await sidecarMetric(f, 'pd_router_sidecar_prefill_retries_total', { connector: 'nixlv2', reason: 'connect_error' })).toBe(2);
  });
});

describe('prefill failure policy: local', () => {
  it('falls back to local prefill on the decode vLLM, with a metric saying so', async () => {
    f = await startPd({ sidecar: { prefillFailurePolicy: 'local' } });
    await adminSet(f.prefill.url, { 'return-error': 503 });
    const r = await send(f);
    expect(r.status).toBe(200);
    const decoded = lastRecord(f.decode);
    expect(decoded.kind).toBe('aggregated');
    expect(decoded.body).toEqual(body);
    expect(await sidecarMetric(f, 'pd_router_sidecar_prefill_fallbacks_total', { reason: 'status_503' })).toBe(1);
    expect(await sidecarMetric(f, 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'fallback_local' })).toBe(1);
  });

  it('falls back when the prefiller is unreachable', async () => {
    f = await startPd({ sidecar: { prefillFailurePolicy: 'local' } });
    const r = await send(f, `127.0.0.1:${await closedPort()}`);
    expect(r.status).toBe(200);
    expect(lastRecord(f.decode).kind).toBe('aggregated');
  });

  it('relays 4xx prefill answers (the client\'s fault) instead of falling back', async () => {
    f = await startPd({ sidecar: { prefillFailurePolicy: 'local' } });
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { ...body, model: 'unknown-model' }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(404);
    expect(records(f.decode)).toHaveLength(0);
  });
});

describe('bad client input', () => {
  it('malformed JSON is a 400 in the sidecar error shape; nothing is sent upstream', async () => {
    f = await startPd();
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, '{"model": "x", ', { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(400);
    expect(r.body.object).toBe('error');
    expect(r.body.type).toBe('BadRequestError');
    expect(r.body.message).toMatch(/^invalid JSON: /);
    expect(records(f.prefill)).toHaveLength(0);
    expect(records(f.decode)).toHaveLength(0);
  });

  it('a body over --max-request-body-size is a 413', async () => {
    f = await startPd({ sidecar: { maxRequestBodySize: 2048 } });
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x'.repeat(10_000) }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(413);
    expect(r.body).toEqual({ object: 'error', message: 'request body exceeds 2048 bytes (--max-request-body-size)', type: 'RequestTooLarge', param: '', code: 413 });
  });

  it('a decoder that refuses connections gives upstream\'s 503 "decode node is not ready"', async () => {
    f = await startPd();
    await f.decode.close();
    const r = await postJson(`${f.sidecar.url}/v1/completions`, body);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({
      object: 'error',
      message: 'The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.',
      type: 'ServiceUnavailable',
      param: '',
      code: 503,
    });
    expect((await fetch(`${f.sidecar.url}/ready`)).status).toBe(503);
  });
});

/** A prefiller answering every request with `status`, `headers` and `body`. */
async function answeringPrefiller(status: number, headers: Record<string, string>, body: string) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(status, headers).end(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    hostPort: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('a prefiller that answers with a redirect', () => {
  const REDIRECT = 'the prefiller answered with a redirect (307), which a prefill does not follow';

  it.each(['nixlv2', 'shared-storage', 'sglang'] as const)('%s, policy fail: 502 saying so; the Location is not relayed, decode answers nothing', async (kvConnector) => {
    f = await startPd({ sidecar: { kvConnector } });
    const fake = await answeringPrefiller(307, { location: 'http://10.6.6.6:8000/v1/completions', 'content-type': 'text/plain' }, 'elsewhere');
    try {
      const r = await send(f, fake.hostPort);
      expect(r.status).toBe(502);
      expect(r.headers.get('location')).toBeNull();
      expect(r.body.message).toBe(kvConnector === 'sglang' ? `prefill failed: ${REDIRECT}` : REDIRECT);
      if (kvConnector !== 'sglang') expect(records(f.decode)).toHaveLength(0);
    } finally {
      await fake.close();
    }
  });

  it('policy local: served with local prefill, counted as a fallback', async () => {
    f = await startPd({ sidecar: { prefillFailurePolicy: 'local' } });
    const fake = await answeringPrefiller(302, { location: 'http://10.6.6.6:8000/' }, '');
    try {
      const r = await send(f, fake.hostPort);
      expect(r.status).toBe(200);
      expect(lastRecord(f.decode).kind).toBe('aggregated');
      expect(await sidecarMetric(f, 'pd_router_sidecar_prefill_fallbacks_total', { reason: 'bad_response' })).toBe(1);
    } finally {
      await fake.close();
    }
  });
});

describe('error answers never carry the prefiller\'s address', () => {
  /** A pino logger writing JSON lines into an array. */
  function capturingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
    const out: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        out.push(String(chunk));
        done();
      },
    });
    return { logger: createLogger({ level: 'info', component: 'sidecar', destination: stream }), lines: () => out.flatMap((line) => line.split('\n').filter(Boolean).map((text) => JSON.parse(text))) };
  }

  it('for every kind of prefill failure: the client gets the reason, the log line the address with the request id', async () => {
    const log = capturingLogger();
    f = await startPd({ sidecar: { prefillTimeout: 300 }, logger: log.logger });
    const hanging = http.createServer(() => undefined);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const fakes = [
      await answeringPrefiller(200, { 'content-type': 'application/json' }, '{"choices":[]}'),
      await answeringPrefiller(200, { 'content-type': 'text/html' }, '<html>'),
      await answeringPrefiller(301, { location: 'http://10.6.6.6/' }, ''),
    ];
    try {
      const targets = [`127.0.0.1:${await closedPort()}`, `127.0.0.1:${(hanging.address() as AddressInfo).port}`, ...fakes.map((item) => item.hostPort)];
      for (const [i, target] of targets.entries()) {
        const rid = `addr-${i}`;
        const r = await postJson(`${f.sidecar.url}/v1/completions`, body, { 'x-prefiller-host-port': target, 'x-request-id': rid });
        expect(r.status).toBeGreaterThanOrEqual(502);
        const port = target.split(':')[1]!;
        expect(r.text).not.toContain(port);
        expect(r.text).not.toContain('127.0.0.1');
        const line = log.lines().find((line) => line.reqId === rid && line.prefiller === target);
        expect(line, `a log line for ${rid} naming ${target}`).toBeDefined();
      }
    } finally {
      hanging.closeAllConnections();
      await new Promise((resolve) => hanging.close(resolve));
      await Promise.all(fakes.map((item) => item.close()));
    }
  });

  it('an invalid x-prefiller-host-port value is not echoed back (it can be an internal address)', async () => {
    const log = capturingLogger();
    f = await startPd({ logger: log.logger });
    const r = await postJson(`${f.sidecar.url}/v1/completions`, body, { 'x-prefiller-host-port': '10.1.2.3:99999', 'x-request-id': 'bad-target' });
    expect(r.status).toBe(400);
    expect(r.text).not.toContain('10.1.2.3');
    expect(log.lines().find((line) => line.reqId === 'bad-target')?.value).toBe('10.1.2.3:99999');
  });
});

describe('prefill targets the allowlist and the connection could read differently', () => {
  it.each(['[127.0.0.1]', 'user@127.0.0.1', '127.0.0.1%2e'])('%s:port is an invalid target (400), even when 127.0.0.1:port is allowed; nothing is contacted', async (host) => {
    f = await startPd({ sidecar: (params) => ({ enableSsrfProtection: true, ssrfAllowlist: [`127.0.0.1:${params.prefill}`] }) });
    const r = await send(f, `${host}:${f.prefill.port}`);
    expect(r.status).toBe(400);
    expect(r.body.message).toBe('invalid x-prefiller-host-port header: expected host:port');
    expect(records(f.prefill)).toHaveLength(0);
    expect(records(f.decode)).toHaveLength(0);
  });

  it('a bracketed IPv6 address is still a target', async () => {
    f = await startPd({ sidecar: { prefillFailurePolicy: 'fail' } });
    const r = await send(f, `[::1]:${await closedPort()}`);
    // Nothing listens on ::1 here: a connection attempt (502), not an invalid target (400).
    expect(r.status).toBe(502);
  });
});
