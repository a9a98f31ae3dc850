/**
 * The EPP's two metric families (--metrics-family): names, types, help, label names and buckets equal to upstream's
 * (GAIE v1.4.0 + llm-d-inference-scheduler v0.7.1, and llm-d-router ebab687), the flag choosing what is served, one
 * measurement reaching both families, and the rules each family's upstream applies (pool gauges, cached tokens,
 * requests counted once scheduled).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EppMetrics, type PoolEndpoint } from '../../src/epp/metrics.js';
import { body, headers, responseBody, responseHeaders } from './ext-proc-client.js';
import { PD_EPP_CONFIG, spec, startTestEpp, type TestEpp } from './fixtures.js';
import { familiesOf, upstreamReference } from './upstream-metrics/exposition.js';
import { metricValue, metricsText } from '../helpers.js';

/** GAIE v1.4.0 families pd-router does not register: upstream records them only with components pd-router lacks. */
const GAIE_NOT_EMITTED = [
  // The latency predictor (predicted-latency scorer and its SLO hooks).
  'inference_objective_inference_request_metric',
  'inference_objective_request_ttft_seconds',
  'inference_objective_request_predicted_ttft_seconds',
  'inference_objective_request_ttft_prediction_duration_seconds',
  'inference_objective_request_tpot_seconds',
  'inference_objective_request_predicted_tpot_seconds',
  'inference_objective_request_tpot_prediction_duration_seconds',
  'inference_objective_request_slo_violation_total',
  // Flow control.
  'inference_extension_flow_control_dispatch_cycle_duration_seconds',
  'inference_extension_flow_control_queue_bytes',
  'inference_extension_flow_control_queue_size',
  'inference_extension_flow_control_request_enqueue_duration_seconds',
  'inference_extension_flow_control_request_queue_duration_seconds',
];
/** pd-router's own metrics, served in every mode. */
const OWN = ['llm_d_epp_disagg_decision_reason_total', 'llm_d_epp_extproc_request_buffer_bytes']; // (and llm_d_epp_extproc_connections_drained_total once a connection is drained)

/** One record through every EppMetrics entry point, so each family has a series. */
function exercise(eppMetrics: EppMetrics): void {
  eppMetrics.registerPoolGauges('pool', () => [{ name: 'a', waiting: 1, running: 2, kv: 0.5, fresh: true }]);
  const s = eppMetrics.request('model', 'target', 'flow', 0);
  s.accepted(100);
  s.running.inc();
  s.error('ResourceExhausted');
  s.duration.observe(1);
  s.responseSize.observe(10);
  s.ntpot.observe(0.1);
  s.usage(10, 5, 2);
  s.ttft(true, 0.5);
  s.tpot(0.01);
  eppMetrics.scheduled('target', { name: 'a', namespace: 'default', port: 8000 }, 0.001);
  eppMetrics.schedulingFailed('target', 0.001);
  eppMetrics.requestProcessed(0.001);
  eppMetrics.pluginDuration('Filter', 'decode-filter', 'decode-filter').observe(0.0001);
  eppMetrics.recordDecision(
    { name: 'h', type: 'disagg-profile-handler' },
    'target',
    'prefill-decode',
    'above-threshold',
  );
  eppMetrics.recordPdDecision({ name: 'p', type: 'pd-profile-handler' }, 'target', 'decode-only');
  const p = eppMetrics.prefixIndexer({ name: 'x', type: 'approx-prefix-cache-producer' });
  p.size(3);
  p.match(0.5, 64);
  eppMetrics.pollErrors('file-discovery').inc();
  eppMetrics.extractErrors('metrics-data-source', 'core-metrics-extractor').inc();
  eppMetrics.streamOpened();
  eppMetrics.streamClosed('OK', 0.1);
  eppMetrics.modelRewriteDecision('rw', 'model', 'target');
}

async function served(family: 'gaie' | 'llm-d' | 'both') {
  const m = new EppMetrics(undefined, family);
  exercise(m);
  return familiesOf(await m.registry.metrics());
}

