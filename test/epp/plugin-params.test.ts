/**
 * Plugin parameters of llm-d v0.7.1 (GAIE v1.4) and llm-d-router, honoured or mapped by their stated rule: the GAIE
 * prefix-index parameters on prefix-cache-scorer, v0.7.1's prefixPluginType/prefixPluginName, the data-parallel
 * handler, by-label-selector, the saturation detector as a filter, running-requests-size-scorer, and the parameters
 * that are deprecated (warned about) or name a feature pd-router lacks (errors naming plugin and key).
 */
import { describe, expect, it } from 'vitest';
import { loadEndpointPickerConfig } from '../../src/epp/index.js';
import { prefixState } from '../../src/epp/prefix/match-state.js';
import { fixtureText } from '../fixtures/upstream-configs/index.js';
import { harness, loadError, spec, storeWith } from './fixtures.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const GAIE = 'apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n';
/** 102 estimate tokens: two 64-token blocks. */
const LONG = 'Tell me about the history of Rome in great detail. '.repeat(8);
/** 300 blocks of 64 tokens. */
const HUGE = 'z'.repeat(4 * 64 * 300);

const decodeStore = (blockSize = 16) =>
  storeWith([spec('p0', '10.0.0.1', 'prefill'), spec('d0', '10.0.0.2', 'decode')], {
    d0: { cacheBlockSize: blockSize },
    p0: { cacheBlockSize: blockSize },
  });
const blocksOf = (yaml: string, prompt: string, blockSize = 16) =>
  prefixState(harness(yaml, decodeStore(blockSize)).route(prompt).ctx, 'approx-prefix-cache-producer')!;

