/**
 * endpoint-attribute-filter and endpoint-attribute-scorer (llm-d-router), over numeric attributes published by
 * core-metrics-extractor customMetrics: the threshold operators, onMissing and fallbackOnEmpty, adaptive and fixed
 * linear normalization, upstream's parameter rules (errors naming plugin and key), and a real EPP scraping two metric
 * servers on loopback and routing away from the hot one over ext_proc.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import {
  PLUGIN_REGISTRY,
  loadEndpointPickerConfig,
  type Endpoint,
  type Filter,
  type Plugin,
  type Scorer,
} from '../../src/epp/index.js';
import { waitFor } from '../helpers.js';
import { spec, startTestEpp, type TestEpp } from './fixtures.js';
import { routeOverExtProc } from './ext-proc-route.js';
import { build, context, endpoint } from './plugin-build.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const WAIT_MS = 30_000;
const TEST_MS = 90_000;

/** A core-metrics-extractor declaring `gpu` and `queue` custom metrics, for the plugins' load-time check. */
const extractor = build<Plugin>('core-metrics-extractor', {
  engineConfigs: [
    {
      name: 'vllm',
      queuedRequestsSpec: 'q',
      customMetrics: [
        { attributeKey: 'gpu', metricSpec: 'gpu_util' },
        { attributeKey: 'queue', metricSpec: 'q' },
      ],
    },
  ],
});
const withExtractor = { 'core-metrics-extractor': extractor };
const gpu = (utilization?: number): Endpoint =>
  endpoint({}, utilization === undefined ? {} : { custom: { gpu: utilization } });
const names = (es: readonly Endpoint[]) => es.map((candidate) => candidate.name);
const threshold = (operator: string, value: number, extra: Record<string, unknown> = {}) => ({
  attribute: 'gpu',
  algorithm: { type: 'threshold', threshold: { operator, value } },
  ...extra,
});

describe('endpoint-attribute-filter', () => {
  const [low, mid, high, none] = [gpu(0.2), gpu(0.5), gpu(0.9), gpu()];
  const all = [low, mid, high, none];

  it.each([
    ['LessThan', 0.5, [low, none]],
    ['LessThanOrEqual', 0.5, [low, mid, none]],
    ['GreaterThan', 0.5, [high, none]],
    ['GreaterThanOrEqual', 0.5, [mid, high, none]],
    ['Equal', 0.5, [mid, none]],
    ['NotEqual', 0.5, [low, high, none]],
  ])('%s %s (an endpoint without the attribute passes by default)', (op, value, kept) => {
    expect(
      names(build<Filter>('endpoint-attribute-filter', threshold(op, value), withExtractor).filter(context(), all)),
    ).toEqual(names(kept));
  });

  it('onMissing: Fail drops endpoints without the attribute; fallbackOnEmpty returns every candidate when none passes', () => {
    expect(
      names(
        build<Filter>(
          'endpoint-attribute-filter',
          threshold('LessThan', 0.5, { onMissing: 'Fail' }),
          withExtractor,
        ).filter(context(), all),
      ),
    ).toEqual(names([low]));
    expect(
      build<Filter>(
        'endpoint-attribute-filter',
        threshold('LessThan', 0.1, { onMissing: 'Fail' }),
        withExtractor,
      ).filter(context(), all),
    ).toEqual([]);
    expect(
      names(
        build<Filter>(
          'endpoint-attribute-filter',
          threshold('LessThan', 0.1, { onMissing: 'Fail', fallbackOnEmpty: true }),
          withExtractor,
        ).filter(context(), all),
      ),
    ).toEqual(names(all));
  });

  it('parameters follow upstream: required attribute and threshold, known operators, Pass|Fail ("" = Pass), value default 0', () => {
    const params = PLUGIN_REGISTRY['endpoint-attribute-filter'].params;
    expect(
      params.safeParse({ algorithm: { type: 'threshold', threshold: { operator: 'LessThan', value: 1 } } }).success,
    ).toBe(false);
    expect(params.safeParse(threshold('Below', 1)).success).toBe(false);
    expect(params.safeParse({ attribute: 'gpu', algorithm: { type: 'percentile' } }).success).toBe(false);
    expect(params.safeParse({ attribute: 'gpu', algorithm: { type: 'threshold' } }).success).toBe(false);
    expect(params.safeParse(threshold('LessThan', 1, { onMissing: 'Skip' })).success).toBe(false);
    expect(params.parse(threshold('LessThan', 1, { onMissing: '' }))).toMatchObject({ onMissing: 'Pass' });
    expect(
      params.parse({ attribute: 'gpu', algorithm: { type: 'threshold', threshold: { operator: 'Equal' } } }),
    ).toMatchObject({ algorithm: { threshold: { value: 0 } } });
  });

  it('an attribute spelled "Attribute/Producer" without producer is an error; an attribute nothing produces is warned about', () => {
    expect(() =>
      build(
        'endpoint-attribute-filter',
        { ...threshold('LessThan', 1), attribute: 'GPUUtilization/dcgm-extractor' },
        withExtractor,
      ),
    ).toThrow(/write attribute: "GPUUtilization" and producer: "dcgm-extractor"/);
    const warnings: string[] = [];
    const f = build<Filter>(
      'endpoint-attribute-filter',
      { ...threshold('LessThan', 1), attribute: 'GPUUtilization', producer: 'dcgm-extractor' },
      withExtractor,
      warnings,
    );
    expect(warnings).toEqual([
      'parameter "producer": pd-router has no producer "dcgm-extractor" of endpoint attributes (only core-metrics-extractor customMetrics): every endpoint lacks "GPUUtilization"',
    ]);
    expect(names(f.filter(context(), [low, high]))).toEqual(names([low, high]));
    const undeclared: string[] = [];
    build(
      'endpoint-attribute-filter',
      { ...threshold('LessThan', 1), attribute: 'temperature' },
      withExtractor,
      undeclared,
    );
    expect(undeclared).toEqual([
      'no core-metrics-extractor engineConfigs declare customMetrics attributeKey "temperature": every endpoint lacks it',
    ]);
    const explicit: string[] = [];
    build(
      'endpoint-attribute-filter',
      { ...threshold('LessThan', 1), producer: 'core-metrics-extractor' },
      withExtractor,
      explicit,
    );
    expect(explicit).toEqual([]);
  });
});

