/**
 * pd-router's P/D path against the upstream simulator: gateway -> EPP (llm-d's pd-epp-config.yaml, unchanged) ->
 * pd-router sidecar (NIXL v2) -> llm-d-inference-sim as prefiller and as decoder, on loopback.
 *
 * The upstream simulator rejects streamed prefills (the sidecar always sends stream:false on the prefill leg), answers
 * a prefill with its own dummy kv_transfer_params, counts it as finish_reason "remote_decode", and on the decoder
 * replaces the time to first token by the KV-transfer time when do_remote_prefill is set. The decoder here would take
 * LOCAL_TTFT to prefill by itself; with the prefiller's parameters its TTFT must be the KV-transfer time instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEpp, eppConfig, type EppHandle } from '../../src/epp/index.js';
import { startGateway, gatewayConfig, type GatewayHandle } from '../../src/gateway/index.js';
import { startSidecar, sidecarConfig, type SidecarHandle } from '../../src/sidecar/index.js';
import { PD_EPP_CONFIG } from '../epp/fixtures.js';
import { metricsText, metricValue, parseSse, postJson, waitFor } from '../helpers.js';
import { loggedRequests } from './klog.js';
import { MODEL, skipInterop, startUpstreamSim, type UpstreamSim } from './upstream.js';

const PREFILL_TTFT = 0.4; // seconds, the prefiller's time to first token
const LOCAL_TTFT = 1; // what the decoder would take to prefill locally
const KV_TRANSFER = 0.05; // the decoder's KV-transfer time (--kv-cache-transfer-latency)

let prefill: UpstreamSim;
let decode: UpstreamSim;
let sidecar: SidecarHandle;
let epp: EppHandle;
let gateway: GatewayHandle;

beforeAll(async () => {
  if (skipInterop()) return;
  [prefill, decode] = await Promise.all([
    startUpstreamSim(
      [
        '--model',
        MODEL,
        '--time-to-first-token',
        `${PREFILL_TTFT * 1000}ms`,
        '--inter-token-latency',
        '1ms',
        '--max-num-seqs',
        '16',
        '--log-http',
      ],
      { name: 'upstream prefill' },
    ),
    startUpstreamSim(
      [
        '--model',
        MODEL,
        '--time-to-first-token',
        `${LOCAL_TTFT * 1000}ms`,
        '--kv-cache-transfer-latency',
        `${KV_TRANSFER * 1000}ms`,
        '--inter-token-latency',
        '1ms',
        '--max-num-seqs',
        '16',
        '--log-http',
      ],
      { name: 'upstream decode' },
    ),
  ]);
  sidecar = await startSidecar(
    sidecarConfig({
      host: '127.0.0.1',
      port: 0,
      modelServerHost: '127.0.0.1',
      modelServerPort: decode.port,
      secureProxy: false,
    }),
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-interop-'));
  const endpointsFile = path.join(dir, 'endpoints.yaml');
  writeFileSync(
    endpointsFile,
    `endpoints:
- {name: prefill-0, address: "127.0.0.1", port: "${prefill.port}", labels: {llm-d.ai/role: prefill}}
- {name: decode-0, address: "127.0.0.1", port: "${sidecar.ports[0]}", labels: {llm-d.ai/role: decode}}
`,
  );
  epp = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      endpointsFile,
      configText: PD_EPP_CONFIG,
    }),
  );
  gateway = await startGateway(
    gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${epp.grpcPort}`, eppTls: false }),
  );
  // The EPP scrapes both upstream simulators (the decoder through the sidecar's pass-through of /metrics).
  await waitFor(
    () => epp.store.all().length === 2 && epp.store.all().every((endpoint) => endpoint.metrics.updatedAt > 0),
    10_000,
    'EPP metrics from both upstream simulators',
  );
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await epp?.close(1000);
  await sidecar?.close();
  await Promise.all([prefill?.close(), decode?.close()]);
});

let seq = 0;
/** A prompt no earlier request shares a block with (so the EPP's decider sends it to prefill). */
const uniquePrompt = (tag: string) =>
  `${tag} ${++seq}: ` + Array.from({ length: 60 }, (_, i) => `w${seq}x${i}`).join(' ');
