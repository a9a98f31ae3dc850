import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getJson, metricsText, metricValue, postJson } from '../helpers.js';
import { MODEL, lastRecord, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture;
beforeAll(async () => {
  f = await startPd();
});
afterAll(() => f.close());
beforeEach(() => {
  f.prefill.engine.clearRecords();
  f.decode.engine.clearRecords();
});

describe('sidecar routes', () => {
  it('GET /health answers locally without calling vLLM', async () => {
    const r = await fetch(`${f.sidecar.url}/health`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('');
  });

  it('GET /ready reports whether the local vLLM answers', async () => {
    const r = await getJson(`${f.sidecar.url}/ready`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ready', decoder: 'ok', ssrfAllowlist: 'off' });
  });

  it('/v1/models and /metrics are vLLM\'s, passed through', async () => {
    const models = await getJson(`${f.sidecar.url}/v1/models`);
    expect(models.status).toBe(200);
    expect(models.body.data[0].id).toBe(MODEL);
    const metrics = await metricsText(f.sidecar.url);
    expect(metrics).toContain('vllm:num_requests_running');
    expect(metrics).not.toContain('pd_router_sidecar_requests_total');
  });

  it.each(['/v1/chat/completions', '/v1/completions', '/v1/messages', '/v1/embeddings', '/score', '/healthz'])(
    'GET %s is passed through to the decoder (whatever it answers)',
    async (path) => {
      const viaSidecar = await fetch(`${f.sidecar.url}${path}?x=1`);
      const direct = await fetch(`${f.decode.url}${path}?x=1`);
      expect(viaSidecar.status).toBe(direct.status);
      expect(await viaSidecar.text()).toBe(await direct.text());
    },
  );

  it('POST to an unknown path is passed through with its body and query', async () => {
    const r = await fetch(`${f.sidecar.url}/admin/config?probe=1`, { method: 'POST', body: JSON.stringify({ 'inter-token-latency': '0s' }) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { latencies: Record<string, string> }).latencies['inter-token-latency']).toBe('0s');
  });

  it('/sidecar/metrics serves the sidecar\'s own metrics', async () => {
    await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' });
    const text = await metricsText(f.sidecar.url, '/sidecar/metrics');
    expect(metricValue(text, 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'local' })).toBeGreaterThanOrEqual(1);
    expect(text).toContain('pd_router_sidecar_inflight_requests 0');
  });
});

describe('sidecar metrics count inference requests only', () => {
  /** Sum of every sample of `name` in Prometheus text (all label sets). */
  const total = (text: string, name: string) =>
    text
      .split('\n')
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);

  it('passthrough traffic (the EPP scrapes vLLM\'s /metrics through the sidecar) is neither a request nor a latency sample', async () => {
    const own = await startPd();
    try {
      expect((await postJson(`${own.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x', max_tokens: 1 })).status).toBe(200);
      for (let i = 0; i < 20; i++) expect((await fetch(`${own.sidecar.url}/metrics`)).status).toBe(200);
      expect((await fetch(`${own.sidecar.url}/v1/models`)).status).toBe(200);
      const text = await metricsText(own.sidecar.url, '/sidecar/metrics');
      expect(total(text, 'pd_router_sidecar_requests_total')).toBe(1);
      for (const h of ['pd_router_sidecar_ttft_seconds_count', 'pd_router_sidecar_decode_ttfb_seconds_count', 'pd_router_sidecar_overhead_seconds_count']) {
        expect(total(text, h)).toBe(1);
      }
      expect(total(text, 'pd_router_sidecar_pd_requests_total')).toBe(1);
      expect(text).not.toContain('mode="passthrough"');
      expect(metricValue(text, 'pd_router_sidecar_passthrough_requests_total', { outcome: 'success' })).toBe(21);
      expect(metricValue(text, 'pd_router_sidecar_inflight_requests')).toBe(0);
    } finally {
      await own.close();
    }
  });
});

describe('local prefill (no x-prefiller-host-port)', () => {
  it('forwards the body byte for byte to the decoder only', async () => {
    const raw = '{"prompt":"keep   my   spacing","model":"pd-model","max_tokens":3,"zzz":{"b":1,"a":2}}';
    const r = await fetch(`${f.sidecar.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
    expect(r.status).toBe(200);
    expect(records(f.prefill)).toHaveLength(0);
    const rec = lastRecord(f.decode);
    expect(JSON.stringify(rec.body)).toBe(raw);
    expect(rec.kind).toBe('aggregated');
  });

  it('an empty prefill header means local prefill', async () => {
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': ' ' });
    expect(r.status).toBe(200);
    expect(records(f.prefill)).toHaveLength(0);
  });
});

describe('headers on both legs', () => {
  it('strips routing headers, shares one x-request-id, forwards Authorization and traceparent', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await postJson(
      `${f.sidecar.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'hi' }] },
      {
        'x-prefiller-host-port': f.prefillHeader,
        'x-encoder-hosts-ports': '10.9.9.9:1',
        'x-kv-cache-source-host-port': '10.9.9.9:2',
        authorization: 'Bearer secret-token',
        'x-request-id': 'client-rid-1',
        traceparent,
        'x-custom': 'kept',
      },
    );
    expect(r.status).toBe(200);
    const p = lastRecord(f.prefill).headers;
    const d = lastRecord(f.decode).headers;
    for (const h of [p, d]) {
      expect(h['x-prefiller-host-port']).toBeUndefined();
      expect(h['x-encoder-hosts-ports']).toBeUndefined();
      expect(h['x-kv-cache-source-host-port']).toBeUndefined();
      expect(h.authorization).toBe('Bearer secret-token');
      expect(h['x-request-id']).toBe('client-rid-1');
      expect(h.traceparent).toBe(traceparent);
      expect(h['x-custom']).toBe('kept');
    }
  });

  it('generates one request id and one trace context for both legs when the client sent none', async () => {
    await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': f.prefillHeader });
    const p = lastRecord(f.prefill).headers;
    const d = lastRecord(f.decode).headers;
    expect(p['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(d['x-request-id']).toBe(p['x-request-id']);
    expect(p.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(d.traceparent).toBe(p.traceparent);
  });
});

describe('prefill header values', () => {
  it('accepts http://host:port (backward compatibility) and takes the first of a comma list', async () => {
    for (const value of [`http://${f.prefillHeader}`, `${f.prefillHeader}, 127.0.0.1:1`]) {
      f.prefill.engine.clearRecords();
      const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': value });
      expect(r.status).toBe(200);
      expect(records(f.prefill)).toHaveLength(1);
    }
  });

  it('rejects a value that is not host:port with 400', async () => {
    const r = await postJson(`${f.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': 'no-port-here' });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ object: 'error', message: 'invalid x-prefiller-host-port header: expected host:port', type: 'BadRequestError', param: '', code: 400 });
  });
});

describe('prefiller sampling', () => {
  it('--enable-prefiller-sampling spreads requests over the listed prefillers', async () => {
    const { simConfig, startSimulator } = await import('../../src/sim/index.js');
    const second = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], engineId: 'prefill-1' }));
    const sampled = await startPd({ sidecar: { enablePrefillerSampling: true } });
    try {
      const header = `${sampled.prefillHeader},127.0.0.1:${second.port}`;
      for (let i = 0; i < 24; i++) {
        expect((await postJson(`${sampled.sidecar.url}/v1/completions`, { model: MODEL, prompt: 'x' }, { 'x-prefiller-host-port': header })).status).toBe(200);
      }
      // Each of the two gets some: the chance that 24 uniform picks all land on one is 2^-23.
      expect(records(sampled.prefill).length).toBeGreaterThan(0);
      expect(second.engine.recentRequests().length).toBeGreaterThan(0);
      expect(records(sampled.prefill).length + second.engine.recentRequests().length).toBe(24);
    } finally {
      await sampled.close();
      await second.close();
    }
  });
});