describe('prefix-cache-scorer with GAIE v1.4/v1.5 prefix-index parameters', () => {
  const V071_PD = fixtureText('llm-d-inference-scheduler-v0.7.1/deploy/config/pd-epp-config.yaml');
  const V071_SIM_PD = fixtureText('llm-d-inference-scheduler-v0.7.1/deploy/config/sim-pd-epp-config.yaml');

  it('the loader moves them to the producer it creates (GAIE v1.5); maxPrefixBlocksToMatch keeps its reach in tokens', () => {
    const c = loadEndpointPickerConfig(V071_PD);
    expect(c.producers.map((dataProducer) => dataProducer.name)).toEqual(['approx-prefix-cache-producer']);
    // 256 blocks × 16 reported tokens = 4096 tokens = 64 blocks of 64 (the block floor).
    expect(blocksOf(V071_PD, HUGE, 16)).toMatchObject({ blockSizeTokens: 64, totalBlocks: 64 });
    // A model server with 64-token blocks: 256 × 64 tokens = 256 blocks.
    expect(blocksOf(V071_PD, HUGE, 64)).toMatchObject({ blockSizeTokens: 64, totalBlocks: 256 });
    // autoTune false with blockSizeTokens 16: the configured size, whatever the servers report.
    expect(blocksOf(V071_SIM_PD, HUGE, 64)).toMatchObject({ blockSizeTokens: 64, totalBlocks: 64 });
  });

  it('llm-d-router producer caps: tokens win; tokens 0 hands over to blocks (effective blocks); a cap below one block matches nothing', () => {
    const producer = (params: string) =>
      `${LLMD}plugins: [{type: approx-prefix-cache-producer, parameters: ${params}}, {type: prefix-cache-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: prefix-cache-scorer}]}]`;
    expect(blocksOf(producer('{maxPrefixTokensToMatch: 16384, maxPrefixBlocksToMatch: 3}'), HUGE).totalBlocks).toBe(
      256,
    );
    expect(blocksOf(producer('{maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 3}'), HUGE).totalBlocks).toBe(3);
    expect(blocksOf(producer('{maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 0}'), HUGE).totalBlocks).toBe(300);
    expect(blocksOf(producer('{maxPrefixTokensToMatch: 10}'), HUGE).totalBlocks).toBe(0);
    expect(blocksOf(producer('{}'), HUGE).totalBlocks).toBe(300); // 131072 tokens = 2048 blocks
  });

  it('lruCapacityPerServer bounds the blocks remembered per endpoint', () => {
    const yaml = (cap: number) => `${GAIE}plugins:
- {type: prefix-cache-scorer, parameters: {autoTune: false, blockSizeTokens: 64, lruCapacityPerServer: ${cap}}}
- {type: decode-filter}
schedulingProfiles: [{name: a, plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}]}]`;
    for (const [cap, matched] of [
      [2, 0],
      [31250, 1],
    ] as const) {
      const h = harness(yaml(cap), storeWith([spec('d0', '10.0.0.2', 'decode')]));
      for (const p of ['A', 'B', 'C']) h.route(p.repeat(200)); // one 64-token block each
      const again = h.route('A'.repeat(200));
      expect(
        prefixState(again.ctx, 'approx-prefix-cache-producer')!.matched.get('default/d0') ?? 0,
        `capacity ${cap}`,
      ).toBe(matched);
    }
  });

  it('blockSize is read as blockSizeTokens with a deprecation warning; hashBlockSize has no effect and says so', () => {
    const yaml = `${GAIE}plugins: [{type: prefix-cache-scorer, parameters: {autoTune: false, blockSize: 128, hashBlockSize: 10}}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: prefix-cache-scorer}]}]`;
    const c = loadEndpointPickerConfig(yaml);
    expect(c.warnings).toEqual([
      `plugin "prefix-cache-scorer" (type prefix-cache-scorer): parameter "hashBlockSize" (GAIE v0.x's block size in characters) has no effect, as in GAIE v1.x; the block size is blockSizeTokens or the model server's`,
      'plugin "approx-prefix-cache-producer" (type approx-prefix-cache-producer): parameter "blockSize" is deprecated; read as blockSizeTokens=128',
    ]);
    expect(blocksOf(yaml, HUGE).blockSizeTokens).toBe(128);
  });

  it('where GAIE v1.5 would drop them silently, or values are bad, the load fails naming the scorer and the key', () => {
    const profile = 'schedulingProfiles: [{name: a, plugins: [{pluginRef: prefix-cache-scorer}]}]';
    expect(
      loadError(
        `${GAIE}plugins: [{type: approx-prefix-cache-producer}, {type: prefix-cache-scorer, parameters: {maxPrefixBlocksToMatch: 10}}]\n${profile}`,
      ),
    ).toMatch(
      /plugin "prefix-cache-scorer" \(type prefix-cache-scorer\): parameter "maxPrefixBlocksToMatch" configures the prefix index; with an approx-prefix-cache-producer configured \("approx-prefix-cache-producer"\), set it there/,
    );
    expect(
      loadError(
        `${GAIE}plugins: [{type: prefix-cache-scorer, parameters: {lruCapacityPerServer: 9, prefixMatchInfoProducerName: x}}]\n${profile}`,
      ),
    ).toMatch(/with prefixMatchInfoProducerName set, set it on that producer/);
    expect(
      loadError(
        `${GAIE}plugins: [{type: prefix-cache-scorer, parameters: {autoTune: false}}, {name: s2, type: prefix-cache-scorer, parameters: {autoTune: true}}]\n${profile}`,
      ),
    ).toMatch(
      /plugin "prefix-cache-scorer" \(type prefix-cache-scorer\) and plugin "s2" \(type prefix-cache-scorer\) set different prefix-index parameters/,
    );
    expect(
      loadError(`${GAIE}plugins: [{type: prefix-cache-scorer, parameters: {lruCapacityPerServer: 0}}]\n${profile}`),
    ).toBe(
      'EndpointPickerConfig: plugin "prefix-cache-scorer" (type prefix-cache-scorer): parameter "lruCapacityPerServer": must be > 0',
    );
    expect(
      loadError(
        `${GAIE}plugins: [{type: prefix-cache-scorer, parameters: {matchLengthWeight: 0.5, matchLengthScaleTokens: 0}}]\n${profile}`,
      ),
    ).toMatch(/parameter "matchLengthScaleTokens": must be > 0 when matchLengthWeight is > 0/);
  });
});

