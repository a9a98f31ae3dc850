/**
 * prefill-client.ts on its own, against a scripted prefiller on loopback: how each answer is classified (ok,
 * http_error, connect_error, timeout, bad_response, aborted), which ones are retried and how often, and that a 2xx
 * is never retried. The whole-sidecar tests (failures.test.ts) cover the same through a connector; these name the
 * rule each case follows.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Cancellation } from '../../src/common/index.js';
import { sendPrefill, type PrefillRequest } from '../../src/sidecar/prefill-client.js';

/** One scripted answer per attempt, in order; the last one repeats. */
type Answer = (req: IncomingMessage, res: ServerResponse) => void;

const json =
  (status: number, body: unknown): Answer =>
  (_req, res) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
const raw =
  (status: number, text: string, headers: Record<string, string> = {}): Answer =>
  (_req, res) => {
    res.writeHead(status, { 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };
/** Never answers: the attempt's deadline ends it. The socket is closed when the test server closes. */
const silent: Answer = () => undefined;
const KV_ANSWER = {
  choices: [],
  kv_transfer_params: { do_remote_prefill: true, remote_engine_id: 'e' },
  usage: { prompt_tokens_details: { cached_tokens: 7 } },
};

let server: Server;
let origin: string;
let script: Answer[] = [];
let attempts = 0;
const agent = new Agent({ connections: 8 });

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = script[Math.min(attempts, script.length - 1)];
      attempts++;
      answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await agent.close();
});

beforeEach(() => {
  attempts = 0;
});

function request(overrides: Partial<PrefillRequest> = {}): PrefillRequest {
  return {
    agent,
    origin,
    path: '/v1/completions',
    headers: { 'content-type': 'application/json' },
    body: '{}',
    clientSignal: new Cancellation(),
    timeoutMs: 10_000,
    maxResponseBytes: 64 * 1024,
    maxJsonDepth: 32,
    maxRetries: 2,
    backoffMs: 1,
    retryTransportErrors: false,
    expect: 'kv-params',
    ...overrides,
  };
}

describe('sendPrefill classifies each answer', () => {
  it('a 2xx JSON object with kv_transfer_params is ok, with the parsed answer', async () => {
    script = [json(200, KV_ANSWER)];
    const outcome = await sendPrefill(request());
    expect(outcome).toEqual({ kind: 'ok', json: KV_ANSWER, attempts: 1 });
  });

  it('expect any: any 2xx is ok, whatever its body (SGLang, shared-storage)', async () => {
    script = [raw(200, 'data: {}\n\ndata: [DONE]\n\n', { 'content-type': 'text/event-stream' })];
    expect(await sendPrefill(request({ expect: 'any' }))).toEqual({ kind: 'ok', json: {}, attempts: 1 });
  });

  it('a 4xx is http_error with the prefiller status, headers and body, not retried', async () => {
    script = [raw(400, '{"error":"bad"}', { 'x-prefiller-own': 'yes' })];
    const outcome = await sendPrefill(request());
    expect(outcome.kind).toBe('http_error');
    if (outcome.kind !== 'http_error') return;
    expect(outcome.status).toBe(400);
    expect(outcome.body.toString()).toBe('{"error":"bad"}');
    expect(outcome.headers['x-prefiller-own']).toBe('yes');
    expect(outcome.attempts).toBe(1);
    expect(attempts).toBe(1);
  });

  it('a redirect is bad_response: a prefill never follows or relays one', async () => {
    script = [raw(302, '', { location: 'http://elsewhere/' })];
    const outcome = await sendPrefill(request());
    expect(outcome).toMatchObject({ kind: 'bad_response', attempts: 1 });
    expect(outcome.kind === 'bad_response' && outcome.message).toMatch(/redirect \(302\)/);
  });

  it('a 2xx that is not JSON, not an object, too deep, or without kv_transfer_params is bad_response', async () => {
    const cases: Array<[Answer, RegExp]> = [
      [raw(200, 'not json'), /not JSON/],
      [json(200, [1, 2]), /JSON array, not an object/],
      [json(200, { a: { b: { c: {} } } }), /nested deeper than 2 levels/],
      [json(200, { choices: [] }), /without kv_transfer_params/],
    ];
    for (const [answer, message] of cases) {
      script = [answer];
      attempts = 0;
      const outcome = await sendPrefill(request({ maxJsonDepth: 2 }));
      expect(outcome.kind).toBe('bad_response');
      expect(outcome.kind === 'bad_response' && outcome.message).toMatch(message);
      expect(attempts).toBe(1);
    }
  });

  it('an answer larger than maxResponseBytes is bad_response', async () => {
    script = [raw(200, 'x'.repeat(4096))];
    const outcome = await sendPrefill(request({ maxResponseBytes: 1024 }));
    expect(outcome.kind).toBe('bad_response');
  });

  it('a refused connection is connect_error with the code; the message never names the address', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const outcome = await sendPrefill(request({ origin: `http://127.0.0.1:${port}`, maxRetries: 0 }));
    expect(outcome).toMatchObject({ kind: 'connect_error', code: 'ECONNREFUSED', attempts: 1 });
    expect(outcome.kind === 'connect_error' && outcome.message).not.toContain('127.0.0.1');
    expect(outcome.kind === 'connect_error' && outcome.detail).toContain('ECONNREFUSED');
  });

  it('no answer within the deadline is timeout', async () => {
    script = [silent];
    const outcome = await sendPrefill(request({ timeoutMs: 200, maxRetries: 0 }));
    expect(outcome).toEqual({ kind: 'timeout', message: 'prefill timed out after 200ms', attempts: 1 });
  });

  it('a client that left is aborted, before or during the attempt', async () => {
    const gone = new Cancellation();
    gone.abort();
    script = [json(200, KV_ANSWER)];
    expect(await sendPrefill(request({ clientSignal: gone }))).toEqual({ kind: 'aborted' });

    const leaving = new Cancellation();
    script = [silent];
    const pending = sendPrefill(request({ clientSignal: leaving }));
    await new Promise<void>((resolve) => {
      const check = () => (attempts > 0 ? resolve() : setImmediate(check));
      check();
    });
    leaving.abort();
    expect(await pending).toEqual({ kind: 'aborted' });
  });
});