const uniqueTokens = () => Array.from({ length: 64 }, (_, i) => 1000 * ++seq + i);

interface Case {
  api: string;
  path: string;
  body: (stream: boolean) => Record<string, unknown>;
}

const CASES: Case[] = [
  {
    api: 'chat',
    path: '/v1/chat/completions',
    body: (stream) => ({
      model: MODEL,
      messages: [{ role: 'user', content: uniquePrompt('chat') }],
      max_tokens: 6,
      ...(stream ? { stream, stream_options: { include_usage: true } } : {}),
    }),
  },
  {
    api: 'completions',
    path: '/v1/completions',
    body: (stream) => ({
      model: MODEL,
      prompt: uniquePrompt('completion'),
      max_tokens: 6,
      ...(stream ? { stream, stream_options: { include_usage: true } } : {}),
    }),
  },
  {
    api: 'generate',
    path: '/inference/v1/generate',
    body: (stream) => ({
      model: MODEL,
      token_ids: uniqueTokens(),
      sampling_params: { max_tokens: 6 },
      ...(stream ? { stream } : {}),
    }),
  },
];

/** APIs the upstream prefiller answers WITHOUT kv_transfer_params (v0.10.2). */
const NO_KV_PARAMS: Case[] = [
  {
    api: 'responses',
    path: '/v1/responses',
    body: (stream) => ({
      model: MODEL,
      input: uniquePrompt('responses'),
      max_output_tokens: 6,
      ...(stream ? { stream } : {}),
    }),
  },
  {
    api: 'messages',
    path: '/v1/messages',
    body: (stream) => ({
      model: MODEL,
      max_tokens: 6,
      messages: [{ role: 'user', content: uniquePrompt('messages') }],
      ...(stream ? { stream } : {}),
    }),
  },
];

const eppMetric = async (name: string, labels: Record<string, string>) =>
  metricValue(await metricsText(`http://127.0.0.1:${epp.metricsPort}`), name, labels) ?? 0;
const simMetric = async (sim: UpstreamSim, name: string, labels: Record<string, string> = {}) =>
  metricValue(await metricsText(sim.url), name, labels) ?? 0;

