/**
 * OpenTelemetry tracing against a real OTLP/gRPC receiver (Python's opentelemetry-proto + grpcio): a P/D request
 * through gateway -> EPP -> sidecar -> simulators is one trace with upstream's span and attribute names; a client's
 * traceparent is continued; a collector that never answers costs requests nothing (spans dropped and counted); with
 * tracing off nothing is exported.
 */
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import { sidecarConfig, startSidecar, type SidecarHandle } from '../../src/sidecar/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { getJson, metricsText, metricValue, postJson, waitFor } from '../helpers.js';
import { describeWith } from './need.js';
import { needOtlpReceiver, OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';

const req = await needOtlpReceiver();
const MODEL = 'sim-model';
/** A prompt long enough to be disaggregated, and new each time (a repeated one is cached on the decode pod). */
const longPrompt = (tag: string) => Array.from({ length: 400 }, (_, i) => `${tag}${i}`).join(' ');
const OTEL_VARS = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_SAMPLER'] as const;

describeWith(req, 'OpenTelemetry tracing (OTLP gRPC receiver)', () => {
  let receiver: OtlpReceiver;
  let stack: DevStack;
  const saved: Record<string, string | undefined> = {};
  const tracing = { tracing: true, tracingBatchDelay: 20 };

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    for (const name of OTEL_VARS) saved[name] = process.env[name];
    // In-process: the three components read the same environment, as three pods given the same collector would.
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
    process.env.OTEL_TRACES_SAMPLER = 'parentbased_always_on';
    stack = await startDevStack({
      mode: 'in-process',
      basePort: 0,
      gatewayPort: 0,
      profile: 'zero',
      prefill: 1,
      decode: 1,
      nonCachedTokens: 64,
      epp: tracing,
      sidecar: tracing,
      gateway: tracing,
    });
  }, 180_000);
  afterAll(async () => {
    await stack?.close();
    await receiver?.close();
    for (const name of OTEL_VARS) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  const byName = (spans: ReceivedSpan[], name: string) => spans.find((span) => span.name === name);
  const traceOf = (requestId: string) =>
    receiver.waitFor((spans) => {
      const decode = spans.find(
        (span) => span.name === 'llm_d.pd_proxy.decode' && span.attributes['llm_d.pd_proxy.request_id'] === requestId,
      );
      if (!decode) return [];
      const trace = spans.filter((span) => span.traceId === decode.traceId);
      // The server spans end after the legs: wait for every one of them.
      const names = ['pd_router.gateway.request', 'gateway.request', 'llm_d.pd_proxy.request'];
      return names.every((name) => byName(trace, name)) ? trace : [];
    });

  it('a P/D request is one trace: gateway -> EPP -> sidecar -> prefill leg and decode leg, with upstream names', async () => {
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: longPrompt('first') }], max_tokens: 8 },
      { 'x-request-id': 'trace-pd-1' },
    );
    expect(r.status).toBe(200);
    const trace = await traceOf('trace-pd-1');
    const gateway = byName(trace, 'pd_router.gateway.request')!;
    const epp = byName(trace, 'gateway.request')!;
    const orchestration = byName(trace, 'gateway.request_orchestration')!;
    const disagg = byName(trace, 'llm_d.epp.prerequest.disaggregation')!;
    const sidecar = byName(trace, 'llm_d.pd_proxy.request')!;
    const prefill = byName(trace, 'llm_d.pd_proxy.prefill')!;
    const decode = byName(trace, 'llm_d.pd_proxy.decode')!;
    expect(gateway.parentSpanId).toBe('');
    expect(epp.parentSpanId).toBe(gateway.spanId);
    expect(orchestration.parentSpanId).toBe(epp.spanId);
    expect(disagg.parentSpanId).toBe(orchestration.spanId);
    expect(sidecar.parentSpanId).toBe(epp.spanId);
    expect(prefill.parentSpanId).toBe(sidecar.spanId);
    expect(decode.parentSpanId).toBe(sidecar.spanId);
    expect(new Set(trace.map((span) => span.traceId)).size).toBe(1);
    expect([gateway.service, epp.service, sidecar.service]).toEqual([
      'pd-router-gateway',
      'llm-d-epp',
      'llm-d-disagg-sidecar',
    ]);
    expect(disagg.attributes['llm_d.epp.pd.disaggregation_used']).toBe(true);
    expect(sidecar.attributes).toMatchObject({
      'llm_d.pd_proxy.connector': 'nixlv2',
      'llm_d.pd_proxy.disaggregation_used': true,
      'llm_d.pd_proxy.request_path': '/v1/chat/completions',
      'llm_d.pd_proxy.prefill_candidates': 1,
    });
    const ttft = sidecar.attributes['llm_d.pd_proxy.true_ttft_ms'] as number;
    const total = sidecar.attributes['llm_d.pd_proxy.total_duration_ms'] as number;
    expect(typeof ttft).toBe('number');
    expect(ttft).toBeGreaterThanOrEqual(sidecar.attributes['llm_d.pd_proxy.prefill_duration_ms'] as number);
    expect(total).toBeGreaterThanOrEqual(ttft);
    expect(prefill.attributes['llm_d.pd_proxy.prefill.status_code']).toBe(200);
    expect(typeof prefill.attributes['llm_d.pd_proxy.prefill.duration_ms']).toBe('number');
    expect(typeof decode.attributes['llm_d.pd_proxy.decode.duration_ms']).toBe('number');
    // Each leg carries its own span's trace context to its model server.
    const recordOf = async (url: string) =>
      ((await getJson(`${url}/admin/requests`)).body.requests as Array<Record<string, any>>).find(
        (item) => item.headers['x-request-id'] === 'trace-pd-1',
      )!;
    expect((await recordOf(stack.prefills[0].url)).headers.traceparent).toBe(
      `00-${prefill.traceId}-${prefill.spanId}-01`,
    );
    expect((await recordOf(stack.decodes[0].sim.url)).headers.traceparent).toBe(
      `00-${decode.traceId}-${decode.spanId}-01`,
    );
    // Each leg's span starts before, and ends after, nothing of the other: prefill first, then decode.
    expect(BigInt(decode.startNs)).toBeGreaterThanOrEqual(BigInt(prefill.endNs));
  });

  it("continues a client's traceparent", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: longPrompt('second') }], max_tokens: 4 },
      { 'x-request-id': 'trace-pd-2', traceparent: `00-${traceId}-${parent}-01` },
    );
    expect(r.status).toBe(200);
    const trace = await traceOf('trace-pd-2');
    expect(trace[0].traceId).toBe(traceId);
    expect(byName(trace, 'pd_router.gateway.request')!.parentSpanId).toBe(parent);
  });

  it('a decode-only request: the sidecar span has no legs, and the decoder gets its traceparent', async () => {
    const r = await postJson(
      `${stack.gateway.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'short' }], max_tokens: 2 },
      { 'x-request-id': 'trace-local-1' },
    );
    expect(r.status).toBe(200);
    const [sidecar] = await receiver.waitFor((spans) =>
      spans.filter(
        (span) =>
          span.name === 'llm_d.pd_proxy.request' &&
          span.attributes['llm_d.pd_proxy.disaggregation_used'] === false &&
          spans.some((other) => other.spanId === span.parentSpanId && other.name === 'gateway.request'),
      ),
    );
    expect(sidecar.attributes['llm_d.pd_proxy.reason']).toBe('no_prefill_header');
    const record = (
      (await getJson(`${stack.decodes[0].sim.url}/admin/requests`)).body.requests as Array<Record<string, any>>
    ).find((item) => item.headers['x-request-id'] === 'trace-local-1')!;
    expect(record.headers.traceparent).toBe(`00-${sidecar.traceId}-${sidecar.spanId}-01`);
  });

  it('with tracing off nothing is exported, whatever OTEL_* says', async () => {
    const sim = await startSimulator(simConfig({ port: 0, model: [MODEL], timeScale: 0 }));
    const sidecar = await startSidecar(
      sidecarConfig({ port: 0, secureProxy: false, modelServerPort: sim.port, modelServerHost: '127.0.0.1' }),
    );
    try {
      const r = await postJson(
        `${sidecar.url}/v1/chat/completions`,
        { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
        { 'x-request-id': 'trace-off-1' },
      );
      expect(r.status).toBe(200);
      // A later traced request's spans arriving shows the collector was reachable all along.
      await postJson(
        `${stack.gateway.url}/v1/chat/completions`,
        { model: MODEL, messages: [{ role: 'user', content: longPrompt('third') }], max_tokens: 2 },
        { 'x-request-id': 'trace-pd-3' },
      );
      await traceOf('trace-pd-3');
      expect(receiver.spans.filter((span) => span.attributes['llm_d.pd_proxy.request_id'] === 'trace-off-1')).toEqual(
        [],
      );
      const m = await metricsText(sidecar.url, '/sidecar/metrics');
      expect(metricValue(m, 'pd_router_sidecar_tracing_spans_exported_total') ?? 0).toBe(0);
    } finally {
      await sidecar.close();
      await sim.close();
    }
  });
});

describeWith(req, 'OpenTelemetry tracing with a collector that never answers', () => {
  let blackhole: net.Server;
  let sim: SimulatorHandle;
  let sidecar: SidecarHandle;
  const sockets = new Set<net.Socket>();
  const saved = { endpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT, sampler: process.env.OTEL_TRACES_SAMPLER };

  beforeAll(async () => {
    // Accepts connections and never says a word: every export hangs until its deadline.
    blackhole = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    // Without a scheme: plaintext, as upstream's default collector address.
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `127.0.0.1:${(blackhole.address() as net.AddressInfo).port}`;
    process.env.OTEL_TRACES_SAMPLER = 'always_on';
    sim = await startSimulator(simConfig({ port: 0, model: [MODEL], timeScale: 0 }));
    sidecar = await startSidecar(
      sidecarConfig({
        port: 0,
        secureProxy: false,
        modelServerPort: sim.port,
        modelServerHost: '127.0.0.1',
        tracing: true,
        // A full batch (2) leaves at once and hangs; 2 more wait; the rest are dropped. The export deadline outlasts
        // the test: requests finishing at all shows they never wait for the collector.
        tracingMaxQueueSize: 2,
        tracingBatchDelay: 600_000,
        tracingExportTimeout: 600_000,
      }),
    );
  }, 60_000);
  afterAll(async () => {
    await sidecar?.close(1_000);
    await sim?.close();
    for (const s of sockets) s.destroy();
    blackhole?.close();
    for (const [name, value] of [
      ['OTEL_EXPORTER_OTLP_ENDPOINT', saved.endpoint],
      ['OTEL_TRACES_SAMPLER', saved.sampler],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('requests succeed, and the spans beyond the queue are dropped and counted', async () => {
    for (let i = 0; i < 8; i++) {
      const r = await postJson(
        `${sidecar.url}/v1/chat/completions`,
        { model: MODEL, messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 2 },
        { 'x-request-id': `blackhole-${i}` },
      );
      expect(r.status).toBe(200);
    }
    // 8 request spans: 2 in the hanging export, 2 queued, 4 dropped (each counted as its request ends).
    const dropped = async () =>
      metricValue(await metricsText(sidecar.url, '/sidecar/metrics'), 'pd_router_sidecar_tracing_spans_dropped_total', {
        reason: 'queue_full',
      }) ?? 0;
    await waitFor(async () => (await dropped()) >= 4, 30_000, 'four spans dropped');
    expect(await dropped()).toBe(4);
    const m = await metricsText(sidecar.url, '/sidecar/metrics');
    expect(metricValue(m, 'pd_router_sidecar_tracing_spans_exported_total') ?? 0).toBe(0);
  }, 60_000);
});