describe('endpoint-attribute-scorer', () => {
  const score = (params: Record<string, unknown>, es: Endpoint[]) =>
    Array.from(
      build<Scorer>('endpoint-attribute-scorer', { attributeKey: 'gpu', ...params }, withExtractor).score(
        context(),
        es,
      ),
    ).map((candidate) => Math.round(candidate * 1e6) / 1e6);
  const es = [gpu(0.2), gpu(0.5), gpu(1), gpu()];

  it('adaptiveRange (default): (v − min)/(max − min) over the candidates that have it, inverted when lower is better; missing → 0', () => {
    expect(score({ algorithm: { type: 'linear_higher_is_better' } }, es)).toEqual([0, 0.375, 1, 0]);
    expect(score({ algorithm: { type: 'linear_lower_is_better' } }, es)).toEqual([1, 0.625, 0, 0]);
    expect(score({ algorithm: { type: 'linear_lower_is_better', normalization: { adaptiveRange: {} } } }, es)).toEqual([
      1, 0.625, 0, 0,
    ]);
  });

  it('adaptiveRange: every candidate that has the attribute equal → 1', () => {
    expect(score({ algorithm: { type: 'linear_lower_is_better' } }, [gpu(0.3), gpu(0.3), gpu()])).toEqual([1, 1, 0]);
  });

  it('fixedRange: the configured bounds, values clamped into them', () => {
    expect(
      score({ algorithm: { type: 'linear_lower_is_better', normalization: { fixedRange: { min: 0, max: 0.8 } } } }, es),
    ).toEqual([0.75, 0.375, 0, 0]);
    expect(
      score(
        { algorithm: { type: 'linear_higher_is_better', normalization: { fixedRange: { min: 0.4, max: 0.6 } } } },
        es,
      ),
    ).toEqual([0, 0.5, 1, 0]);
  });

  it('parameters follow upstream: required attributeKey and type, at most one normalization, min < max', () => {
    const params = PLUGIN_REGISTRY['endpoint-attribute-scorer'].params;
    const ok = (candidate: Record<string, unknown>) => params.safeParse(candidate).success;
    expect(ok({ algorithm: { type: 'linear_lower_is_better' } })).toBe(false);
    expect(ok({ attributeKey: 'gpu' })).toBe(false);
    expect(ok({ attributeKey: 'gpu', algorithm: { type: 'log' } })).toBe(false);
    expect(
      ok({
        attributeKey: 'gpu',
        algorithm: {
          type: 'linear_lower_is_better',
          normalization: { fixedRange: { min: 0, max: 1 }, adaptiveRange: {} },
        },
      }),
    ).toBe(false);
    expect(
      ok({
        attributeKey: 'gpu',
        algorithm: { type: 'linear_lower_is_better', normalization: { fixedRange: { min: 1, max: 1 } } },
      }),
    ).toBe(false);
    expect(
      ok({ attributeKey: 'gpu', algorithm: { type: 'linear_lower_is_better', normalization: { fixedRange: {} } } }),
    ).toBe(false);
    expect(
      ok({
        attributeKey: 'gpu',
        algorithm: { type: 'linear_lower_is_better', normalization: { fixedRange: { min: 0, max: 1 } } },
      }),
    ).toBe(true);
  });

  it('a config with a mistyped or unknown key fails naming the plugin and the key', () => {
    const load = (params: string) => () =>
      loadEndpointPickerConfig(
        `${LLMD}plugins:\n- type: endpoint-attribute-scorer\n  name: gpu-score\n  parameters: ${params}\n- type: decode-filter\nschedulingProfiles: [{name: d, plugins: [{pluginRef: decode-filter}, {pluginRef: gpu-score}]}]`,
      );
    expect(load('{attributeKey: gpu, algorithm: {type: linear_lower_is_better, normalisation: {}}}')).toThrow(
      ConfigError,
    );
    expect(load('{attributeKey: gpu, algorithm: {type: linear_lower_is_better, normalisation: {}}}')).toThrow(
      /plugin "gpu-score" \(type endpoint-attribute-scorer\): unknown parameter "algorithm.normalisation"/,
    );
    expect(
      load(
        '{attributeKey: gpu, algorithm: {type: linear_lower_is_better, normalization: {fixedRange: {min: 2, max: 1}}}}',
      ),
    ).toThrow(
      /plugin "gpu-score" \(type endpoint-attribute-scorer\): parameter "algorithm.normalization": fixedRange needs min < max/,
    );
  });
});

