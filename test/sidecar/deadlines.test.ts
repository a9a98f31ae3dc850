import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { metricsText, metricValue, postJson, sseJson, waitFor } from '../helpers.js';
import { MODEL, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const timeoutsMetric = async (fx: PdFixture, stage: string) =>
  metricValue(await metricsText(fx.sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_timeouts_total', { stage }) ?? 0;

describe('deadlines', () => {
  it('prefill timeout: 504 JSON, and the prefill leg is aborted on the prefiller', async () => {
    // The prefill must reach the prefiller before the deadline for it to be aborted there: the deadline is long for a
    // loopback request, however loaded the machine, and far below the prefiller's 10 minutes (which ends the test).
    f = await startPd({ sidecar: { prefillTimeout: 3_000 }, prefill: { timeToFirstToken: 600_000 } });
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(504);
    expect(r.body).toEqual({ object: 'error', message: 'prefill timed out after 3000ms', type: 'GatewayTimeout', param: '', code: 504 });
    await waitFor(() => f!.prefill.engine.scheduler.running === 0, 5000, 'prefill aborted on the prefiller');
    expect(records(f.prefill)).toHaveLength(1);
    expect(records(f.prefill)[0]!.aborted).toBe(true);
    expect(records(f.decode)).toHaveLength(0);
    expect(await timeoutsMetric(f, 'prefill')).toBe(1);
  });

  it('decode first-byte timeout: 504 JSON before anything is sent, decode aborted', async () => {
    f = await startPd({ sidecar: { decodeFirstByteTimeout: 3_000 }, decode: { kvCacheTransferLatency: 600_000 } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'x' }], stream: true }, { 'x-prefiller-host-port': f.prefillHeader });
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ object: 'error', type: 'GatewayTimeout', code: 504, message: 'decode sent no data within 3000ms' });
    await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode aborted');
    expect(records(f.decode)[0]!.aborted).toBe(true);
    expect(await timeoutsMetric(f, 'decode_first_byte')).toBe(1);
  });

  it('the prefill deadline bounds the whole answer: a prefiller that trickles bytes is cut off', async () => {
    // Answers at once, then one byte every 50 ms: each gap is far below the deadline, the whole answer far above it.
    const trickle = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const t = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(t));
    });
    await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
    try {
      f = await startPd({ sidecar: { prefillTimeout: 400 } });
      const target = `127.0.0.1:${(trickle.address() as AddressInfo).port}`;
      // Without a whole-answer deadline the trickle never ends and the test times out.
      const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': target });
      expect(r.status).toBe(504);
      expect(r.body.message).toBe('prefill timed out after 400ms');
    } finally {
      trickle.closeAllConnections();
      await new Promise((resolve) => trickle.close(resolve));
    }
  });

  it('a client slow to read (backpressure) does not make the decode leg look idle', async () => {
    // 60000 tokens of SSE at zero latency (megabytes): more than the loopback socket buffers hold, so the sidecar must
    // wait for drain. The idle deadline is 2 s so that a stall of a loaded machine cannot pass for idleness; the client
    // pauses longer than that (a timer only ever fires late, so the pause is at least that long).
    f = await startPd({ sidecar: { decodeIdleTimeout: 2_000 }, decode: { mode: 'random', maxModelLen: 200_000, kvCacheSize: 100_000 } });
    const url = new URL(`${f.sidecar.url}/v1/completions`);
    const result = await new Promise<{ status: number; bytes: number; tail: string }>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json' }, timeout: 20_000 }, (res) => {
        // The client stops reading for well over the idle deadline, then reads everything.
        res.pause();
        const resume = setTimeout(() => res.resume(), 3_000);
        let bytes = 0;
        let tail = '';
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          tail = (tail + chunk.toString('utf8')).slice(-4_000);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, tail }));
        res.on('error', (err) => {
          clearTimeout(resume);
          reject(err);
        });
      });
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', reject);
      req.end(JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 60_000, ignore_eos: true, stream: true, stream_options: { include_usage: true } }));
    });
    expect(result.status).toBe(200);
    // Every token arrived (the byte count depends on the random text; the token count does not).
    expect(result.tail).toContain('"completion_tokens":60000');
    expect(result.bytes).toBeGreaterThan(1_000_000);
    expect(result.tail).not.toContain('"error"');
    expect(result.tail.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(await timeoutsMetric(f, 'decode_idle')).toBe(0);
  }, 180_000);

  it('stream idle timeout after the stream started: an SSE error event ends the stream, decode aborted', async () => {
    f = await startPd({ sidecar: { decodeIdleTimeout: 200 }, decode: { interTokenLatency: 60_000 } });
    const r = await postJson(
      `${f.sidecar.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'one two three' }], stream: true },
      { 'x-prefiller-host-port': f.prefillHeader },
    );
    expect(r.status).toBe(200);
    const events = sseJson(r.text);
    expect(events[0].choices[0].delta.role).toBe('assistant');
    expect(events.at(-1)).toEqual({ error: { message: 'decode sent no data for 200ms', type: 'GatewayTimeout', param: null, code: 504 } });
    expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
    await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode aborted');
    expect(records(f.decode)[0]!.aborted).toBe(true);
    expect(await timeoutsMetric(f, 'decode_idle')).toBe(1);
  });

  it('the deadlines are flags with defaults in --help', async () => {
    const { runCli } = await import('../helpers.js');
    const help = (await runCli(['sidecar', '--help'])).stdout;
    // Each flag's own line names its default.
    const line = (flag: string) => help.split('\n').find((line) => line.includes(`${flag} <duration>`)) ?? '';
    expect(line('--prefill-timeout')).toMatch(/\(default \S+\)/);
    expect(line('--prefill-timeout')).toContain('(default 2m)');
    expect(line('--decode-first-byte-timeout')).toContain('(default 5m)');
    expect(line('--decode-idle-timeout')).toMatch(/\(default \S+\)/);
  });
});

describe('client disconnect aborts every running leg', () => {
  function abortable(url: string, body: unknown, headers: Record<string, string>) {
    const ac = new AbortController();
    const done = fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: ac.signal })
      .then(async (response) => {
        const reader = response.body!.getReader();
        for (;;) {
          const { done } = await reader.read();
          if (done) return 'complete';
        }
      })
      .catch(() => 'aborted');
    return { done, abort: () => ac.abort() };
  }

  it('during prefill: the prefill leg is aborted and decode is never called', async () => {
    f = await startPd({ prefill: { timeToFirstToken: 60_000 } });
    const req = abortable(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': f.prefillHeader });
    await waitFor(() => f!.prefill.engine.scheduler.running === 1, 5000, 'prefill running');
    req.abort();
    expect(await req.done).toBe('aborted');
    await waitFor(() => f!.prefill.engine.scheduler.running === 0, 5000, 'prefill aborted');
    expect(records(f.decode)).toHaveLength(0);
    await waitFor(async () => (metricValue(await metricsText(f!.sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_client_aborts_total', { stage: 'prefill' }) ?? 0) === 1);
  });

  it('during a streamed decode: the decode leg is aborted', async () => {
    f = await startPd({ decode: { interTokenLatency: 60_000 } });
    const req = abortable(
      `${f.sidecar.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'a b c d' }], stream: true },
      { 'x-prefiller-host-port': f.prefillHeader },
    );
    await waitFor(() => f!.decode.engine.scheduler.running === 1, 5000, 'decode running');
    req.abort();
    expect(await req.done).toBe('aborted');
    await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode aborted');
    await waitFor(async () => (metricValue(await metricsText(f!.sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_inflight_requests') ?? -1) === 0);
  });

  it('during a local (non-P/D) request: the decoder request is aborted', async () => {
    f = await startPd({ decode: { timeToFirstToken: 60_000 } });
    const req = abortable(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, {});
    await waitFor(() => f!.decode.engine.scheduler.running === 1, 5000, 'decode running');
    req.abort();
    expect(await req.done).toBe('aborted');
    await waitFor(() => f!.decode.engine.scheduler.running === 0, 5000, 'decode aborted');
    expect(records(f.decode)[0]!.aborted).toBe(true);
  });
});
