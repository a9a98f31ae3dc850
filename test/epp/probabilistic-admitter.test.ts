/**
 * probabilistic-admitter against llm-d-router's semantics (pkg/epp/framework/plugins/requestcontrol/admitter/
 * probabilisticadmitter): the saturation and shedding curve, who is never shed, the refusal as the Director answers it,
 * parameters checked at load, and the upstream sample config loaded unchanged and driving decisions. Randomness is the
 * project's seeded generator, recorded, so every assertion is exact.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/index.js';
import { loadEndpointPickerConfig } from '../../src/epp/config/loader.js';
import { RequestDirector } from '../../src/epp/director.js';
import { AdmissionDenied, InferenceError } from '../../src/epp/framework/errors.js';
import { EppMetrics } from '../../src/epp/metrics.js';
import {
  admitterSaturation,
  sheddingProbability,
  type ProbabilisticAdmitterSettings,
} from '../../src/epp/plugins/admitter/probabilistic-admitter.js';
import { upstreamText } from '../fixtures/upstream-configs/index.js';
import { metricValue } from '../helpers.js';
import { startEpp, type EppHandle } from '../../src/epp/index.js';
import { waitFor } from '../helpers.js';
import { ExtProcTestClient, body, headers, setHeadersOf } from './ext-proc-client.js';
import { decoded, loadError, loopbackEppConfig, seeded, spec, storeWith } from './fixtures.js';
import { context, endpoint } from './plugin-build.js';

const DEFAULTS: ProbabilisticAdmitterSettings = { queueDepthThreshold: 5, kvCacheUtilThreshold: 0.8, power: 5, k: 300 };
const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const SAMPLE = 'llm-d-router-ebab687/deploy/config/probabilistic-admitter-epp-config.yaml';

/** A seeded random that keeps every value it returned. */
function recorded(seed = 1): { random: () => number; drawn: number[] } {
  const next = seeded(seed);
  const drawn: number[] = [];
  return { random: () => drawn[drawn.push(next()) - 1], drawn };
}

describe('probabilistic-admitter: the curve', () => {
  it("saturation is the candidates' mean of max(queue / queueDepthThreshold, kvUsage / kvCacheUtilThreshold)", () => {
    const endpoints = [
      endpoint({}, { waitingQueueSize: 5, kvCacheUsage: 0.2 }), // max(1, 0.25) = 1
      endpoint({}, { waitingQueueSize: 0, kvCacheUsage: 0.4 }), // max(0, 0.5) = 0.5
      endpoint({}, { waitingQueueSize: 0, kvCacheUsage: 0 }), // 0 (never loaded)
    ];
    expect(admitterSaturation(DEFAULTS, endpoints)).toBeCloseTo(0.5, 12);
    expect(admitterSaturation({ ...DEFAULTS, queueDepthThreshold: 10 }, endpoints)).toBeCloseTo((0.5 + 0.5) / 3, 12);
  });

  it("p = min(sat^power × k, 1): upstream's table with the defaults (dead zone, ~2.3% at 0.15, total from ≈0.32)", () => {
    const p = (sat: number) => sheddingProbability(DEFAULTS, sat);
    expect(p(0.08)).toBeLessThan(1e-3);
    expect(p(0.15)).toBeCloseTo(0.0228, 4);
    expect(p(0.2)).toBeCloseTo(0.096, 4);
    expect(p(0.3)).toBeCloseTo(0.729, 4);
    expect(p(Math.pow(1 / 300, 1 / 5))).toBeCloseTo(1, 9);
    expect(p(0.34)).toBe(1);
    expect(p(3)).toBe(1);
    expect(sheddingProbability({ ...DEFAULTS, power: 2, k: 1 }, 0.5)).toBeCloseTo(0.25, 12);
  });
});

