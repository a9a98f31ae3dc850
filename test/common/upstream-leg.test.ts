/** UpstreamLeg over real HTTP on loopback: bounded queue with backpressure, deadlines, stop signals and their listeners. */
import { createHash } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { Cancellation, LegStopped, UpstreamLeg, type LegRequest, type StopSignal } from '../../src/common/index.js';
import { waitFor } from '../helpers.js';

const CHUNK = 16 * 1024;
// 32 MiB: more than loopback socket buffers hold, so a reader that stops reading must stall the server.
const CHUNKS = 2048;

let server: Server;
let origin: string;
const agent = new Agent({ connections: 4 });
/** The last /big stream: bytes handed to the socket, whether it waits for 'drain', done, and the digest of all it sent. */
let lastStream = { sent: 0, waitingForDrain: false, done: false, digest: '' };
/** The open /steps answer. */
let steps: ServerResponse | undefined;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/big') {
      const hash = createHash('sha256');
      const stream = { sent: 0, waitingForDrain: false, done: false, digest: '' };
      lastStream = stream;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let i = 0;
      const pump = () => {
        stream.waitingForDrain = false;
        while (i < CHUNKS) {
          const buf = Buffer.alloc(CHUNK, i % 251);
          hash.update(buf);
          i++;
          stream.sent += buf.length;
          if (!res.write(buf)) {
            stream.waitingForDrain = true;
            res.once('drain', pump);
            return;
          }
        }
        stream.digest = hash.digest('hex');
        stream.done = true;
        res.end();
      };
      pump();
      return;
    }
    if (req.url === '/hang') return; // never answers
    if (req.url === '/steps') {
      // One chunk now, the next when the test writes it.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first');
      steps = res;
      return;
    }
    if (req.url === '/hints') {
      // An interim 103 first, the real answer 50 ms later (so the client reads them separately).
      res.writeEarlyHints({ link: '</style.css>; rel=preload' });
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('final');
      }, 50);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await agent.close();
});

function leg(path: string, signal: StopSignal, over: Partial<LegRequest> = {}): Promise<UpstreamLeg> {
  return UpstreamLeg.open({
    agent,
    origin,
    method: 'GET',
    path,
    headers: {},
    clientSignal: signal,
    firstByteTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    label: 'test leg',
    ...over,
  });
}

/** A StopSignal that counts its listeners, to prove a leg removes what it added. */
class CountingSignal extends Cancellation {
  attached = 0;
  everAttached = 0;
  override addEventListener(type: 'abort', listener: () => void): void {
    this.attached++;
    this.everAttached++;
    super.addEventListener(type, listener);
  }
  override removeEventListener(type: 'abort', listener: () => void): void {
    this.attached--;
    super.removeEventListener(type, listener);
  }
}

