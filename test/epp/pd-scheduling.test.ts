/**
 * P/D scheduling through the real loader, scheduler and disagg-profile-handler: the scenarios of llm-d's
 * `disagg/scheduler_test.go` (TestPDSchedule) and `disagg_profile_handler_test.go`, plus pd-router's
 * onPrefillUnavailable policy and decision metrics.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { DecisionInput } from '../../src/decider/index.js';
import {
  InferenceError,
  PLUGIN_REGISTRY,
  PREFILLER_HOST_PORT,
  loadEndpointPickerConfig,
  type PluginDefinition,
} from '../../src/epp/index.js';
import { RequestDirector } from '../../src/epp/director.js';
import { silentLogger } from '../../src/common/index.js';
import { encodeSessionToken } from '../../src/epp/plugins/scorer/session-affinity.js';
import type { SchedulingContext } from '../../src/epp/framework/types.js';
import { harness, seeded, spec, storeWith } from './fixtures.js';
import { metricValue } from '../helpers.js';

/** The upstream test's scheduler: role filters, prefix and load-aware scorers, nonCachedTokens=2. */
const PD_TEST_CONFIG = (extra = '') => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: decode-filter
- type: prefix-cache-scorer
- type: load-aware-scorer
- type: max-score-picker
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 2}
- type: disagg-profile-handler
  parameters:
    deciders: {prefill: prefix-based-pd-decider}