describe("llm-d v0.7.1's prefixPluginType / prefixPluginName", () => {
  /** Two producers: p1 matches at most one block, p2 the whole prompt; s2 reads p2. */
  const config = (handlerParams: string) => `${LLMD}plugins:
- {name: p1, type: approx-prefix-cache-producer, parameters: {maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 1}}
- {name: p2, type: approx-prefix-cache-producer}
- {name: s2, type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: p2}}
- {type: queue-scorer}
- {type: prefill-filter}
- {type: decode-filter}
- {type: prefix-based-pd-decider, parameters: {nonCachedTokens: 1}}
- {type: pd-profile-handler, parameters: {primaryPort: 0${handlerParams}}}
- {type: no-hit-lru-scorer, parameters: {prefixPluginName: s2, prefixPluginType: prefix-cache-scorer, lruSize: 0}}
schedulingProfiles:
- {name: prefill, plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]}
- {name: decode, plugins: [{pluginRef: decode-filter}, {pluginRef: s2}, {pluginRef: no-hit-lru-scorer}]}
`;
  /** The prefix match the decider saw (its detail), which comes from the handler's producer. */
  const decidedTotalBlocks = (yaml: string) =>
    (harness(yaml, decodeStore()).route(LONG).ctx.decision!.detail as { totalBlocks: number }).totalBlocks;

  it('select the producer whose match the decider reads: a prefix-cache-scorer (its producer) or a producer; default the first', () => {
    // p1 matches at most one block of LONG, p2 both.
    expect(decidedTotalBlocks(config(''))).toBe(1);
    expect(decidedTotalBlocks(config(', prefixPluginName: s2'))).toBe(2);
    expect(decidedTotalBlocks(config(', prefixPluginType: approx-prefix-cache-producer, prefixPluginName: p2'))).toBe(
      2,
    );
    expect(decidedTotalBlocks(config(', prefixPluginName: p1, prefixMatchInfoProducerName: p1'))).toBe(1);
    expect(decidedTotalBlocks(config(', prefixMatchInfoProducerName: p2'))).toBe(2);
  });

  it('values written in the config are checked', () => {
    expect(loadError(config(', prefixPluginName: nope'))).toMatch(
      /plugin "pd-profile-handler" \(type pd-profile-handler\): prefixPluginName "nope" is not a configured plugin/,
    );
    expect(loadError(config(', prefixPluginType: prefix-cache-scorer, prefixPluginName: p2'))).toMatch(
      /prefixPluginType "prefix-cache-scorer" does not match plugin "p2", whose type is approx-prefix-cache-producer/,
    );
    expect(loadError(config(', prefixPluginName: queue-scorer'))).toMatch(
      /prefixPluginName "queue-scorer" is a queue-scorer, not a prefix-cache-scorer or approx-prefix-cache-producer/,
    );
    expect(loadError(config(', prefixPluginName: s2, prefixMatchInfoProducerName: p1'))).toMatch(
      /prefixPluginName reads producer "p2" but prefixMatchInfoProducerName names "p1"/,
    );
    expect(loadError(config('').replace('primaryPort: 0', 'primaryPort: 70000'))).toMatch(
      /parameter "primaryPort": must be between 1 and 65535/,
    );
  });
});

describe('disagg-profile-handler legacy form', () => {
  it('takes stageOrder as llm-d-router does (the nested form always did)', () => {
    const yaml = `${LLMD}plugins: [{type: prefill-filter}, {type: decode-filter}, {type: disagg-profile-handler, parameters: {stageOrder: PrefillFirst, decodeProfile: d, prefillProfile: p}}]
schedulingProfiles: [{name: p, plugins: [{pluginRef: prefill-filter}]}, {name: d, plugins: [{pluginRef: decode-filter}]}]`;
    const r = harness(yaml, decodeStore()).route('hi');
    expect(r.ctx.decision).toMatchObject({ type: 'prefill-decode', reason: 'prefill-first' });
    expect(r.ctx.request.headers['x-prefiller-host-port']).toBe('10.0.0.1:8000');
  });
});