describe('sendPrefill retries', () => {
  it('502, 503 and 504 are retried up to maxRetries, then returned with the attempt count', async () => {
    script = [raw(503, 'busy'), raw(502, 'bad gateway'), raw(504, 'timeout')];
    const retries: Array<[string, number]> = [];
    const outcome = await sendPrefill(
      request({ maxRetries: 2, onRetry: (reason, attempt) => retries.push([reason, attempt]) }),
    );
    expect(outcome).toMatchObject({ kind: 'http_error', status: 504, attempts: 3 });
    expect(retries).toEqual([
      ['503', 1],
      ['502', 2],
    ]);
    expect(attempts).toBe(3);
  });

  it('a retried prefill that then succeeds is ok with its attempt count', async () => {
    script = [raw(503, 'busy'), json(200, KV_ANSWER)];
    expect(await sendPrefill(request())).toMatchObject({ kind: 'ok', attempts: 2 });
  });

  it('500 and other statuses are not retried', async () => {
    script = [raw(500, 'boom'), json(200, KV_ANSWER)];
    expect(await sendPrefill(request())).toMatchObject({ kind: 'http_error', status: 500, attempts: 1 });
    expect(attempts).toBe(1);
  });

  it('a 2xx is never retried, even a malformed one: the prefiller may hold KV blocks for it', async () => {
    script = [raw(200, 'not json'), json(200, KV_ANSWER)];
    expect(await sendPrefill(request())).toMatchObject({ kind: 'bad_response', attempts: 1 });
    expect(attempts).toBe(1);
  });

  it('timeouts and connection errors are retried only with retryTransportErrors (policy retry or local)', async () => {
    script = [silent, json(200, KV_ANSWER)];
    expect(await sendPrefill(request({ timeoutMs: 200, retryTransportErrors: false }))).toMatchObject({
      kind: 'timeout',
      attempts: 1,
    });
    attempts = 0;
    const reasons: string[] = [];
    const outcome = await sendPrefill(
      request({ timeoutMs: 200, retryTransportErrors: true, onRetry: (reason) => reasons.push(reason) }),
    );
    expect(outcome).toMatchObject({ kind: 'ok', attempts: 2 });
    expect(reasons).toEqual(['timeout']);
  });

  it('a client that leaves during the backoff ends the retries as aborted', async () => {
    script = [raw(503, 'busy')];
    const leaving = new Cancellation();
    const outcome = sendPrefill(request({ backoffMs: 60_000, clientSignal: leaving, onRetry: () => leaving.abort() }));
    expect(await outcome).toEqual({ kind: 'aborted' });
    expect(attempts).toBe(1);
  });
});