describe('UpstreamLeg', () => {
  it('a reader that stops reading stalls the upstream (bounded queue); the 32 MiB answer then arrives intact', { timeout: 180_000 }, async () => {
    const l = await leg('/big', new Cancellation());
    const hash = createHash('sha256');
    const first = (await l.read())!;
    hash.update(first);
    let total = first.length;
    // Stop reading. The leg must pause the connection once its queue is full, so the server ends up waiting for
    // 'drain' with no progress. A leg that kept reading into memory would let the server send all 32 MiB (and this
    // wait would time out).
    let lastSent = -1;
    let still = 0;
    await waitFor(
      () => {
        const s = lastStream;
        still = s.waitingForDrain && !s.done && s.sent === lastSent ? still + 1 : 0;
        lastSent = s.sent;
        return still >= 20;
      },
      10_000,
      'the server to stall while the reader is stopped',
    );
    expect(lastStream.done).toBe(false);
    expect(lastStream.sent).toBeLessThan(CHUNK * CHUNKS);
    for (let c = await l.read(); c !== null; c = await l.read()) {
      hash.update(c);
      total += c.length;
    }
    expect(total).toBe(CHUNK * CHUNKS);
    expect(hash.digest('hex')).toBe(lastStream.digest);
  });

  it('skips interim 1xx answers (103 Early Hints): open() resolves with the final status', { timeout: 180_000 }, async () => {
    const l = await leg('/hints', new Cancellation());
    expect(l.status).toBe(200);
    expect(l.headers.link).toBeUndefined();
    expect((await l.readAll(1024)).toString()).toBe('final');
  });

  it('removes its listeners from the client and peer signals when it ends', { timeout: 180_000 }, async () => {
    const client = new CountingSignal();
    const peer = new CountingSignal();
    const l = await leg('/small', client, { peerSignal: peer });
    expect(await l.readAll(1024)).toEqual(Buffer.from('ok'));
    expect([client.everAttached, peer.everAttached]).toEqual([1, 1]);
    expect(client.attached).toBe(0);
    expect(peer.attached).toBe(0);
  });

  it('a signal stopped before the call rejects at once with client_gone and sends nothing', { timeout: 180_000 }, async () => {
    const client = new Cancellation();
    client.abort();
    const err = await leg('/small', client).catch((err: unknown) => err);
    expect(err).toBeInstanceOf(LegStopped);
    expect((err as LegStopped).reason).toBe('client_gone');
  });

  it('stopping the client signal while waiting for the head rejects open() and aborts the upstream request', { timeout: 180_000 }, async () => {
    const client = new Cancellation();
    const closed = new Promise<void>((resolve) => server.once('request', (_req, res: ServerResponse) => res.once('close', () => resolve())));
    const opening = leg('/hang', client);
    // Abort once the server has the request (its 'request' listener runs before the abort below resolves anything).
    await new Promise<void>((resolve) => server.once('request', () => resolve()));
    client.abort();
    const err = await opening.catch((err: unknown) => err);
    expect((err as LegStopped).reason).toBe('client_gone');
    await closed; // the upstream saw the connection go
  });

  it('the first-byte deadline stops a leg whose upstream never answers', { timeout: 180_000 }, async () => {
    const err = await leg('/hang', new Cancellation(), { firstByteTimeoutMs: 100 }).catch((err: unknown) => err);
    expect(err).toBeInstanceOf(LegStopped);
    expect((err as LegStopped).reason).toBe('first_byte_timeout');
    expect((err as Error).message).toBe('test leg sent no data within 100ms');
  });

  it('the process being busy past the idle deadline is not upstream idleness: data that came in meanwhile is read', { timeout: 180_000 }, async () => {
    const l = await leg('/steps', new Cancellation(), { idleTimeoutMs: 100 });
    expect((await l.read())!.toString()).toBe('first');
    const next = l.read(); // waits on the upstream: the idle deadline runs
    steps!.write('second');
    // Block the event loop well past the deadline: the chunk waits in the socket while the timer expires.
    const until = performance.now() + 400;
    while (performance.now() < until);
    expect((await next)!.toString()).toBe('second');
    steps!.end();
    expect(await l.read()).toBe(null);
  });

  it('a peer signal stops a running leg with the peer reason', { timeout: 180_000 }, async () => {
    const peer = new Cancellation();
    const l = await leg('/big', new Cancellation(), { peerSignal: peer });
    await l.read();
    peer.abort(new LegStopped('peer_failed', 'the other leg failed'));
    const err = await (async () => {
      for (;;) if ((await l.read()) === null) return undefined;
    })().catch((err: unknown) => err);
    expect((err as LegStopped).message).toBe('the other leg failed');
    expect(l.stopReason?.reason).toBe('peer_failed');
  });
});

describe('Cancellation', () => {
  it('runs every listener even when one throws, then rethrows the first error', () => {
    const c = new Cancellation();
    const calls: string[] = [];
    c.addEventListener('abort', () => {
      throw new Error('first');
    });
    c.addEventListener('abort', () => calls.push('second'));
    expect(() => c.abort()).toThrow('first');
    expect(calls).toEqual(['second']);
  });

  it('runs each listener once, in order, and none added after the abort', () => {
    const c = new Cancellation();
    const calls: string[] = [];
    const a = () => calls.push('a');
    c.addEventListener('abort', a);
    c.addEventListener('abort', () => calls.push('b'));
    c.addEventListener('abort', () => calls.push('c'));
    c.removeEventListener('abort', a);
    c.addEventListener('abort', a);
    c.abort('why');
    c.abort('again');
    c.addEventListener('abort', () => calls.push('late'));
    expect(calls).toEqual(['b', 'c', 'a']);
    expect(c.aborted).toBe(true);
    expect(c.reason).toBe('why');
  });
});
