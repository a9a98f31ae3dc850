/**
 * client-relay.ts on its own: a scripted upstream on loopback, a front server whose handler opens an UpstreamLeg to it
 * and relays the answer with relayToClient, and a real HTTP client. Each case pins one rule: what is rewritten, what
 * is passed byte for byte, when Content-Length is set, and what the client sees when the upstream fails after the
 * answer started.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cancellation, UpstreamLeg, silentLogger } from '../../src/common/index.js';
import { relayToClient, type RelayOutcome } from '../../src/sidecar/client-relay.js';
import { SidecarMetrics } from '../../src/sidecar/metrics.js';

/** What the upstream does for one request. */
type Script = (res: ServerResponse) => void;
/** How the front relays: the relay options that vary per case. */
interface Relay {
  rewriteCached?: number;
  maxRewriteBody?: number;
  prefix?: Buffer[];
}

let upstream: Server;
let front: Server;
let upstreamOrigin: string;
let frontPort: number;
let script: Script = (res) => res.end();
let relay: Relay = {};
let metrics = new SidecarMetrics();
/** Resolves with the relay's outcome for the request in flight. */
let outcome: Promise<RelayOutcome> = Promise.resolve({ kind: 'done' });
const agent = new Agent({ connections: 4 });

beforeAll(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    script(res);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamOrigin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  front = createServer((req, res) => {
    req.resume();
    outcome = (async () => {
      const leg = await UpstreamLeg.open({
        agent,
        origin: upstreamOrigin,
        method: 'POST',
        path: '/v1/completions',
        headers: {},
        body: '{}',
        clientSignal: new Cancellation(),
        firstByteTimeoutMs: 10_000,
        idleTimeoutMs: 10_000,
        label: 'decode',
      });
      const relayed = await relayToClient(leg, {
        res,
        maxRewriteBody: 1024 * 1024,
        metrics,
        logger: silentLogger,
        ...relay,
      });
      // As decode.ts does: a failure before the answer started is the caller's to answer.
      if (relayed.kind === 'failed' && !relayed.headersSent) res.writeHead(502).end();
      return relayed;
    })();
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  frontPort = (front.address() as AddressInfo).port;
});

afterAll(async () => {
  upstream.closeAllConnections();
  front.closeAllConnections();
  await Promise.all([
    new Promise((resolve) => upstream.close(resolve)),
    new Promise((resolve) => front.close(resolve)),
  ]);
  await agent.close();
});

interface Received {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
  /** The connection broke before the answer was complete. */
  cut: boolean;
}

/** One request through the front; resolves when the answer ends or the connection breaks. */
function call(upstreamScript: Script, relayOptions: Relay = {}): Promise<Received> {
  script = upstreamScript;
  relay = relayOptions;
  metrics = new SidecarMetrics();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: frontPort, method: 'POST', path: '/', agent: false }, (res) => {
      const parts: Buffer[] = [];
      const done = (cut: boolean) =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString(), cut });
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => done(false));
      res.on('aborted', () => done(true));
      res.on('error', () => done(true));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30s')));
    req.on('error', reject);
    req.end();
  });
}

const usageJson = (cached: number) =>
  JSON.stringify({
    id: 'x',
    choices: [{ text: 'hi' }],
    usage: { prompt_tokens: 100, completion_tokens: 1, prompt_tokens_details: { cached_tokens: cached } },
  });