describe('data-parallel-profile-handler', () => {
  const yaml = (params = '') =>
    `${LLMD}plugins: [{type: decode-filter}, {type: data-parallel-profile-handler${params}}]\nschedulingProfiles: [{name: default, plugins: [{pluginRef: decode-filter}]}]`;

  it('routes to primaryPort (default 8000) on the picked IP and sends the rank in x-data-parallel-host-port', () => {
    const store = storeWith([spec('d0', '10.0.0.2', 'decode', {}, 8001)]);
    const r = harness(yaml(), store).route(LONG);
    expect(r.destination).toBe('10.0.0.2:8000');
    expect(r.ctx.request.headers['x-data-parallel-host-port']).toBe('10.0.0.2:8001');
    expect(harness(yaml(', parameters: {primaryPort: 9000}'), store).route(LONG).destination).toBe('10.0.0.2:9000');
  });

  it('needs exactly one profile and a real port', () => {
    expect(loadError(yaml(', parameters: {primaryPort: 0}'))).toMatch(
      /parameter "primaryPort": must be between 1 and 65535/,
    );
    expect(
      loadError(yaml().replace('{name: default, plugins: [{pluginRef: decode-filter}]}', '{name: a}, {name: b}')),
    ).toMatch(/data-parallel-profile-handler needs exactly one scheduling profile, found 2/);
  });
});

