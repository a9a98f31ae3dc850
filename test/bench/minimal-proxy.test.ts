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

  it('refuses an unknown stack with exit 2 and its usage', async () => {
    const bad = startCli(['--upstream', simHostPort, '--server', 'h2'], /never/, { script: PROXY });
    await expect(bad).rejects.toThrow(/exited with 2[\s\S]*--server must be one of http, raw/);
  });
});