describe('relayToClient', () => {
  it('without a rewrite: status, end-to-end headers and body pass unchanged; hop-by-hop headers do not', async () => {
    const received = await call((res) => {
      res.writeHead(201, {
        'content-type': 'application/json',
        'x-model-server': 'vllm',
        'keep-alive': 'timeout=77',
        'content-length': 11,
      });
      res.end('{"ok":true}');
    });
    expect(received).toMatchObject({ status: 201, body: '{"ok":true}', cut: false });
    expect(received.headers['x-model-server']).toBe('vllm');
    expect(received.headers['content-length']).toBe('11');
    expect(received.headers['keep-alive']).not.toBe('timeout=77');
    expect(await outcome).toEqual({ kind: 'done' });
  });

  it('a JSON answer is rewritten whole, with the prefiller cached_tokens and a Content-Length that matches', async () => {
    const received = await call(
      (res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const body = usageJson(95);
        // Split mid-number: the rewrite waits for the whole body.
        res.write(body.slice(0, body.length - 8));
        res.end(body.slice(body.length - 8));
      },
      { rewriteCached: 7 },
    );
    expect(JSON.parse(received.body).usage.prompt_tokens_details.cached_tokens).toBe(7);
    expect(received.headers['content-length']).toBe(String(Buffer.byteLength(received.body)));
  });

  it('a JSON answer over the rewrite bound is relayed unchanged and counted', async () => {
    const body = usageJson(95);
    const received = await call(
      (res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      },
      { rewriteCached: 7, maxRewriteBody: 16 },
    );
    expect(received.body).toBe(body);
    expect(received.headers['content-length']).toBeUndefined();
    expect((await metrics.rewriteSkipped.get()).values).toEqual([
      expect.objectContaining({ labels: { reason: 'body_too_large' }, value: 1 }),
    ]);
  });

  it('an error status is never rewritten', async () => {
    const body = usageJson(95);
    const received = await call(
      (res) => {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(body);
      },
      { rewriteCached: 7 },
    );
    expect(received).toMatchObject({ status: 400, body });
  });

  it('SSE: each data line with usage is rewritten however the upstream splits it; the rest passes byte for byte', async () => {
    const events = [
      'data: {"choices":[{"text":"a"}],"usage":null}\n\n',
      `data: ${usageJson(95)}\n\n`,
      'data: [DONE]\n\n',
    ];
    const stream = events.join('');
    const received = await call(
      (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        // Chunks that cut lines anywhere, the usage line included.
        for (let at = 0; at < stream.length; at += 13) res.write(stream.slice(at, at + 13));
        res.end();
      },
      { rewriteCached: 7 },
    );
    const lines = received.body.split('\n\n').filter((line) => line.length > 0);
    expect(lines[0]).toBe(events[0].trimEnd());
    expect(JSON.parse(lines[1].slice('data: '.length)).usage.prompt_tokens_details.cached_tokens).toBe(7);
    expect(lines[2]).toBe('data: [DONE]');
    expect(received.headers['content-length']).toBeUndefined();
  });

  it('chunks a probe already read are put back in front of the answer', async () => {
    const received = await call(
      (res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('world');
      },
      { prefix: [Buffer.from('hello '), Buffer.from('big ')] },
    );
    expect(received.body).toBe('hello big world');
  });

  it('an SSE stream whose upstream fails after it started ends with an SSE error event, not a cut', async () => {
    const received = await call((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"choices":[{"text":"a"}]}\n\n', () => res.socket?.destroy());
    });
    expect(received.status).toBe(200);
    expect(received.body).toContain('data: {"choices":[{"text":"a"}]}\n\n');
    const error = received.body.split('\n\n').find((line) => line.includes('"error"'));
    expect(JSON.parse(error!.slice('data: '.length)).error).toMatchObject({ code: 502, type: 'BadGateway' });
    expect(received.body.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(await outcome).toMatchObject({ kind: 'failed', headersSent: true });
  });

  it('a JSON answer whose upstream fails after it started cuts the client connection', async () => {
    const received = await call((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"partial":', () => res.socket?.destroy());
    });
    expect(received.cut).toBe(true);
    expect(await outcome).toMatchObject({ kind: 'failed', headersSent: true });
  });

  it('an upstream that fails before its first body byte leaves the status to the caller', async () => {
    const received = await call((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      res.socket?.destroy();
    });
    expect(received.status).toBe(502);
    expect(await outcome).toMatchObject({ kind: 'failed', headersSent: false });
  });
});