describe('metric families: the same schema as upstream', () => {
  const gaie = upstreamReference('gaie-v1.4.0.json');
  const llmd = upstreamReference('llm-d-router-ebab687.json');
  const gaieServed = gaie.filter((familySchema) => !GAIE_NOT_EMITTED.includes(familySchema.name));

  it('gaie: every GAIE v1.4.0 / v0.7.1 family pd-router can fill, exactly as upstream (type, help, labels, buckets)', async () => {
    const got = await served('gaie');
    expect([...got.keys()].sort()).toEqual([...gaieServed.map((familySchema) => familySchema.name), ...OWN].sort());
    for (const ref of gaieServed) {
      const { samples, ...schema } = got.get(ref.name)!;
      expect(samples, ref.name).toBeGreaterThan(0);
      expect(schema, ref.name).toEqual(ref);
    }
    // The ones left out are exactly those of components pd-router does not have.
    expect(GAIE_NOT_EMITTED.every((count) => gaie.some((familySchema) => familySchema.name === count))).toBe(true);
  });

  it('llm-d: every llm-d-router family pd-router fills, exactly as upstream', async () => {
    const got = await served('llm-d');
    expect([...got.keys()].sort()).toEqual([...llmd.map((familySchema) => familySchema.name), ...OWN].sort());
    for (const ref of llmd) {
      const { samples: _, ...schema } = got.get(ref.name)!;
      expect(schema, ref.name).toEqual(ref);
    }
  });

  it("both (the default): the union, and pd-router's reason counter in every mode", async () => {
    const got = await served('both');
    expect([...got.keys()].sort()).toEqual(
      [
        ...gaieServed.map((familySchema) => familySchema.name),
        ...llmd.map((familySchema) => familySchema.name),
        ...OWN,
      ].sort(),
    );
    expect(new EppMetrics().family).toBe('both');
  });
});