describe('filters, scorers and producers of both versions', () => {
  it('by-label-selector (v0.7.1) is label-selector-filter, with a deprecation warning', () => {
    const yaml = `${GAIE}plugins: [{name: sel, type: by-label-selector, parameters: {matchLabels: {tier: gold}, matchExpressions: [{key: zone, operator: NotIn, values: [b]}]}}]
schedulingProfiles: [{name: a, plugins: [{pluginRef: sel}]}]`;
    const store = storeWith([
      spec('x', '10.0.0.1', 'decode', { tier: 'gold', zone: 'b' }),
      spec('y', '10.0.0.2', 'decode', { tier: 'gold', zone: 'a' }),
      spec('z', '10.0.0.3', 'decode', { tier: 'tin' }),
    ]);
    const h = harness(yaml, store);
    expect(h.config.warnings).toEqual([
      'plugin "sel" (type by-label-selector) is deprecated upstream; use label-selector-filter',
    ]);
    expect(h.route('hi').destination).toBe('10.0.0.2:8000');
    expect(loadError(yaml.replace('values: [b]', 'values: []'))).toMatch(/In and NotIn need values/);
    expect(
      loadError(`${GAIE}plugins: [{type: by-label, parameters: {label: tier}}]\nschedulingProfiles: [{name: a}]`),
    ).toMatch(/parameter "validValues": either validValues must be non-empty or allowsNoLabel must be true/);
  });

  it('utilization-detector listed in a profile filters on its thresholds (fresh metrics, queue and KV below the limit); all fail → all kept', () => {
    const yaml = `${LLMD}plugins: [{type: utilization-detector, parameters: {queueDepthThreshold: 4, kvCacheUtilThreshold: 0.5, headroom: 0.5}}]
schedulingProfiles: [{name: a, plugins: [{pluginRef: utilization-detector}]}]`;
    const store = storeWith([spec('busy', '10.0.0.1'), spec('full', '10.0.0.2'), spec('ok', '10.0.0.3')], {
      busy: { waitingQueueSize: 6 },
      full: { kvCacheUsage: 0.8 },
      ok: { waitingQueueSize: 5, kvCacheUsage: 0.7 },
    });
    const h = harness(yaml, store);
    for (let i = 0; i < 5; i++) expect(h.route('hi').destination).toBe('10.0.0.3:8000');
    store.get('default/ok')!.metrics.updatedAt = 1; // stale: nobody passes, everyone is kept
    expect(new Set(Array.from({ length: 30 }, () => h.route('hi').destination)).size).toBe(3);
    expect(
      loadError(
        `${LLMD}plugins: [{type: concurrency-detector}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: concurrency-detector}]}]`,
      ),
    ).toMatch(
      /"concurrency-detector" \(type concurrency-detector\) is a flow-control plugin; pd-router does not implement it as a filter/,
    );
  });

  it('running-requests-size-scorer: (max − r) / (max − min) over vllm:num_requests_running', () => {
    const yaml = `${GAIE}plugins: [{type: running-requests-size-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: running-requests-size-scorer}]}]`;
    const store = storeWith([spec('a', '10.0.0.1'), spec('b', '10.0.0.2'), spec('c', '10.0.0.3')], {
      a: { runningRequests: 8 },
      b: { runningRequests: 2 },
      c: { runningRequests: 5 },
    });
    const r = harness(yaml, store).route('hi');
    expect(r.destination).toBe('10.0.0.2:8000');
    expect(
      r.result.results.get('a')!.scored.map((scoredEndpoint) => [scoredEndpoint.endpoint.name, scoredEndpoint.score]),
    ).toEqual(
      expect.arrayContaining([
        ['a', 0],
        ['b', 1],
        ['c', 0.5],
      ]),
    );
  });

  it('token-producer / tokenizer: estimate by default; vllm (a render URL), modelName or udsTokenizerConfig (the pool) tokenize with the model server; multimodal estimation is an error naming the key', () => {
    const tp = (text: string, params: string) =>
      `${LLMD}plugins: [{type: ${text}, parameters: ${params}}, {type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]`;
    const backend = (text: string, params: string) =>
      // eslint-disable-next-line no-restricted-syntax -- the plugin's internals, which the test reads
      loadEndpointPickerConfig(tp(text, params)).plugins.get(text) as unknown as { tokenizer: string; url?: string };
    expect(loadEndpointPickerConfig(tp('token-producer', '{estimate: {}}')).warnings).toEqual([]);
    expect(loadEndpointPickerConfig(tp('tokenizer', '{}')).warnings).toEqual([
      'plugin "tokenizer" (type tokenizer) is deprecated upstream; use token-producer',
    ]);
    expect(backend('token-producer', '{}').tokenizer).toBe('estimate');
    expect(backend('token-producer', '{vllm: {}}')).toMatchObject({
      tokenizer: 'vllm-http',
      url: 'http://localhost:8000',
    });
    expect(backend('token-producer', '{modelName: m, vllm: {url: "http://render:8000/"}}')).toMatchObject({
      tokenizer: 'vllm-http',
      url: 'http://render:8000',
    });
    expect(backend('tokenizer', '{modelName: Qwen/Qwen2.5-1.5B-Instruct}')).toMatchObject({
      tokenizer: 'pool',
      url: undefined,
    });
    const uds = loadEndpointPickerConfig(
      tp('token-producer', '{modelName: m, udsTokenizerConfig: {socketFile: /tmp/s}}'),
    );
    // eslint-disable-next-line no-restricted-syntax -- the plugin's internals, which the test reads
    expect((uds.plugins.get('token-producer') as unknown as { tokenizer: string }).tokenizer).toBe('pool');
    expect(uds.warnings).toEqual([
      expect.stringMatching(/udsTokenizerConfig .* is not used: pd-router tokenizes with the pool's model servers/),
    ]);
    expect(loadError(tp('token-producer', '{estimate: {image: {mode: static}}}'))).toMatch(
      /parameter "estimate.image": multimodal image token estimation is not implemented/,
    );
    expect(loadError(tp('token-producer', '{estimate: {}, modelName: m}'))).toMatch(
      /parameter "estimate": estimate cannot be combined/,
    );
  });

  it('active-request-scorer: requestTimeout is ignored with a warning (llm-d-router); inFlightLoadProducerName is an error', () => {
    const ar = (params: string) =>
      `${LLMD}plugins: [{type: active-request-scorer, parameters: ${params}}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: active-request-scorer}]}]`;
    expect(loadEndpointPickerConfig(ar('{requestTimeout: 2m, idleThreshold: 1}')).warnings).toEqual([
      'plugin "active-request-scorer" (type active-request-scorer): parameter "requestTimeout" is ignored (deprecated in llm-d-router): a request counts until its ext_proc stream ends',
    ]);
    expect(loadError(ar('{requestTimeout: soon}'))).toMatch(/parameter "requestTimeout": invalid duration "soon"/);
    expect(loadError(ar('{inFlightLoadProducerName: ilp}'))).toMatch(
      /parameter "inFlightLoadProducerName": pd-router has no inflight-load-producer/,
    );
  });

  it('no-hit-lru-scorer lruSize <= 0 and pickers maxNumOfEndpoints <= 0 mean the default, as upstream', () => {
    const yaml = `${LLMD}plugins: [{type: no-hit-lru-scorer, parameters: {lruSize: -5}}, {type: random-picker, parameters: {maxNumOfEndpoints: 0}}]
schedulingProfiles: [{name: a, plugins: [{pluginRef: no-hit-lru-scorer}, {pluginRef: random-picker}]}]`;
    const r = harness(yaml, storeWith([spec('a', '10.0.0.1'), spec('b', '10.0.0.2')])).route('hi');
    expect(r.result.results.get('a')!.targets).toHaveLength(1);
  });
});
