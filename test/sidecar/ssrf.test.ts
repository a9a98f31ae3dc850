import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { metricsText, metricValue, postJson, waitFor } from '../helpers.js';
import { MODEL, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const send = (fx: PdFixture, target: string) => postJson(`${fx.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': target });

describe('SSRF protection matches host AND port', () => {
  it('static allowlist: the listed host:port passes, the same host on another port gets 403', async () => {
    f = await startPd({ sidecar: (ports) => ({ enableSsrfProtection: true, ssrfAllowlist: [`127.0.0.1:${ports.prefill}`] }) });
    expect((await send(f, f.prefillHeader)).status).toBe(200);
    expect((await send(f, `127.0.0.1:${f.prefill.port + 1}`)).status).toBe(403);
    expect((await send(f, `localhost:${f.prefill.port}`)).status).toBe(403);
  });

  it('a denied request whose body never finishes is answered within the body deadline and its connection closed', async () => {
    f = await startPd({ sidecar: { enableSsrfProtection: true, ssrfAllowlist: ['10.0.0.1:8000'], requestBodyTimeout: 300 } });
    const { port } = new URL(f.sidecar.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    const answer = new Promise<{ text: string; closed: boolean }>((resolve, reject) => {
      let text = '';
      socket.on('data', (buffer) => (text += buffer.toString('utf8')));
      socket.on('close', () => resolve({ text, closed: true }));
      socket.on('error', reject);
      setTimeout(() => resolve({ text, closed: false }), 5_000);
    });
    // Promises 1000 bytes, sends 10, then stalls.
    socket.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nx-prefiller-host-port: 127.0.0.1:${f.prefill.port}\r\n\r\n{"model":1`);
    const r = await answer;
    socket.destroy();
    expect(r.text).toMatch(/^HTTP\/1\.1 403 /);
    expect(r.text).toContain('Forbidden: prefill target not allowed by SSRF protection');
    expect(r.closed).toBe(true);
  });

  it('static allowlist from a file, reloaded when it changes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pdr-ssrf-'));
    const file = path.join(dir, 'allow.yaml');
    writeFileSync(file, '- 10.0.0.1:8000\n');
    f = await startPd({ sidecar: { enableSsrfProtection: true, ssrfAllowlistFile: file } });
    const denied = await send(f, f.prefillHeader);
    expect(denied.status).toBe(403);
    expect(denied.headers.get('content-type')).toContain('text/plain');
    expect(denied.text).toBe('Forbidden: prefill target not allowed by SSRF protection');
    expect(records(f.prefill)).toHaveLength(0);
    writeFileSync(file, `- 10.0.0.1:8000\n- ${f.prefillHeader}\n`);
    await waitFor(async () => (await send(f!, f!.prefillHeader)).status === 200, 5000, 'allowlist reloaded');
    // Same host, other port: still denied.
    expect((await send(f, '127.0.0.1:1')).status).toBe(403);
    const text = await metricsText(f.sidecar.url, '/sidecar/metrics');
    expect(metricValue(text, 'pd_router_sidecar_ssrf_denied_total')).toBeGreaterThanOrEqual(2);
  });

  it('without protection every target is allowed (upstream default)', async () => {
    f = await startPd();
    expect((await send(f, f.prefillHeader)).status).toBe(200);
  });
});