describe('probabilistic-admitter: decisions', () => {
  it('a sheddable request (priority < 0) is refused exactly when random() < p; the message is upstream’s', () => {
    const { random, drawn } = recorded(11);
    // power 1, k 1: p = saturation = 0.5 (queue 5 of 5 on one endpoint, the other idle).
    const endpoints = [endpoint({}, { waitingQueueSize: 5 }), endpoint({}, {})];
    // Build one whose random is recorded: through the loader, which passes `random` to the factory.
    const config = loadEndpointPickerConfig(
      HEAD + 'plugins:\n- type: probabilistic-admitter\n  parameters: {power: 1, k: 1}\n- type: random-picker\n',
      { random },
    );
    const [pa] = config.admitters;
    const outcomes: Array<string | undefined> = [];
    for (let i = 0; i < 200; i++) outcomes.push(pa.admit(context({ priority: -1 }), endpoints));
    // The loader's random may be shared with the picker, which this test never runs: every draw is the admitter's.
    expect(drawn).toHaveLength(200);
    outcomes.forEach((outcome, i) =>
      expect(outcome).toBe(
        drawn[i] < 0.5
          ? 'inference error: ResourceExhausted - probabilistic-admitter: rejected, saturation=0.500 prob=0.50'
          : undefined,
      ),
    );
    const refused = outcomes.filter((outcome) => outcome !== undefined).length;
    expect(refused).toBeGreaterThan(60);
    expect(refused).toBeLessThan(140);
  });

  it('priority >= 0 is always admitted, without drawing; so is a request with no candidates', () => {
    const { random, drawn } = recorded();
    const config = loadEndpointPickerConfig(
      HEAD + 'plugins:\n- type: probabilistic-admitter\n- type: random-picker\n',
      {
        random,
      },
    );
    const [pa] = config.admitters;
    const saturated = [endpoint({}, { waitingQueueSize: 50, kvCacheUsage: 1 })];
    for (const priority of [0, 1, 100]) expect(pa.admit(context({ priority }), saturated)).toBeUndefined();
    expect(pa.admit(context({ priority: -1 }), [])).toBeUndefined();
    expect(drawn).toHaveLength(0);
    // Saturated with the defaults: p = 1, refused whatever the draw.
    expect(pa.admit(context({ priority: -1 }), saturated)).toBe(
      'inference error: ResourceExhausted - probabilistic-admitter: rejected, saturation=10.000 prob=1.00',
    );
    // Idle: p = 0, admitted whatever the draw.
    expect(pa.admit(context({ priority: -5 }), [endpoint({}, {})])).toBeUndefined();
  });
});

describe('probabilistic-admitter: parameters at load', () => {
  const yaml = (parameters: string) =>
    `${HEAD}plugins:\n- type: probabilistic-admitter\n  name: pa\n  parameters: ${parameters}\n- type: random-picker\n`;

  it('defaults are upstream’s', () => {
    const config = loadEndpointPickerConfig(yaml('{}'));
    const [admitter] = config.admitters;
    expect('settings' in admitter && admitter.settings).toEqual(DEFAULTS);
  });

  for (const [bad, key] of [
    ['{unknownKey: 1}', 'unknownKey'],
    ['{queueDepthThreshold: 0}', 'queueDepthThreshold'],
    ['{queueDepthThreshold: 2.5}', 'queueDepthThreshold'],
    ['{kvCacheUtilThreshold: 0}', 'kvCacheUtilThreshold'],
    ['{power: 0}', 'power'],
    ['{power: "5"}', 'power'],
    ['{k: -1}', 'k'],
  ] as const) {
    it(`${bad}: a load error naming the plugin and ${key}`, () => {
      const message = loadError(yaml(bad));
      expect(message).toMatch(/"pa"|probabilistic-admitter/);
      expect(message).toContain(key);
    });
  }

  it('listed in a scheduling profile it is a load error (an admitter is not a filter, scorer or picker)', () => {
    expect(
      loadError(
        HEAD +
          'plugins:\n- type: probabilistic-admitter\n- type: random-picker\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: probabilistic-admitter\n',
      ),
    ).toMatch(/probabilistic-admitter.*is not a filter, scorer or picker/);
  });
});

