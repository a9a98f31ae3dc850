/**
 * The mooncake and offloading connectors (both legs at once) and P2P pulls (x-kv-cache-source-host-port), against the
 * simulator playing both engines: what each leg carries, to whom, and what the client gets when a step fails.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { postJson, sseJson, waitFor } from '../helpers.js';
import { loadOptions } from '../../src/common/index.js';
import { sidecarCommand, sidecarConfig } from '../../src/sidecar/index.js';
import { p2pPortFor } from '../../src/sidecar/kv-peer.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
let extra: Server | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
  if (extra) {
    extra.closeAllConnections();
    await new Promise((resolve) => extra!.close(resolve));
    extra = undefined;
  }
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const chat = (extraFields: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'the quick brown fox' }],
  max_tokens: 50,
  ...extraFields,
});
type Body = Record<string, unknown> & { kv_transfer_params?: Record<string, any> };

/** A server on loopback answering every request with `answer` (undefined: never answers). */
async function startServer(answer?: { status: number; body: string }): Promise<number> {
  extra = createServer((_req, res) => {
    if (answer) res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
  });
  await new Promise<void>((resolve) => extra!.listen(0, '127.0.0.1', resolve));
  return (extra.address() as AddressInfo).port;
}

describe('mooncake connector', () => {
  const mooncake = (options: { decode?: object; prefill?: object; sidecar?: object } = {}) =>
    startPd({
      prefill: { mooncakeBootstrapPort: 0, ...options.prefill },
      decode: options.decode,
      sidecar: ({ bootstrap }) => ({ kvConnector: 'mooncake', mooncakeBootstrapPort: bootstrap, ...options.sidecar }),
    });

  it('sends both legs with one transfer_id: prefill capped with the rank header, decode with the bootstrap address and engine id', async () => {
    f = await mooncake();
    const client = chat({ max_completion_tokens: 100, stream: true, stream_options: { include_usage: true } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, client, {
      'x-prefiller-host-port': f.prefillHeader,
    });
    expect(r.status).toBe(200);
    expect(sseJson(r.text).length).toBeGreaterThan(1);
    await waitFor(() => records(f!.prefill).length === 1, 5000, 'prefill recorded');
    const prefill = lastRecord(f.prefill);
    const decode = lastRecord(f.decode);
    const { stream: _s, stream_options: _so, ...rest } = client;
    const transferId = (prefill.body as Body).kv_transfer_params!.transfer_id as string;
    expect(transferId).toMatch(/^xfer-[0-9a-f-]{36}$/);
    expect(prefill.body).toEqual({
      ...rest,
      max_tokens: 1,
      max_completion_tokens: 1,
      stream: false,
      kv_transfer_params: { do_remote_prefill: false, do_remote_decode: true, transfer_id: transferId },
    });
    expect(prefill.headers['x-data-parallel-rank']).toBe('0');
    expect(decode.body).toEqual({
      ...client,
      kv_transfer_params: {
        do_remote_prefill: true,
        do_remote_decode: false,
        transfer_id: transferId,
        remote_bootstrap_addr: `http://127.0.0.1:${f.prefill.mooncakeBootstrap!.port}`,
        remote_engine_id: 'prefill-0',
      },
    });
    expect(decode.headers['x-data-parallel-rank']).toBeUndefined();
    expect([prefill.kind, decode.kind]).toEqual(['prefill', 'decode']);
  });

  it('adds max_completion_tokens to the prefill leg only when the client sent it; the bootstrap answer is cached', async () => {
    f = await mooncake();
    for (let i = 0; i < 2; i++) {
      const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat(), {
        'x-prefiller-host-port': f.prefillHeader,
      });
      expect(r.status).toBe(200);
    }
    await waitFor(() => records(f!.prefill).length === 2, 5000, 'prefills recorded');
    for (const p of records(f.prefill)) {
      expect((p.body as Body).max_tokens).toBe(1);
      expect(p.body).not.toHaveProperty('max_completion_tokens');
    }
    expect(f.prefill.mooncakeBootstrap!.queries).toBe(1);
  });

  it('with several data-parallel ranks, pins the prefill to the rank whose engine id the decode leg names', async () => {
    f = await mooncake({ prefill: { dataParallelSize: 2 } });
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await postJson(
        `${f.sidecar.url}/v1/completions`,
        { model: MODEL, prompt: 'hi', max_tokens: 2 },
        {
          'x-prefiller-host-port': f.prefillHeader,
        },
      );
      expect(r.status).toBe(200);
      await waitFor(() => records(f!.prefill).length === i + 1, 5000, 'prefill recorded');
      const rank = String(lastRecord(f.prefill).headers['x-data-parallel-rank']);
      const engine = (lastRecord(f.decode).body as Body).kv_transfer_params!.remote_engine_id;
      expect(engine).toBe(`prefill-0-dp${rank}`);
      seen.add(rank);
    }
    // Random per request: 12 draws of one rank only would happen once in 2048 runs.
    expect(seen.size).toBe(2);
  });

  it('a bootstrap server that cannot be reached, answers an error, no engine_id or nothing in time: 502, no leg sent', async () => {
    const cases: Array<{ port: () => Promise<number>; message: RegExp }> = [
      {
        port: async () => {
          const p = await startServer();
          extra!.closeAllConnections();
          await new Promise((resolve) => extra!.close(resolve));
          extra = undefined;
          return p;
        },
        message: /^mooncake bootstrap query: the bootstrap server could not be reached \(ECONNREFUSED\)$/,
      },
      {
        port: () => startServer({ status: 500, body: '{}' }),
        message: /^mooncake bootstrap query: the bootstrap endpoint returned status 500$/,
      },
      {
        port: () => startServer({ status: 200, body: '{"0":{"worker_addr":{}}}' }),
        message: /^mooncake bootstrap query: engine_id not found in bootstrap response$/,
      },
      { port: () => startServer(), message: /^mooncake bootstrap query: no answer within 300ms$/ },
    ];
    for (const c of cases) {
      const port = await c.port();
      f = await startPd({
        sidecar: { kvConnector: 'mooncake', mooncakeBootstrapPort: port, mooncakeBootstrapTimeout: 300 },
      });
      const r = await postJson(
        `${f.sidecar.url}/v1/completions`,
        { model: MODEL, prompt: 'hi' },
        {
          'x-prefiller-host-port': f.prefillHeader,
        },
      );
      expect([r.status, r.body.type], c.message.source).toEqual([502, 'BadGateway']);
      expect(r.body.message).toMatch(c.message);
      expect([records(f.prefill).length, records(f.decode).length]).toEqual([0, 0]);
      await f.close();
      f = undefined;
      if (extra) {
        extra.closeAllConnections();
        await new Promise((resolve) => extra!.close(resolve));
        extra = undefined;
      }
    }
  });

  it('a failed prefill stops the decode leg already running; the client gets a 502 saying why', async () => {
    f = await mooncake({ decode: { timeToFirstToken: 60_000 } });
    await postJson(`${f.prefill.url}/admin/config`, { 'return-error': 400 });
    const r = await postJson(
      `${f.sidecar.url}/v1/completions`,
      { model: MODEL, prompt: 'x' },
      {
        'x-prefiller-host-port': f.prefillHeader,
      },
    );
    expect(r.status).toBe(502);
    expect(r.body.message).toMatch(/^prefill failed: the prefiller answered 400: /);
    await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode leg stopped');
  });
});

