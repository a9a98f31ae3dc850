/**
 * The reference proxy of bench/sidecar-overhead and bench/sidecar-floor on each of its HTTP stacks: each does the P/D
 * operation against the simulator (the decode leg carries the prefill leg's kv_transfer_params), and the hand-written
 * reader refuses what it cannot frame instead of hanging.
 */
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, postJson, recordedRequests, startCli } from '../helpers.js';

const PROXY = path.join(ROOT, 'dist/bench/sidecar-overhead/minimal-proxy.js');
const MODEL = 'bench-model';

describe('bench minimal proxy', { timeout: 120_000 }, () => {
  let sim: Awaited<ReturnType<typeof startCli>>;
  let simHostPort: string;
  const proxies: Array<Awaited<ReturnType<typeof startCli>>> = [];

  beforeAll(async () => {
    sim = await startCli(
      ['sim', '--host', '127.0.0.1', '--port', '0', '--model', MODEL, '--seed', '1'],
      /"url":"(http:[^"]+)".*simulator listening/,
    );
    simHostPort = new URL(sim.match[1]).host;
  });
  afterAll(async () => {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await sim?.stop();
  });

  async function start(server: string, client: string): Promise<string> {
    const proxy = await startCli(
      ['--upstream', simHostPort, '--server', server, '--client', client],
      /"url":"(http:[^"]+)".*minimal proxy listening/,
      { script: PROXY },
    );
    proxies.push(proxy);
    return proxy.match[1];
  }

  for (const [server, client] of [
    ['http', 'undici'],
    ['http', 'http'],
    ['http', 'raw'],
    ['raw', 'raw'],
  ] as const) {
    it(`--server ${server} --client ${client}: prefill leg, then the decode leg with its kv_transfer_params`, async () => {
      const url = await start(server, client);
      const before = (await recordedRequests(sim.match[1])).length;
      const body = {
        model: MODEL,
        messages: [{ role: 'user', content: `hello ${server} ${client}` }],
        max_tokens: 3,
        ignore_eos: true,
      };
      for (let i = 0; i < 2; i++) {
        // Twice: the second operation reuses the kept-alive connections.
        const res = await postJson(`${url}/v1/chat/completions`, body);
        expect(res.status).toBe(200);
        expect(res.body.choices[0].finish_reason).toBe('length');
        expect(res.body.usage.completion_tokens).toBe(3);
      }
      const legs = (await recordedRequests(sim.match[1])).slice(before);
      expect(legs).toHaveLength(4);
      expect(legs[0].body.max_tokens).toBe(1);
      expect(legs[0].body.kv_transfer_params).toMatchObject({ do_remote_decode: true });
      expect(legs[1].body.max_tokens).toBe(3);
      expect(legs[1].body.kv_transfer_params).toMatchObject({ do_remote_prefill: true });
    });
  }

  it('--server raw answers 501 to a chunked request it cannot frame, and closes the connection', async () => {
    const url = new URL(await start('raw', 'raw'));
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname);
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.write(
        'POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 501 /);
    expect(answer).toContain('chunked');
  });

  /** A loopback upstream that answers every request with `answer` (and then closes, when `close`). */
  async function fakeUpstream(
    answer: string,
    close: boolean,
  ): Promise<{ hostPort: string; stop: () => Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.once('data', () => (close ? socket.end(answer) : socket.write(answer)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    return {
      hostPort: `127.0.0.1:${port}`,
      stop: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    };
  }

  for (const [what, answer, close, message] of [
    [
      'a chunked answer',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      false,
      /not readable by the raw client: a chunked body/,
    ],
    [
      'an answer cut short',
      'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"id"',
      true,
      /upstream closed the connection/,
    ],
  ] as const) {
    it(`--client raw fails the leg on ${what}: the client gets 502 with the reason, nothing hangs`, async () => {
      const upstream = await fakeUpstream(answer, close);
      try {
        const proxy = await startCli(
          ['--upstream', upstream.hostPort, '--server', 'http', '--client', 'raw'],
          /"url":"(http:[^"]+)".*minimal proxy listening/,
          { script: PROXY },
        );
        proxies.push(proxy);
        const res = await fetch(`${proxy.match[1]}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
          signal: AbortSignal.timeout(20_000),
        });
        expect(res.status).toBe(502);
        expect(await res.text()).toMatch(message);
      } finally {
        await upstream.stop();
      }
    });
  }

  it('refuses an unknown stack, a misspelt option or a missing value with exit 2 and its usage', async () => {
    for (const [args, reason] of [
      [['--upstream', simHostPort, '--server', 'h2'], /--server must be one of http, raw/],
      [['--upstream', simHostPort, '--clinet', 'raw'], /unknown argument "--clinet"/],
      [['--upstream', simHostPort, '--server'], /--server needs a value/],
      [['--server', 'raw'], /--upstream host:port is required/],
    ] as const) {
      const bad = startCli([...args], /never/, { script: PROXY });
      await expect(bad).rejects.toThrow(new RegExp(`exited with 2[\\s\\S]*${reason.source}`));
    }
  });
});