describe("probabilistic-admitter: upstream's sample config, unchanged, through the Director", () => {
  function director(random: () => number) {
    const metrics = new EppMetrics();
    const text = upstreamText(SAMPLE);
    const config = loadEndpointPickerConfig(text, { metrics, random });
    const priorities: Record<string, number> = { batch: -1, interactive: 1 };
    const store = storeWith([spec('a', '127.0.0.2'), spec('b', '127.0.0.3')], {
      a: { waitingQueueSize: 5, kvCacheUsage: 0.1 },
      b: { waitingQueueSize: 0, kvCacheUsage: 0.8 },
    });
    const d = new RequestDirector(config, store, metrics, silentLogger(), {
      rewrite: () => undefined,
      priority: (objective) => priorities[objective] ?? 0,
    });
    let n = 0;
    const route = (objective: string) => {
      const parsed = d.parse(
        `r${++n}`,
        { ':path': '/v1/completions', 'x-gateway-inference-objective': objective },
        Buffer.from(JSON.stringify({ model: 'm', prompt: 'hi' })),
      );
      return d.schedule(parsed.request, undefined);
    };
    return { config, metrics, store, route };
  }

  it('loads; the admitter is the only one; the only warning is the (neutered) detector not shedding by itself', () => {
    const { config } = director(seeded());
    expect(config.warnings).toHaveLength(1);
    expect(config.warnings[0]).toMatch(/^not enforced by pd-router .*saturationDetector \(utilization-detector/);
    expect(config.admitters.map((admitter) => admitter.type)).toEqual(['probabilistic-admitter']);
  });

  it('saturated pool: sheddable requests get 500 "request cannot be admitted", others are scheduled', async () => {
    const { route, metrics } = director(seeded(5));
    let error: unknown;
    try {
      route('batch');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AdmissionDenied);
    const denied = error as InferenceError;
    expect(denied.status).toBe(500);
    expect(denied.dropReason).toBeUndefined();
    expect(denied.body).toBe(
      'inference error: Internal - request cannot be admitted: inference error: ResourceExhausted - probabilistic-admitter: rejected, saturation=1.000 prob=1.00',
    );
    for (const objective of ['interactive', '']) expect(route(objective).destination).toMatch(/^127\.0\.0\.[23]:8000$/);
    const text = await metrics.registry.metrics();
    // Refused before the scheduler, as upstream: not a scheduling failure; the admission is timed at "Admission".
    expect(metricValue(text, 'llm_d_epp_scheduler_attempts_total', { status: 'failure' })).toBeUndefined();
    expect(
      metricValue(text, 'llm_d_epp_plugin_duration_seconds_count', {
        extension_point: 'Admission',
        plugin_type: 'probabilistic-admitter',
      }),
    ).toBe(3);
  });

  it('a partly loaded pool sheds a seeded share of sheddable requests and no other', () => {
    const { random, drawn } = recorded(9);
    const { route, store } = director(random);
    // saturation = mean(max(1/5, 0), max(0, 0.2/0.8)) = 0.225 → p = 0.225^5 × 300 ≈ 0.173
    const [a, b] = store.all();
    Object.assign(a.metrics, { waitingQueueSize: 1, kvCacheUsage: 0 });
    Object.assign(b.metrics, { waitingQueueSize: 0, kvCacheUsage: 0.2 });
    const p = Math.pow(0.225, 5) * 300;
    let refused = 0;
    let admitted = 0;
    for (let i = 0; i < 300; i++) {
      const before = drawn.length;
      try {
        route('batch');
        admitted++;
        // random-picker draws after the admitter: the admitter's draw is the first of this request.
        expect(drawn[before]).toBeGreaterThanOrEqual(p);
      } catch (e) {
        expect(e).toBeInstanceOf(AdmissionDenied);
        expect(drawn[before]).toBeLessThan(p);
        expect((e as InferenceError).message).toContain('saturation=0.225 prob=0.17');
        refused++;
      }
    }
    expect(refused + admitted).toBe(300);
    expect(refused).toBeGreaterThan(20);
    expect(refused).toBeLessThan(90);
    for (let i = 0; i < 50; i++) expect(() => route('interactive')).not.toThrow();
  });
});

describe('probabilistic-admitter over ext_proc: an EPP with the sample config, its endpoints scraped', () => {
  let epp: EppHandle | undefined;
  let client: ExtProcTestClient | undefined;
  let server: http.Server | undefined;
  afterEach(async () => {
    client?.close();
    await epp?.close(1_000);
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    [epp, client, server] = [undefined, undefined, undefined];
  });

  it('a sheddable request on a saturated pool gets 500 "request cannot be admitted"; a critical one is routed', async () => {
    // The endpoint's /metrics: a full waiting queue (5 of queueDepthThreshold 5), so saturation 1 and p = 1. (The
    // simulator cannot be held at a chosen queue depth; only the scrape matters to the EPP's decision.)
    server = http.createServer((req, res) =>
      res.end(req.url === '/metrics' ? 'vllm:num_requests_waiting 5\nvllm:kv_cache_usage_perc 0.1\n' : ''),
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const priorities: Record<string, number> = { batch: -1, interactive: 1 };
    epp = await startEpp(loopbackEppConfig(upstreamText(SAMPLE), [spec('stub', '127.0.0.1', undefined, {}, port)]), {
      random: seeded(),
      requestPolicies: { rewrite: () => undefined, priority: (objective) => priorities[objective] ?? 0 },
    });
    const e = epp;
    await waitFor(
      () => e.store.all().length === 1 && e.store.all()[0].metrics.waitingQueueSize === 5,
      30_000,
      'the EPP to scrape the endpoint',
    );
    client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`);
    const ask = async (objective: string) => {
      const call = client!.open();
      call.send(
        headers({ ':path': '/v1/completions', 'x-request-id': objective, 'x-gateway-inference-objective': objective }),
        body(JSON.stringify({ model: 'm', prompt: 'hello' }), true),
      );
      const [first] = await call.waitFor(1, 30_000);
      call.end();
      return first;
    };
    const refused = await ask('batch');
    expect(decoded(refused.immediate_response)).toMatchObject({
      status: { code: 'InternalServerError' },
      body: 'inference error: Internal - request cannot be admitted: inference error: ResourceExhausted - probabilistic-admitter: rejected, saturation=1.000 prob=1.00',
    });
    expect(setHeadersOf(refused.immediate_response!.headers)).toEqual([]);
    const routed = await ask('interactive');
    expect(routed.immediate_response).toBeFalsy();
    const set = new Map(
      setHeadersOf(routed.request_headers!.response.header_mutation).map(([key, value]) => [key, value]),
    );
    expect(set.get('x-gateway-destination-endpoint')).toBe(`127.0.0.1:${port}`);
  }, 60_000);
});