describe.skipIf(skipInterop())('NIXL v2 through pd-router against llm-d-inference-sim (prefill and decode)', () => {
  const ttftBefore = { count: 0, fast: 0, sum: 0 };

  beforeAll(async () => {
    ttftBefore.count = await simMetric(decode, 'vllm:time_to_first_token_seconds_count', { model_name: MODEL });
    ttftBefore.fast = await simMetric(decode, 'vllm:time_to_first_token_seconds_bucket', {
      model_name: MODEL,
      le: '0.1',
    });
    ttftBefore.sum = await simMetric(decode, 'vllm:time_to_first_token_seconds_sum', { model_name: MODEL });
  });

  for (const c of CASES) {
    for (const stream of [false, true]) {
      it(`${c.api}${stream ? ', streamed' : ''}: disaggregated by the EPP, prefilled and decoded upstream, answered 200`, async () => {
        const rid = `interop-${c.api}-${stream ? 's' : 'n'}`;
        const pdBefore = await eppMetric('llm_d_epp_disagg_decision_total', {
          decision_type: 'prefill-decode',
          model_name: MODEL,
        });
        const remoteDecodeBefore = await simMetric(prefill, 'vllm:request_success_total', {
          model_name: MODEL,
          finish_reason: 'remote_decode',
        });
        const started = performance.now();
        const r = await postJson(`${gateway.url}${c.path}`, c.body(stream), { 'x-request-id': rid }, 20_000);
        const elapsed = (performance.now() - started) / 1000;
        expect(r.status, r.text).toBe(200);
        expect(elapsed).toBeGreaterThanOrEqual(PREFILL_TTFT); // the prefill leg ran (and was not streamed: upstream would 400)
        if (stream) {
          expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
          const frames = parseSse(r.text);
          expect(frames.at(-1)!.data).toBe('[DONE]');
          const chunks = frames
            .filter((sseFrame) => sseFrame.data !== '[DONE]')
            .map((sseFrame) => JSON.parse(sseFrame.data));
          // Random-mode answers may be one token long, so one chunk can carry both the text and the finish reason.
          expect(chunks.length).toBeGreaterThanOrEqual(1);
          expect(
            chunks.some((value) =>
              value.choices?.some((ch: any) => ch.finish_reason === 'stop' || ch.finish_reason === 'length'),
            ),
          ).toBe(true);
        } else {
          expect(r.body.choices).toHaveLength(1);
          expect(['stop', 'length']).toContain(r.body.choices[0].finish_reason); // the decoder's answer, not the prefill's remote_decode
          expect(r.body.kv_transfer_params).toBeUndefined();
        }
        expect(
          await eppMetric('llm_d_epp_disagg_decision_total', { decision_type: 'prefill-decode', model_name: MODEL }),
        ).toBe(pdBefore + 1);
        // The upstream prefiller counted one remote_decode request for it ...
        await waitFor(
          async () =>
            (await simMetric(prefill, 'vllm:request_success_total', {
              model_name: MODEL,
              finish_reason: 'remote_decode',
            })) ===
            remoteDecodeBefore + 1,
          5_000,
          'remote_decode counted by the prefiller',
        );
        // ... having received the sidecar's prefill leg: do_remote_decode, stream:false, one token;
        const prefillLeg = loggedRequests(prefill.output()).filter(
          (request) => request.headers['x-request-id'] === rid,
        );
        expect(prefillLeg).toHaveLength(1);
        expect(prefillLeg[0].uri).toBe(c.path);
        const pb = prefillLeg[0].body as Record<string, any>;
        expect(pb.kv_transfer_params).toEqual({
          do_remote_decode: true,
          do_remote_prefill: false,
          remote_engine_id: null,
          remote_block_ids: null,
          remote_host: null,
          remote_port: null,
        });
        expect(pb.stream).toBe(false);
        expect(c.api === 'generate' ? pb.sampling_params.max_tokens : pb.max_tokens).toBe(1);
        // and the decoder got the client's request with the prefiller's own (dummy) kv_transfer_params, verbatim.
        const decodeLeg = loggedRequests(decode.output()).filter((request) => request.headers['x-request-id'] === rid);
        expect(decodeLeg).toHaveLength(1);
        const db = decodeLeg[0].body as Record<string, any>;
        expect(db.kv_transfer_params).toEqual({
          do_remote_decode: false,
          do_remote_prefill: true,
          remote_engine_id: 'DUMMY_ID',
          remote_block_ids: ['DUMMY_ID'],
          remote_host: 'DUMMY',
          remote_port: 1234,
          tp_size: 1,
        });
        expect(db.stream).toBe(stream ? true : undefined);
        expect(c.api === 'generate' ? db.sampling_params.max_tokens : db.max_tokens).toBe(6);
      });
    }
  }

  it("the decoder's TTFT was the KV-transfer time, not a local prefill (its vllm:time_to_first_token_seconds)", async () => {
    const n = CASES.length * 2;
    const count =
      (await simMetric(decode, 'vllm:time_to_first_token_seconds_count', { model_name: MODEL })) - ttftBefore.count;
    const fast =
      (await simMetric(decode, 'vllm:time_to_first_token_seconds_bucket', { model_name: MODEL, le: '0.1' })) -
      ttftBefore.fast;
    const sum =
      (await simMetric(decode, 'vllm:time_to_first_token_seconds_sum', { model_name: MODEL })) - ttftBefore.sum;
    expect(count).toBe(n);
    expect(fast).toBe(n); // every TTFT <= 100ms, where a local prefill takes LOCAL_TTFT (1s)
    expect(sum / count).toBeGreaterThanOrEqual(KV_TRANSFER * 0.95);
    expect(sum / count).toBeLessThan(0.1);
    // The prefiller's TTFT is its own long one.
    const pCount = await simMetric(prefill, 'vllm:time_to_first_token_seconds_count', { model_name: MODEL });
    const pSum = await simMetric(prefill, 'vllm:time_to_first_token_seconds_sum', { model_name: MODEL });
    expect(pSum / pCount).toBeGreaterThanOrEqual(PREFILL_TTFT * 0.95);
  });

  // llm-d-inference-sim v0.10.2 returns no kv_transfer_params for /v1/responses and /v1/messages prefills (an upstream
  // gap). pd-router's sidecar does not silently let the decoder recompute the prompt: it answers 502 saying so.
  for (const c of NO_KV_PARAMS) {
    for (const stream of [false, true]) {
      it(`${c.api}${stream ? ', streamed' : ''}: the upstream prefiller answers without kv_transfer_params -> 502 saying so (upstream gap, by design)`, async () => {
        const rid = `interop-${c.api}-gap-${stream ? 's' : 'n'}`;
        const remoteDecodeBefore = await simMetric(prefill, 'vllm:request_success_total', {
          model_name: MODEL,
          finish_reason: 'remote_decode',
        });
        const r = await postJson(`${gateway.url}${c.path}`, c.body(stream), { 'x-request-id': rid }, 20_000);
        expect(r.status).toBe(502);
        expect(r.body).toMatchObject({ object: 'error', type: 'BadGateway', code: 502 });
        expect(r.body.message).toBe(
          'the prefiller answered without kv_transfer_params; is vLLM started with --kv-transfer-config? (the decoder would recompute the prompt)',
        );
        const prefillLeg = loggedRequests(prefill.output()).filter(
          (request) => request.headers['x-request-id'] === rid,
        );
        expect(prefillLeg).toHaveLength(1);
        expect((prefillLeg[0].body as any).kv_transfer_params.do_remote_decode).toBe(true);
        // Upstream did treat it as a prefill (it counts remote_decode) but put no kv_transfer_params in the answer.
        expect(
          await simMetric(prefill, 'vllm:request_success_total', { model_name: MODEL, finish_reason: 'remote_decode' }),
        ).toBe(remoteDecodeBefore + 1);
        expect(loggedRequests(decode.output()).some((request) => request.headers['x-request-id'] === rid)).toBe(false);
      });
    }
  }
});