${extra}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer}, {pluginRef: load-aware-scorer}, {pluginRef: max-score-picker}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}, {pluginRef: load-aware-scorer}, {pluginRef: max-score-picker}]
`;

const LONG = 'The quick brown fox jumps over the lazy dog, again and again, for a long while.';
/** 4 bytes = 1 estimate token, below nonCachedTokens=2 (upstream's 5-char prompt is 1 token under its test tokenizer). */
const SHORT = 'hey!';

const expectError = (fn: () => unknown, status: number, message: string, dropReason?: string) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InferenceError);
    expect((e as InferenceError).status).toBe(status);
    expect((e as InferenceError).message).toBe(message);
    expect((e as InferenceError).dropReason).toBe(dropReason);
    return;
  }
  throw new Error('expected an InferenceError');
};

describe('TestPDSchedule scenarios', () => {
  it('no candidates → 503 rejected-no-endpoints', () => {
    const h = harness(PD_TEST_CONFIG(), storeWith([]));
    expectError(
      () => h.route(LONG),
      503,
      'failed to find endpoint candidates for serving the request',
      'rejected-no-endpoints',
    );
  });

  it('decode pod only → decode-only (prefill chosen, no prefill endpoint)', () => {
    const h = harness(PD_TEST_CONFIG(), storeWith([spec('d0', '10.0.0.2', 'decode')]));
    const r = h.route(LONG);
    expect(r.destination).toBe('10.0.0.2:8000');
    expect(r.ctx.decision).toMatchObject({ type: 'decode-only', reason: 'no-prefill-endpoint' });
    expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBeUndefined();
  });

  it('prefill pod only → 429 (decode filters drained)', () => {
    const h = harness(PD_TEST_CONFIG(), storeWith([spec('p0', '10.0.0.1', 'prefill')]));
    expectError(() => h.route(LONG), 429, 'no endpoints available for the given request', 'rejected-saturated');
  });

  it('1P1D long prompt → P+D; the same prompt again → D only (prefix cached on the decode pod)', () => {
    const h = harness(
      PD_TEST_CONFIG(),
      storeWith([spec('p0', '10.0.0.1', 'prefill'), spec('d0', '10.0.0.2', 'decode')]),
    );
    const first = h.route(LONG);
    expect(first.destination).toBe('10.0.0.2:8000');
    expect(first.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('10.0.0.1:8000');
    expect(first.ctx.decision).toMatchObject({ type: 'prefill-decode', reason: 'above-threshold' });
    const again = h.route(LONG);
    expect(again.destination).toBe('10.0.0.2:8000');
    expect(again.ctx.request.headers[PREFILLER_HOST_PORT]).toBeUndefined();
    expect(again.ctx.decision).toMatchObject({ type: 'decode-only', reason: 'cached' });
  });

  it('1P1D short prompt → D only', () => {
    const h = harness(
      PD_TEST_CONFIG(),
      storeWith([spec('p0', '10.0.0.1', 'prefill'), spec('d0', '10.0.0.2', 'decode')]),
    );
    const r = h.route(SHORT);
    expect(r.destination).toBe('10.0.0.2:8000');
    expect(r.ctx.decision).toMatchObject({ type: 'decode-only', reason: 'below-threshold' });
  });

  it('an unlabeled pod serves as decode, and prefill still runs', () => {
    const h = harness(PD_TEST_CONFIG(), storeWith([spec('p0', '10.0.0.1', 'prefill'), spec('u0', '10.0.0.3')]));
    const r = h.route(LONG);
    expect(r.destination).toBe('10.0.0.3:8000');
    expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('10.0.0.1:8000');
  });

  it('1P2D → the decode pod with the better load-aware score wins', () => {
    for (const [busy, idle] of [
      ['d0', 'd1'],
      ['d1', 'd0'],
    ] as const) {
      const store = storeWith(
        [spec('p0', '10.0.0.1', 'prefill'), spec('d0', '10.0.0.2', 'decode'), spec('d1', '10.0.0.4', 'decode')],
        {
          [busy]: { waitingQueueSize: 10 },
          [idle]: { waitingQueueSize: 1 },
        },
      );
      const r = harness(PD_TEST_CONFIG(), store).route(LONG);
      expect(r.result.results.get('decode')!.targets[0].name).toBe(idle);
      expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('10.0.0.1:8000');
    }
  });

  it('IPv6 prefill endpoints are bracketed in x-prefiller-host-port', () => {
    const h = harness(PD_TEST_CONFIG(), storeWith([spec('p0', 'fd00::1', 'prefill'), spec('d0', 'fd00::2', 'decode')]));
    const r = h.route(LONG);
    expect(r.destination).toBe('[fd00::2]:8000');
    expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('[fd00::1]:8000');
  });
});

describe('disagg-profile-handler behaviours', () => {
  const pd = () =>
    storeWith([
      spec('p0', '10.0.0.1', 'prefill'),
      spec('d0', '10.0.0.2', 'decode'),
      spec('d1', '10.0.0.4', 'decode', {}, 8000),
    ]);

  it("consults the decider exactly once, with the decode profile's first pick, its prefix match and the prefill candidates", () => {
    const seen: DecisionInput[] = [];
    const spy: PluginDefinition = {
      kind: 'decider',
      description: 'records its inputs',
      params: z.object({}),
      create: (ctx) => ({
        type: ctx.type,
        name: ctx.name,
        decide: (i: DecisionInput) => (seen.push(i), { disaggregate: true, reason: 'spy' }),
      }),
    };
    const yaml = PD_TEST_CONFIG('- type: spy-decider').replace(
      'prefill: prefix-based-pd-decider',
      'prefill: spy-decider',
    );
    const config = loadEndpointPickerConfig(yaml, { registry: { ...PLUGIN_REGISTRY, 'spy-decider': spy } });
    const store = pd();
    const director = new RequestDirector(config, store, config.metrics, silentLogger());
    const parsed = director.parse(
      'r1',
      { ':path': '/v1/completions' },
      Buffer.from(JSON.stringify({ model: 'm', prompt: LONG })),
    );
    const r = director.schedule(parsed.request, undefined);
    expect(seen).toHaveLength(1);
    expect(seen[0].decode!.endpoint.hostPort).toBe(r.destination);
    expect(seen[0].decode!.prefix).toEqual({ matchedBlocks: 0, totalBlocks: 1, blockSizeTokens: 64 });
    expect(seen[0].prefillCandidates.map((endpoint) => endpoint.id)).toEqual(['default/p0']);
    expect(seen[0].prefixMatch?.('default/p0')).toEqual({ matchedBlocks: 0, totalBlocks: 1, blockSizeTokens: 64 });
    expect(seen[0].request.tokenCount).toBe(Math.ceil(Buffer.byteLength(LONG) / 4));
    expect(r.ctx.decision).toMatchObject({ type: 'prefill-decode', reason: 'spy' });
  });

  it('settle (the request is routed) drops the prompt, body and per-cycle state, keeps what the response phase reads, and the prefix index still learns the pick', () => {
    // A ResponseReceived hook (session affinity: the decode pick's token) and a ResponseComplete spy run after settle.
    const completed: Array<{ requestId: string; session: string | undefined; decision: string | undefined }> = [];
    const spy: PluginDefinition = {
      kind: 'scorer',
      description: 'records what ResponseComplete sees',
      params: z.object({}),
      create: (ctx) => ({
        type: ctx.type,
        name: ctx.name,
        score: (_cycle: unknown, endpoints: readonly unknown[]) => endpoints.map(() => 0),
        responseComplete: (cycle: SchedulingContext) =>
          completed.push({
            requestId: cycle.request.requestId,
            session: cycle.request.headers['x-session'],
            decision: cycle.decision?.type,
          }),
      }),
    };
    const config = loadEndpointPickerConfig(PD_TEST_CONFIG('- type: session-affinity-scorer\n- type: complete-spy'), {
      registry: { ...PLUGIN_REGISTRY, 'complete-spy': spy },
      random: seeded(),
    });
    const h = { director: new RequestDirector(config, pd(), config.metrics, silentLogger()), n: 0 };
    const route = (headers: Record<string, string> = {}) => {
      const id = `r${++h.n}`;
      const parsed = h.director.parse(
        id,
        { ':path': '/v1/completions', 'x-request-id': id, ...headers },
        Buffer.from(JSON.stringify({ model: 'm', prompt: LONG })),
      );
      return h.director.schedule(parsed.request, undefined);
    };
    const first = route({ 'x-session': 's1' });
    expect(first.ctx.decision).toMatchObject({ type: 'prefill-decode' });
    expect(first.ctx.request.prompts.length).toBeGreaterThan(0);
    expect(first.ctx.state.size).toBeGreaterThan(0);
    h.director.settle(first);
    expect(first.ctx.request.prompts).toEqual([]);
    expect(first.ctx.request.body).toBeUndefined();
    expect(first.ctx.state.size).toBe(0);
    // What response-phase hooks, logs and traces read is still there.
    expect(first.ctx.request.requestId).toBe('r1');
    expect(first.ctx.request.model).toBe('m');
    expect(first.ctx.request.headers['x-session']).toBe('s1');
    expect(first.ctx.request.headers[PREFILLER_HOST_PORT]).toBeDefined();
    expect(first.ctx.decision).toMatchObject({ type: 'prefill-decode' });
    const decodeId = first.result.results.get(first.result.primaryProfile)!.targets[0].id;
    expect(h.director.responseHeaders(first)).toEqual([['x-session-token', encodeSessionToken(decodeId)]]);
    h.director.complete(first);
    expect(completed).toEqual([{ requestId: 'r1', session: 's1', decision: 'prefill-decode' }]);
    // The same prompt again: the decode pick now holds its block, so the decider finds it cached.
    const second = route();
    expect(second.destination).toBe(first.destination);
    expect(second.ctx.decision).toMatchObject({ type: 'decode-only', reason: 'cached' });
  });

  it('onPrefillUnavailable: fail → 503 when prefill was chosen but no prefill endpoint is eligible', async () => {
    const yaml = PD_TEST_CONFIG().replace(
      'deciders: {prefill: prefix-based-pd-decider}',
      'deciders: {prefill: prefix-based-pd-decider}\n    onPrefillUnavailable: fail',
    );
    const h = harness(yaml, storeWith([spec('d0', '10.0.0.2', 'decode')]));
    expectError(
      () => h.route(LONG),
      503,
      'prefill was required but no prefill endpoint is available',
      'rejected-no-endpoints',
    );
    const text = await h.config.metrics.registry.metrics();
    expect(
      metricValue(text, 'llm_d_epp_disagg_decision_reason_total', {
        decision_type: 'rejected',
        reason: 'no-prefill-endpoint',
      }),
    ).toBe(1);
    expect(metricValue(text, 'llm_d_epp_disagg_decision_total')).toBeUndefined();
  });

  it('prefill-first: prefill runs first without a decider, its pick is the peer; a failed prefill still lets decode run', () => {
    const yaml = PD_TEST_CONFIG().replace('deciders: {prefill: prefix-based-pd-decider}', 'stageOrder: PrefillFirst');
    const h = harness(yaml, pd());
    const r = h.route(SHORT);
    expect(r.ctx.decision).toMatchObject({ type: 'prefill-decode', reason: 'prefill-first' });
    expect(r.ctx.peerEndpoint?.name).toBe('p0');
    expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('10.0.0.1:8000');
    const noPrefill = harness(yaml, storeWith([spec('d0', '10.0.0.2', 'decode')])).route(SHORT);
    expect(noPrefill.ctx.decision).toMatchObject({ type: 'decode-only', reason: 'no-prefill-endpoint' });
  });

  it('prefill-first with a prefill decider is a config error', () => {
    const yaml = PD_TEST_CONFIG().replace(
      'deciders: {prefill: prefix-based-pd-decider}',
      'deciders: {prefill: prefix-based-pd-decider}\n    stageOrder: prefill-first',
    );
    expect(() => loadEndpointPickerConfig(yaml)).toThrow(
      /disagg-profile-handler.*prefill-first cannot be combined with a prefill decider/,
    );
  });

  it('no decider → the prefill stage never runs', () => {
    const yaml = PD_TEST_CONFIG().replace(
      '    deciders: {prefill: prefix-based-pd-decider}',
      '    profiles: {decode: decode, prefill: prefill}',
    );
    const r = harness(yaml, pd()).route(LONG);
    expect(r.ctx.decision).toMatchObject({ type: 'decode-only', reason: 'no-decider' });
  });

  it('legacy flat parameters (decodeProfile, prefillProfile, deciderPluginName) work with custom profile names', () => {
    const yaml = PD_TEST_CONFIG()
      .replace(
        '    deciders: {prefill: prefix-based-pd-decider}',
        '    decodeProfile: dec\n    prefillProfile: pre\n    deciderPluginName: prefix-based-pd-decider',
      )
      .replace('- name: prefill', '- name: pre')
      .replace('- name: decode', '- name: dec');
    const r = harness(yaml, pd()).route(LONG);
    expect(r.result.primaryProfile).toBe('dec');
    expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('10.0.0.1:8000');
  });

  it('counts decisions: llm_d_epp_disagg_decision_total, its legacy twin (model "unknown" when empty) and the reason counter', async () => {
    const h = harness(PD_TEST_CONFIG(), pd());
    h.route(LONG, { model: 'llama' });
    h.route(LONG, { model: 'llama' });
    h.route(SHORT, { model: 'llama' });
    const text = await h.config.metrics.registry.metrics();
    expect(text).toContain(
      'llm_d_epp_disagg_decision_total{plugin_name="disagg-profile-handler",plugin_type="disagg-profile-handler",model_name="llama",decision_type="prefill-decode"} 1',
    );
    expect(text).toContain(
      'llm_d_epp_disagg_decision_total{plugin_name="disagg-profile-handler",plugin_type="disagg-profile-handler",model_name="llama",decision_type="decode-only"} 2',
    );
    expect(text).toContain(
      'llm_d_inference_scheduler_disagg_decision_total{model_name="llama",decision_type="decode-only"} 2',
    );
    expect(text).toContain('llm_d_epp_disagg_decision_reason_total{decision_type="decode-only",reason="cached"} 1');
    expect(text).toContain(
      'llm_d_epp_disagg_decision_reason_total{decision_type="decode-only",reason="below-threshold"} 1',
    );
    h.config.metrics.recordDecision({ name: 'x', type: 'disagg-profile-handler' }, '', 'decode-only', 'cached');
    expect(await h.config.metrics.registry.metrics()).toContain(
      'llm_d_inference_scheduler_disagg_decision_total{model_name="unknown",decision_type="decode-only"} 1',
    );
  });

  it('E/PD: the encode decider runs the encode profile; x-encoder-hosts-ports lists every encode pick', () => {
    const yaml = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- {type: decode-filter}
- {type: encode-filter}
- {type: always-disagg-multimodal-decider}
- {name: two, type: max-score-picker, parameters: {maxNumOfEndpoints: 2}}
- type: disagg-profile-handler
  parameters: {deciders: {encode: always-disagg-multimodal-decider}}
schedulingProfiles:
- {name: decode, plugins: [{pluginRef: decode-filter}]}
- {name: encode, plugins: [{pluginRef: encode-filter}, {pluginRef: two}]}
`;
    const store = storeWith([
      spec('d0', '10.0.0.2', 'decode'),
      spec('e0', '10.0.0.5', 'encode'),
      spec('e1', '10.0.0.6', 'encode'),
    ]);
    const h = harness(yaml, store);
    const parse = (content: unknown) =>
      h.director.parse(
        'r',
        { ':path': '/v1/chat/completions' },
        Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content }] })),
      );
    const image = h.director.schedule(parse([{ type: 'image_url', image_url: { url: 'x' } }]).request, undefined);
    expect(image.ctx.decision?.type).toBe('encode-decode');
    expect(image.ctx.request.headers['x-encoder-hosts-ports'].split(',').sort()).toEqual([
      '10.0.0.5:8000',
      '10.0.0.6:8000',
    ]);
    const text = h.director.schedule(parse('hello').request, undefined);
    expect(text.ctx.decision?.type).toBe('decode-only');
    expect(text.ctx.request.headers['x-encoder-hosts-ports']).toBeUndefined();
  });

  it('pd-profile-handler (deprecated): primaryPort routes to the decode IP on that port, the original ip:port rides in x-data-parallel-host-port, pd_decision_total counts', async () => {
    const yaml = PD_TEST_CONFIG().replace(
      /- type: disagg-profile-handler\n {2}parameters:\n {4}deciders: \{prefill: prefix-based-pd-decider\}/,
      '- type: pd-profile-handler\n  parameters: {primaryPort: 8200}',
    );
    const h = harness(yaml, storeWith([spec('p0', '10.0.0.1', 'prefill'), spec('d0', '10.0.0.2', 'decode')]));
    expect(h.config.warnings.join()).toMatch(/pd-profile-handler.*deprecated upstream; use disagg-profile-handler/);
    const r = h.route(LONG);
    expect(r.destination).toBe('10.0.0.2:8200');
    expect(r.ctx.request.headers['x-data-parallel-host-port']).toBe('10.0.0.2:8000');
    expect(r.ctx.request.headers[PREFILLER_HOST_PORT]).toBe('10.0.0.1:8000');
    const text = await h.config.metrics.registry.metrics();
    expect(metricValue(text, 'llm_d_epp_pd_decision_total', { model_name: 'm', decision_type: 'prefill-decode' })).toBe(
      1,
    );
    expect(
      metricValue(text, 'llm_d_inference_scheduler_pd_decision_total', {
        model_name: 'm',
        decision_type: 'prefill-decode',
      }),
    ).toBe(1);
    expect(metricValue(text, 'llm_d_epp_disagg_decision_total')).toBeUndefined();
    expect(() => loadEndpointPickerConfig(yaml.replace('primaryPort: 8200', 'primaryPort: 70000'))).toThrow(
      /parameter "primaryPort": must be between 1 and 65535/,
    );
  });
});
