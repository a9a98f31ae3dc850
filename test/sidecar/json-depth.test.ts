/**
 * Deeply nested JSON: JSON.stringify overflows the stack at about 4,100 levels, which made a request body (or a prefill
 * answer) nested that deep a 500. --max-json-depth bounds what the sidecar parses.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { postJson, runCli } from '../helpers.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

/** A JSON object whose field `x` holds arrays nested so that the deepest one is at `depth` levels (the body is 1). */
function nestedBody(depth: number): string {
  const inner = depth - 1;
  return `{"model":"${MODEL}","prompt":"deep","max_tokens":1,"x":${'['.repeat(inner)}${']'.repeat(inner)}}`;
}

describe('--max-json-depth', () => {
  it('a request body nested 5,000 levels is a 400 naming the limit, nothing sent upstream, and the sidecar keeps serving', async () => {
    f = await startPd();
    const r = await postJson(`${f.sidecar.url}/v1/completions`, nestedBody(5_000), { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ object: 'error', message: 'invalid JSON: nested deeper than 256 levels (--max-json-depth)', type: 'BadRequestError', param: '', code: 400 });
    expect(records(f.prefill)).toHaveLength(0);
    expect(records(f.decode)).toHaveLength(0);
    const ok = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'after', max_tokens: 1 }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(ok.status).toBe(200);
  });

  it('the limit is exact: 256 levels pass, 257 do not; the flag changes it', async () => {
    f = await startPd();
    const at = await postJson(`${f.sidecar.url}/v1/completions`, nestedBody(256), { 'x-prefiller-host-port': f.prefillHeader });
    expect(at.status).toBe(200);
    expect(JSON.stringify((lastRecord(f.decode).body as { x: unknown }).x)).toBe(`${'['.repeat(255)}${']'.repeat(255)}`);
    const over = await postJson(`${f.sidecar.url}/v1/completions`, nestedBody(257), { 'x-prefiller-host-port': f.prefillHeader });
    expect(over.status).toBe(400);
    await f.close();
    f = await startPd({ sidecar: { maxJsonDepth: 8 } });
    expect((await postJson(`${f.sidecar.url}/v1/completions`, nestedBody(8), { 'x-prefiller-host-port': f.prefillHeader })).status).toBe(200);
    const small = await postJson(`${f.sidecar.url}/v1/completions`, nestedBody(9), { 'x-prefiller-host-port': f.prefillHeader });
    expect(small.status).toBe(400);
    expect(small.body.message).toBe('invalid JSON: nested deeper than 8 levels (--max-json-depth)');
  });

  it('a prefill answer nested 5,000 levels is a 502 naming the problem (not the prefiller\'s address); decode is not called', async () => {
    f = await startPd();
    const deep = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;
    const prefiller = http.createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(`{"id":"p","choices":[],"kv_transfer_params":{"remote_engine_id":"x","remote_block_ids":${deep}}}`),
      );
    });
    await new Promise<void>((resolve) => prefiller.listen(0, '127.0.0.1', resolve));
    const hostPort = `127.0.0.1:${(prefiller.address() as AddressInfo).port}`;
    try {
      const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x', max_tokens: 1 }, { 'x-prefiller-host-port': hostPort });
      expect(r.status).toBe(502);
      expect(r.body).toEqual({
        object: 'error',
        message: 'the prefiller answered 200 with JSON nested deeper than 256 levels (--max-json-depth)',
        type: 'BadGateway',
        param: '',
        code: 502,
      });
      expect(records(f.decode)).toHaveLength(0);
    } finally {
      prefiller.closeAllConnections();
      await new Promise((resolve) => prefiller.close(resolve));
    }
  });

  it('is a flag with its default in --help', async () => {
    const help = (await runCli(['sidecar', '--help'])).stdout;
    const line = help.split('\n').find((line) => line.includes('--max-json-depth <int>')) ?? '';
    expect(line).toContain('(default 256)');
  });
});