describe.skipIf(skipInterop())(
  '--prefill-failure-policy local serves those APIs by local prefill on the upstream decoder',
  () => {
    let local: SidecarHandle;
    beforeAll(async () => {
      local = await startSidecar(
        sidecarConfig({
          host: '127.0.0.1',
          port: 0,
          modelServerHost: '127.0.0.1',
          modelServerPort: decode.port,
          secureProxy: false,
          prefillFailurePolicy: 'local',
        }),
      );
    });
    afterAll(() => local?.close());

    for (const c of NO_KV_PARAMS) {
      it(`${c.api}: 200 from the decoder, which then pays its own prefill (TTFT ${LOCAL_TTFT}s)`, async () => {
        const rid = `interop-${c.api}-local`;
        const started = performance.now();
        const r = await postJson(
          `${local.url}${c.path}`,
          c.body(false),
          { 'x-request-id': rid, 'x-prefiller-host-port': prefill.hostPort },
          20_000,
        );
        expect(r.status, r.text).toBe(200);
        expect((performance.now() - started) / 1000).toBeGreaterThanOrEqual(PREFILL_TTFT + LOCAL_TTFT * 0.95);
        const decodeLeg = loggedRequests(decode.output()).filter((request) => request.headers['x-request-id'] === rid);
        expect(decodeLeg).toHaveLength(1);
        expect((decodeLeg[0].body as any).kv_transfer_params).toBeUndefined();
        expect(
          metricValue(await metricsText(local.url, '/sidecar/metrics'), 'pd_router_sidecar_prefill_fallbacks_total'),
        ).toBe(NO_KV_PARAMS.indexOf(c) + 1);
      });
    }
  },
);