describe('metric families: one measurement, every family', () => {
  let t: TestEpp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });
  const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
  const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);
  const model = { model_name: 'food-review', target_model_name: 'food-review' };

  /** One request over ext_proc with a streamed answer carrying usage, as Envoy would relay it. */
  async function streamedRequest(prompt: string): Promise<void> {
    const call = t!.client.open();
    call.send(
      headers({ ':path': '/v1/completions', 'x-gateway-inference-fairness-id': 'tenant-a' }),
      body(JSON.stringify({ model: 'food-review', prompt, stream: true }), true),
    );
    await call.waitFor(2);
    call.send(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }));
    await call.waitFor(3);
    call.send(responseBody('data: {"choices":[{"text":"Hi"}]}\n\n', false));
    await call.waitFor(4);
    call.send(
      responseBody(
        'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":10,"total_tokens":17}}\n\ndata: [DONE]\n\n',
        true,
      ),
    );
    await call.waitFor(5);
    call.end();
    await call.ended;
  }

  it("both: a request updates each family with the same values, under each family's labels", async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P, D]);
    await streamedRequest('hello');
    const text = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    const llmd = { ...model, fairness_id: 'tenant-a', priority: '0' };
    const pairs: Array<[string, string, Record<string, string>, Record<string, string>]> = [
      ['llm_d_epp_request_total', 'inference_objective_request_total', llmd, model],
      ['llm_d_epp_request_size_bytes_sum', 'inference_objective_request_sizes_sum', llmd, model],
      ['llm_d_epp_request_duration_seconds_sum', 'inference_objective_request_duration_seconds_sum', llmd, model],
      ['llm_d_epp_response_size_bytes_sum', 'inference_objective_response_sizes_sum', llmd, model],
      ['llm_d_epp_request_input_tokens_sum', 'inference_objective_input_tokens_sum', llmd, model],
      ['llm_d_epp_request_output_tokens_sum', 'inference_objective_output_tokens_sum', llmd, model],
      [
        'llm_d_epp_request_ntpot_seconds_sum',
        'inference_objective_normalized_time_per_output_token_seconds_sum',
        llmd,
        model,
      ],
      ['llm_d_epp_request_running', 'inference_objective_running_requests', llmd, { model_name: 'food-review' }],
      [
        'llm_d_epp_scheduler_e2e_duration_seconds_sum',
        'inference_extension_scheduler_e2e_duration_seconds_sum',
        {},
        {},
      ],
      [
        'llm_d_epp_scheduler_attempts_total',
        'inference_extension_scheduler_attempts_total',
        { status: 'success', endpoint_name: 'decode-0' },
        { status: 'success' },
      ],
      [
        'llm_d_epp_plugin_duration_seconds_count',
        'inference_extension_plugin_duration_seconds_count',
        { extension_point: 'Picker', plugin_name: 'max-score-picker' },
        { extension_point: 'Picker', plugin_name: 'max-score-picker' },
      ],
      ['llm_d_epp_prefix_indexer_hit_ratio_count', 'inference_extension_prefix_indexer_hit_ratio_count', {}, {}],
      [
        'llm_d_epp_disagg_decision_total',
        'llm_d_inference_scheduler_disagg_decision_total',
        { model_name: 'food-review' },
        { model_name: 'food-review' },
      ],
    ];
    for (const [a, b, la, lb] of pairs) {
      const va = metricValue(text, a, la);
      expect(va, a).toBeDefined();
      expect(metricValue(text, b, lb), `${b} = ${a}`).toBe(va);
    }
    expect(metricValue(text, 'inference_objective_request_total', model)).toBe(1);
    expect(metricValue(text, 'inference_objective_input_tokens_sum', model)).toBe(7);
    expect(metricValue(text, 'inference_objective_running_requests', { model_name: 'food-review' })).toBe(0);
    // GAIE v1.4.0 observes 0 cached tokens when the usage has no prompt_tokens_details; llm-d-router skips it.
    expect(metricValue(text, 'inference_objective_prompt_cached_tokens_count', model)).toBe(1);
    expect(metricValue(text, 'inference_objective_prompt_cached_tokens_sum', model)).toBe(0);
    expect(metricValue(text, 'llm_d_epp_request_cached_tokens_count', llmd)).toBeUndefined();
    // TTFT and TPOT: llm-d only (GAIE's come from its latency predictor).
    expect(metricValue(text, 'llm_d_epp_request_ttft_seconds_count', { ...llmd, streaming: 'true' })).toBe(1);
    expect(text).not.toContain('inference_objective_request_ttft_seconds');
    expect(metricValue(text, 'inference_extension_info', { build_ref: 'pd-router' })).toBe(1);
  });

  it('a rejected request counts as an error, not as a request (as upstream: counted once scheduled)', async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P]); // no decode endpoint: the decode profile finds nothing
    const call = t.client.open();
    call.send(
      headers({ ':path': '/v1/completions' }),
      body(JSON.stringify({ model: 'food-review', prompt: 'x' }), true),
    );
    const [r] = await call.waitFor(1);
    expect(r.immediate_response).toBeTruthy();
    call.end();
    await call.ended;
    const text = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    expect(
      metricValue(text, 'inference_objective_request_error_total', { ...model, error_code: 'ResourceExhausted' }),
    ).toBe(1);
    expect(
      metricValue(text, 'llm_d_epp_request_error_total', {
        ...model,
        error_code: 'ResourceExhausted',
        fairness_id: 'default-flow',
      }),
    ).toBe(1);
    expect(metricValue(text, 'inference_objective_request_total')).toBeUndefined();
    expect(metricValue(text, 'llm_d_epp_request_total')).toBeUndefined();
    expect(metricValue(text, 'inference_extension_scheduler_attempts_total', { status: 'failure' })).toBe(1);
  });

  for (const family of ['gaie', 'llm-d'] as const) {
    it(`--metrics-family ${family}: only that family is served, and requests still record in it`, async () => {
      t = await startTestEpp(PD_EPP_CONFIG, [P, D], { metricsFamily: family });
      await streamedRequest('hello again');
      const names = [...familiesOf(await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`)).keys()].filter((count) =>
        /^(llm_d_|inference_)/.test(count),
      );
      const gaieName = (count: string) => /^(inference_|llm_d_inference_scheduler_)/.test(count);
      expect(
        names
          // pd-router's own counters, in every family: OWN, and the tracing counters the running EPP registers.
          .filter((count) => !OWN.includes(count) && !count.startsWith('llm_d_epp_tracing_'))
          .every((count) => (family === 'gaie' ? gaieName(count) : !gaieName(count))),
        names.join(' '),
      ).toBe(true);
      expect(names).toContain(family === 'gaie' ? 'inference_objective_request_total' : 'llm_d_epp_request_total');
      for (const own of OWN) expect(names).toContain(own);
    });
  }
});

describe("pool gauges: each upstream's arithmetic", () => {
  const snapshotOf = (eps: PoolEndpoint[]) => () => eps;
  const value = (text: string, name: string, labels: Record<string, string> = { name: 'pool' }) =>
    metricValue(text, name, labels);

  it('GAIE: integer queue average, per-pod queue for every endpoint; llm-d: means and sample deviations to two decimals', async () => {
    const m = new EppMetrics();
    const eps: PoolEndpoint[] = [
      { name: 'a-rank-0', waiting: 1, running: 1, kv: 0.2, fresh: true },
      { name: 'b-rank-0', waiting: 2, running: 4, kv: 0.5, fresh: true },
      { name: 'c-rank-0', waiting: 9, running: 9, kv: 0.9, fresh: false },
    ];
    m.registerPoolGauges('pool', snapshotOf(eps));
    const text = await m.registry.metrics();
    expect(value(text, 'inference_pool_ready_pods')).toBe(2);
    expect(value(text, 'inference_pool_average_queue_size')).toBe(1); // Go: int(3) / int(2)
    expect(value(text, 'inference_pool_average_kv_cache_utilization')).toBeCloseTo(0.35, 12);
    expect(value(text, 'inference_pool_per_pod_queue_size', { name: 'pool', model_server_pod: 'c-rank-0' })).toBe(9);
    expect(value(text, 'llm_d_epp_ready_endpoints')).toBe(2);
    expect(value(text, 'llm_d_epp_average_queue_size')).toBe(1.5);
    expect(value(text, 'llm_d_epp_std_dev_queue_size')).toBe(0.71); // sqrt(0.5 / (2 - 1)), rounded
    expect(value(text, 'llm_d_epp_std_dev_running_requests')).toBe(2.12);
    expect(value(text, 'llm_d_epp_per_endpoint_queue_size', { name: 'pool', model_server_endpoint: 'a-rank-0' })).toBe(
      1,
    );
  });

  it('no fresh endpoint: ready count 0, the averages keep their last values (none before the first)', async () => {
    const eps: PoolEndpoint[] = [{ name: 'a', waiting: 4, running: 0, kv: 0.25, fresh: false }];
    const m = new EppMetrics();
    m.registerPoolGauges('pool', snapshotOf(eps));
    let text = await m.registry.metrics();
    expect(value(text, 'inference_pool_ready_pods')).toBe(0);
    expect(value(text, 'inference_pool_average_queue_size')).toBeUndefined();
    expect(value(text, 'llm_d_epp_average_queue_size')).toBeUndefined();
    eps[0].fresh = true;
    text = await m.registry.metrics();
    expect(value(text, 'inference_pool_average_queue_size')).toBe(4);
    eps[0].fresh = false;
    eps[0].waiting = 0;
    text = await m.registry.metrics();
    expect(value(text, 'inference_pool_ready_pods')).toBe(0);
    expect(value(text, 'inference_pool_average_queue_size')).toBe(4);
    expect(value(text, 'llm_d_epp_average_queue_size')).toBe(4);
    expect(value(text, 'llm_d_epp_per_endpoint_queue_size', { name: 'pool', model_server_endpoint: 'a' })).toBe(0);
  });
});

describe('label values from clients are bounded in both families', () => {
  it('beyond 100 model names, the rest are reported as "other"', async () => {
    const m = new EppMetrics();
    for (let i = 0; i < 150; i++) m.request(`model-${i}`, `model-${i}`).accepted(1);
    const text = await m.registry.metrics();
    expect(
      metricValue(text, 'inference_objective_request_total', { model_name: 'other', target_model_name: 'other' }),
    ).toBe(50);
    expect(metricValue(text, 'llm_d_epp_request_total', { model_name: 'other', target_model_name: 'other' })).toBe(50);
    expect(m.request('model-3', 'model-3')).toBe(m.request('model-3', 'model-3'));
  });
});