describe('offloading connector and P2P pulls', () => {
  const offloading = (sidecar: object = {}) =>
    startPd({ sidecar: { kvConnector: 'offloading', p2pConnectorPort: 7777, ...sidecar } });

  it('prefill stores under a kv_request_id (no peer address); decode pulls it from the prefiller P2P tier', async () => {
    f = await offloading();
    const client = chat({ max_completion_tokens: 100, stream: true });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, client, {
      'x-prefiller-host-port': f.prefillHeader,
    });
    expect(r.status).toBe(200);
    await waitFor(() => records(f!.prefill).length === 1, 5000, 'prefill recorded');
    const prefill = lastRecord(f.prefill);
    const decode = lastRecord(f.decode);
    const id = (prefill.body as Body).kv_transfer_params!.remote_decoder.kv_request_id as string;
    expect(id).toMatch(UUID);
    const { stream: _s, ...rest } = client;
    expect(prefill.body).toEqual({
      ...rest,
      max_tokens: 1,
      max_completion_tokens: 1,
      stream: false,
      kv_transfer_params: { remote_decoder: { kv_request_id: id } },
    });
    expect(prefill.headers['x-data-parallel-rank']).toBeUndefined();
    expect(decode.body).toEqual({
      ...client,
      kv_transfer_params: { remote_prefiller: { kv_request_id: id, remote_host: '127.0.0.1', remote_port: 7777 } },
    });
    expect([prefill.kind, decode.kind]).toEqual(['prefill', 'decode']);
  });

  it('x-kv-cache-source-host-port adds a remote_kv_source pull with its own id to the prefill leg, unless it is the prefiller', async () => {
    f = await offloading();
    await postJson(
      `${f.sidecar.url}/v1/completions`,
      { model: MODEL, prompt: 'x' },
      {
        'x-prefiller-host-port': f.prefillHeader,
        'x-kv-cache-source-host-port': '10.9.9.9:8000',
      },
    );
    await waitFor(() => records(f!.prefill).length === 1, 5000, 'prefill recorded');
    const kv = (lastRecord(f.prefill).body as Body).kv_transfer_params!;
    expect(kv.remote_kv_source).toEqual({
      kv_request_id: expect.stringMatching(UUID),
      remote_host: '10.9.9.9',
      remote_port: 7777,
    });
    expect(kv.remote_kv_source.kv_request_id).not.toBe(kv.remote_decoder.kv_request_id);
    expect(Object.keys((lastRecord(f.decode).body as Body).kv_transfer_params!)).toEqual(['remote_prefiller']);
    // The routing header never reaches a model server.
    expect(lastRecord(f.prefill).headers['x-kv-cache-source-host-port']).toBeUndefined();

    f.prefill.engine.clearRecords();
    await postJson(
      `${f.sidecar.url}/v1/completions`,
      { model: MODEL, prompt: 'x' },
      {
        'x-prefiller-host-port': f.prefillHeader,
        'x-kv-cache-source-host-port': `http://${f.prefillHeader}`,
      },
    );
    await waitFor(() => records(f!.prefill).length === 1, 5000, 'prefill recorded');
    expect(Object.keys((lastRecord(f.prefill).body as Body).kv_transfer_params!)).toEqual(['remote_decoder']);
  });

  it('without a prefill target, a KV cache source becomes the only kv_transfer_params of the local request', async () => {
    f = await offloading({ podIp: '127.0.0.1' });
    const client = { ...chat(), kv_transfer_params: { do_remote_prefill: true, remote_host: 'evil.example.com' } };
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, client, {
      'x-kv-cache-source-host-port': '10.9.9.9:8000',
    });
    expect(r.status).toBe(200);
    const d = lastRecord(f.decode);
    expect((d.body as Body).kv_transfer_params).toEqual({
      remote_kv_source: { kv_request_id: expect.stringMatching(UUID), remote_host: '10.9.9.9', remote_port: 7777 },
    });
    expect(d.kind).toBe('aggregated');
    // Ignored: malformed, an empty host, this rank's own endpoint; the body then goes on without kv_transfer_params.
    for (const value of ['not-a-host-port', ':8000', `127.0.0.1:${f.sidecar.ports[0]}`]) {
      f.decode.engine.clearRecords();
      const again = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat(), {
        'x-kv-cache-source-host-port': value,
      });
      expect(again.status, value).toBe(200);
      expect(lastRecord(f.decode).body, value).toEqual(chat());
    }
  });

  it('a KV cache source outside the SSRF allowlist is ignored', async () => {
    f = await startPd({
      sidecar: ({ prefill }) => ({
        kvConnector: 'offloading',
        enableSsrfProtection: true,
        ssrfAllowlist: [`127.0.0.1:${prefill}`],
      }),
    });
    const r = await postJson(
      `${f.sidecar.url}/v1/completions`,
      { model: MODEL, prompt: 'x' },
      {
        'x-prefiller-host-port': f.prefillHeader,
        'x-kv-cache-source-host-port': '10.9.9.9:8000',
      },
    );
    expect(r.status).toBe(200);
    await waitFor(() => records(f!.prefill).length === 1, 5000, 'prefill recorded');
    expect(Object.keys((lastRecord(f.prefill).body as Body).kv_transfer_params!)).toEqual(['remote_decoder']);
  });

  it('nixlv2 with --enable-p2p-pull composes the pull onto the NIXL prefill leg; without it the header is ignored', async () => {
    for (const enableP2pPull of [true, false]) {
      f = await startPd({ sidecar: { enableP2pPull, p2pConnectorPort: 7000 } });
      const r = await postJson(
        `${f.sidecar.url}/v1/completions`,
        { model: MODEL, prompt: 'x', max_tokens: 3 },
        {
          'x-prefiller-host-port': f.prefillHeader,
          'x-kv-cache-source-host-port': '10.9.9.9:8000',
        },
      );
      expect(r.status).toBe(200);
      const kv = (lastRecord(f.prefill).body as Body).kv_transfer_params!;
      expect(kv).toMatchObject({ do_remote_decode: true, do_remote_prefill: false });
      if (enableP2pPull)
        expect(kv.remote_kv_source).toEqual({
          kv_request_id: expect.stringMatching(UUID),
          remote_host: '10.9.9.9',
          remote_port: 7000,
        });
      else expect(kv).not.toHaveProperty('remote_kv_source');
      await f.close();
      f = undefined;
    }
  });

  it('a failed prefill stops the decode leg; the client gets a 502', async () => {
    f = await startPd({ sidecar: { kvConnector: 'offloading' }, decode: { timeToFirstToken: 60_000 } });
    await postJson(`${f.prefill.url}/admin/config`, { 'return-error': 500 });
    const r = await postJson(
      `${f.sidecar.url}/v1/completions`,
      { model: MODEL, prompt: 'x' },
      {
        'x-prefiller-host-port': f.prefillHeader,
      },
    );
    expect(r.status).toBe(502);
    expect(r.body.message).toMatch(/^prefill failed: the prefiller answered 500: /);
  });

  it("the P2P port follows the peer's data-parallel rank (its port minus --port), else the base port", () => {
    const c = {
      kvConnector: 'offloading',
      enableP2pPull: false,
      p2pConnectorPort: 7777,
      dataParallelSize: 4,
      port: 8000,
    } as const;
    const t = (port: number) => ({ host: '10.0.0.5', port, hostPort: `10.0.0.5:${port}` });
    expect([8000, 8002, 8003, 7999, 8004].map((port) => p2pPortFor(c, t(port)))).toEqual([
      7777, 7779, 7780, 7777, 7777,
    ]);
    expect(p2pPortFor({ ...c, dataParallelSize: 1 }, t(8003))).toBe(7777);
    expect(p2pPortFor({ ...c, port: 0 }, t(8002))).toBe(7777);
  });

  it("upstream's environment defaults MOONCAKE_BOOTSTRAP_PORT and P2P_CONNECTOR_PORT set the ports; a flag beats them", () => {
    const env = { MOONCAKE_BOOTSTRAP_PORT: '9100', P2P_CONNECTOR_PORT: '7100' };
    const load = (argv: string[]) =>
      loadOptions(sidecarCommand as never, { argv, env }).values as {
        mooncakeBootstrapPort: number;
        p2pConnectorPort: number;
      };
    expect([load([]).mooncakeBootstrapPort, load([]).p2pConnectorPort]).toEqual([9100, 7100]);
    const flagged = load(['--mooncake-bootstrap-port=9200', '--p2p-connector-port=7200']);
    expect([flagged.mooncakeBootstrapPort, flagged.p2pConnectorPort]).toEqual([9200, 7200]);
  });

  it('--enable-p2p-pull needs --kv-connector=nixlv2; the P2P port range must fit the ranks', () => {
    const problems = (overrides: object) => sidecarCommand.validate!(sidecarConfig(overrides));
    expect(problems({ kvConnector: 'sglang', enableP2pPull: true })).toContain(
      '--enable-p2p-pull requires --kv-connector=nixlv2 (got "sglang")',
    );
    expect(problems({ kvConnector: 'nixlv2', enableP2pPull: true })).toEqual([]);
    expect(problems({ p2pConnectorPort: 65535, dataParallelSize: 2, port: 1000 })).toContain(
      '--p2p-connector-port 65535 plus data-parallel rank 1 exceeds 65535',
    );
  });
});