describe('over ext_proc, with the attribute scraped from the model servers', () => {
  const servers: http.Server[] = [];
  let t: TestEpp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    }
  });

  async function metricsServer(gpuUtil: number): Promise<number> {
    const s = http.createServer((req, res) => {
      res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': 'text/plain' });
      res.end(
        `vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} ${gpuUtil}\n`,
      );
    });
    servers.push(s);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return (s.address() as AddressInfo).port;
  }

  const CONFIG = `${LLMD}plugins:
- type: metrics-data-source
- type: core-metrics-extractor
  parameters:
    engineConfigs:
    - name: vllm
      queuedRequestsSpec: vllm:num_requests_waiting
      runningRequestsSpec: vllm:num_requests_running
      kvUsageSpec: vllm:kv_cache_usage_perc
      customMetrics:
      - {attributeKey: GPUUtilization, metricSpec: 'DCGM_FI_DEV_GPU_UTIL{gpu="0"}'}
- type: endpoint-attribute-filter
  name: gpu-utilization-filter
  parameters:
    attribute: GPUUtilization
    onMissing: Fail
    algorithm: {type: threshold, threshold: {operator: LessThanOrEqual, value: 90}}
- type: endpoint-attribute-scorer
  name: gpu-utilization-scorer
  parameters:
    attributeKey: GPUUtilization
    algorithm: {type: linear_lower_is_better, normalization: {fixedRange: {min: 0, max: 100}}}
- type: max-score-picker
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors: [{pluginRef: core-metrics-extractor}]
schedulingProfiles:
- name: default
  plugins: [{pluginRef: gpu-utilization-filter}, {pluginRef: gpu-utilization-scorer}, {pluginRef: max-score-picker}]
`;

  it(
    'the filter drops the endpoint above the threshold and the scorer orders the rest',
    async () => {
      const [hot, warm, cool] = await Promise.all([metricsServer(97), metricsServer(60), metricsServer(20)]);
      const pool = [
        spec('hot', '127.0.0.1', undefined, {}, hot),
        spec('warm', '127.0.0.1', undefined, {}, warm),
        spec('cool', '127.0.0.1', undefined, {}, cool),
      ];
      const destinations = async (config: string) => {
        const epp = (t = await startTestEpp(config, pool, { refreshMetricsInterval: 20 }));
        expect(epp.epp.config.warnings).toEqual([]);
        await waitFor(
          () => epp.epp.store.all().every((candidate) => candidate.metrics.custom?.GPUUtilization !== undefined),
          WAIT_MS,
          'the EPP to scrape GPUUtilization from the three servers',
        );
        const out = [];
        for (let i = 0; i < 3; i++)
          out.push(
            (await routeOverExtProc(epp.client, { model: 'm', prompt: 'hi' })).set.get(
              'x-gateway-destination-endpoint',
            ),
          );
        await epp.close();
        t = undefined;
        return out;
      };
      expect(await destinations(CONFIG)).toEqual(Array(3).fill(`127.0.0.1:${cool}`));
      // Higher is better: the hot one would win, but the filter removed it.
      expect(await destinations(CONFIG.replace('linear_lower_is_better', 'linear_higher_is_better'))).toEqual(
        Array(3).fill(`127.0.0.1:${warm}`),
      );
    },
    TEST_MS,
  );
});
