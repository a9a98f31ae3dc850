/** EndpointPickerConfig loading: the two llm-d P/D configs verbatim, loader defaults, and errors that name what is wrong. */
import { describe, expect, it } from 'vitest';
import { ACCEPTED_API_VERSIONS, DEFAULT_CONFIG_YAML, loadEndpointPickerConfig } from '../../src/epp/index.js';
import { prefixState } from '../../src/epp/prefix/match-state.js';
import { PD_EPP_CONFIG, SIM_PD_EPP_CONFIG, harness, spec, storeWith } from './fixtures.js';

const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const load = (body: string) => loadEndpointPickerConfig(HEAD + body);

describe('the llm-d P/D configs load unchanged', () => {
  for (const [name, yaml] of [
    ['deploy/config/pd-epp-config.yaml', PD_EPP_CONFIG],
    ['deploy/config/sim-pd-epp-config.yaml', SIM_PD_EPP_CONFIG],
  ] as const) {
    it(`${name}: profiles, handler, decider, producer and defaults as described`, () => {
      const c = loadEndpointPickerConfig(yaml);
      expect([...c.profiles.keys()]).toEqual(['prefill', 'decode']);
      expect(c.handler.type).toBe('disagg-profile-handler');
      const decode = c.profiles.get('decode')!;
      expect(decode.filters.map((filter) => filter.type)).toEqual(['decode-filter']);
      expect(decode.scorers.map((weightedScorer) => [weightedScorer.scorer.type, weightedScorer.weight])).toEqual([
        ['prefix-cache-scorer', 2],
        ['queue-scorer', 1],
      ]);
      expect(decode.picker.type).toBe('max-score-picker');
      expect(c.profiles.get('prefill')!.filters.map((filter) => filter.type)).toEqual(['prefill-filter']);
      expect(c.producers.map((dataProducer) => dataProducer.type)).toEqual(['approx-prefix-cache-producer']);
      expect(c.preRequest.map((preRequest) => preRequest.type).sort()).toEqual([
        'approx-prefix-cache-producer',
        'disagg-profile-handler',
      ]);
      expect(c.parsers.map((parser) => parser.type)).toEqual([
        'openai-parser',
        'anthropic-parser',
        'vllmhttp-parser',
        'passthrough-parser',
      ]);
      expect(c.metricsSource).toMatchObject({ scheme: 'http', path: '/metrics' });
      expect(c.warnings).toEqual([]);
    });

    it(`${name}: long prompt → P+D (nonCachedTokens 16), repeat → D only; short → D only; effective block size 64`, () => {
      const store = storeWith([spec('p0', '10.1.0.1', 'prefill'), spec('d0', '10.1.0.2', 'decode')], {
        d0: { cacheBlockSize: 16 },
        p0: { cacheBlockSize: 16 },
      });
      const h = harness(yaml, store);
      const long = 'Tell me about the history of Rome in great detail. '.repeat(8); // 408 bytes = 102 tokens
      const first = h.route(long);
      expect(first.ctx.decision).toMatchObject({ type: 'prefill-decode', reason: 'above-threshold' });
      expect(first.ctx.request.headers['x-prefiller-host-port']).toBe('10.1.0.1:8000');
      expect(prefixState(first.ctx, 'approx-prefix-cache-producer')!.blockSizeTokens).toBe(64);
      expect(h.route(long).ctx.decision).toMatchObject({ type: 'decode-only', reason: 'cached' });
      expect(h.route('What is 2+2?').ctx.decision).toMatchObject({ type: 'decode-only', reason: 'below-threshold' }); // 3 tokens
    });
  }

  it('maxPrefixTokensToMatch 16384 caps the chain at 256 blocks of 64', () => {
    const h = harness(PD_EPP_CONFIG, storeWith([spec('d0', '10.1.0.2', 'decode')]));
    const r = h.route('z'.repeat(4 * 64 * 300));
    expect(prefixState(r.ctx, 'approx-prefix-cache-producer')!.totalBlocks).toBe(256);
  });
});

describe('loader defaults', () => {
  it("no config → llm-d's default: queue ×2, kv-cache ×2, prefix ×3, max-score picker, single-profile handler", () => {
    for (const c of [loadEndpointPickerConfig(''), loadEndpointPickerConfig(DEFAULT_CONFIG_YAML)]) {
      const p = c.profiles.get('default')!;
      expect(p.scorers.map((weightedScorer) => [weightedScorer.scorer.type, weightedScorer.weight])).toEqual([
        ['queue-scorer', 2],
        ['kv-cache-utilization-scorer', 2],
        ['prefix-cache-scorer', 3],
      ]);
      expect(p.picker.type).toBe('max-score-picker');
      expect(c.handler.type).toBe('single-profile-handler');
      expect(c.producers.map((dataProducer) => dataProducer.type)).toEqual(['approx-prefix-cache-producer']);
    }
  });

  it('name defaults to type, weight to 1; forward references; every accepted apiVersion', () => {
    for (const v of ACCEPTED_API_VERSIONS) {
      const c = loadEndpointPickerConfig(`apiVersion: ${v}
kind: EndpointPickerConfig
plugins:
- type: disagg-profile-handler
  parameters: {deciders: {prefill: later}}
- {name: later, type: always-disagg-pd-decider}
- type: queue-scorer
schedulingProfiles:
- {name: decode, plugins: [{pluginRef: queue-scorer}]}
`);
      expect(c.profiles.get('decode')!.scorers[0].weight).toBe(1);
      expect(c.plugins.get('later')!.type).toBe('always-disagg-pd-decider');
    }
  });

  it('injectDefaults: false turns scraping off; a configured source and file discovery are used', () => {
    expect(load('dataLayer: {injectDefaults: false}\nschedulingProfiles: [{name: a}]').metricsSource).toBeUndefined();
    const c = load(`plugins:
- {name: src, type: metrics-data-source, parameters: {path: /custom, port: 9100, interval: 200ms}}
- {type: core-metrics-extractor}
- {type: file-discovery, parameters: {path: /etc/endpoints.yaml, watchFile: true}}
dataLayer:
  sources: [{pluginRef: src, extractors: [{pluginRef: core-metrics-extractor}]}]
  discovery: {pluginRef: file-discovery}
schedulingProfiles: [{name: a}]`);
    expect(c.metricsSource).toMatchObject({ path: '/custom', port: 9100, intervalMs: 200 });
    expect(c.discovery).toEqual({ kind: 'file', path: '/etc/endpoints.yaml', watchFile: true });
  });

  it('requestHandler.parsers selects the parsers; deprecated plugins load with a warning', () => {
    const c = load(`plugins:
- {type: passthrough-parser}
- {type: prefill-header-handler}
- {type: by-label, parameters: {label: role, validValues: [x]}}
requestHandler: {parsers: [{pluginRef: passthrough-parser}]}
schedulingProfiles: [{name: a, plugins: [{pluginRef: by-label}]}]`);
    expect(c.parsers.map((parser) => parser.type)).toEqual(['passthrough-parser']);
    expect(c.warnings.join('\n')).toMatch(/prefill-header-handler.*deprecated upstream; use disagg-profile-handler/);
    expect(c.warnings.join('\n')).toMatch(/by-label.*deprecated upstream; use label-selector-filter/);
  });

  it('no scheduling profiles → one profile "default" with every configured filter, scorer and picker (upstream)', () => {
    const c = load(
      'plugins: [{type: decode-filter}, {type: queue-scorer}, {name: r, type: random-picker}, {type: approx-prefix-cache-producer}]\nschedulingProfiles: []',
    );
    const p = c.profiles.get('default')!;
    expect([...c.profiles.keys()]).toEqual(['default']);
    expect(p.filters.map((filter) => filter.name)).toEqual(['decode-filter']);
    expect(p.scorers.map((weightedScorer) => weightedScorer.scorer.name)).toEqual(['queue-scorer']);
    expect(p.picker.name).toBe('r');
  });

  it('a profile without a picker gets the configured picker (upstream reuses it), else max-score-picker', () => {
    const c = load(
      'plugins: [{type: queue-scorer}, {type: weighted-random-picker, parameters: {maxNumOfEndpoints: 2}}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]',
    );
    expect(c.profiles.get('a')!.picker.name).toBe('weighted-random-picker');
    expect(
      load('plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a}]').profiles.get('a')!.picker.type,
    ).toBe('max-score-picker');
  });
});

describe('config errors name the plugin and the parameter', () => {
  const cases: Array<[string, string | RegExp]> = [
    [
      'plugins: [{type: nope}]\nschedulingProfiles: [{name: a}]',
      'EndpointPickerConfig: plugin "nope" (type nope): unknown plugin type "nope"',
    ],
    [
      'plugins: [{type: p2p-source-producer}]\nschedulingProfiles: [{name: a}]',
      /type p2p-source-producer is not supported by pd-router \(peer-to-peer KV-cache sources are not implemented/,
    ],
    [
      'plugins: [{type: precise-prefix-cache-producer, parameters: {indexerConfig: {tokenizersPoolConfig: {modelName: m}}}}]\nschedulingProfiles: [{name: a}]',
      /parameter "indexerConfig.tokenizersPoolConfig": tokenizersPoolConfig is not supported; configure a token-producer plugin instead/,
    ],
    [
      'plugins: [{type: precise-prefix-cache-scorer, parameters: {kvEventsConfig: {zmqEndpoint: "0.0.0.0:5557"}}}]\nschedulingProfiles: [{name: a}]',
      /parameter "kvEventsConfig.zmqEndpoint": must be tcp:\/\/<host>:<port>/,
    ],
    [
      'plugins: [{type: precise-prefix-cache-scorer, parameters: {indexerConfig: {kvBlockIndexConfig: {redisConfig: {address: r}}}}}]\nschedulingProfiles: [{name: a}]',
      /the Redis-backed index is not supported/,
    ],
    [
      'plugins: [{type: precise-prefix-cache-scorer, parameters: {kvEventsConfig: {engineType: sglang}}}]\nschedulingProfiles: [{name: a}]',
      /SGLang's KV events are not decoded/,
    ],
    [
      'plugins: [{type: precise-prefix-cache-scorer, parameters: {future: 1}}]\nschedulingProfiles: [{name: a}]',
      /unknown parameter "future"/,
    ],
    [
      'plugins: [{name: pd, type: prefix-based-pd-decider, parameters: {nonCachedTokens: -4}}]\nschedulingProfiles: [{name: a}]',
      'EndpointPickerConfig: plugin "pd" (type prefix-based-pd-decider): parameter "nonCachedTokens": must be >= 0',
    ],
    [
      'plugins: [{type: load-aware-scorer, parameters: {threshold: "high"}}]\nschedulingProfiles: [{name: a}]',
      /plugin "load-aware-scorer" \(type load-aware-scorer\): parameter "threshold": /,
    ],
    [
      'plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: missing}]}]',
      'EndpointPickerConfig: schedulingProfiles[0] "a": pluginRef "missing" is not defined in plugins',
    ],
    [
      'plugins: [{type: disagg-profile-handler, parameters: {deciders: {prefill: ghost}}}]\nschedulingProfiles: [{name: decode}]',
      /plugin "disagg-profile-handler" \(type disagg-profile-handler\): refers to plugin "ghost", which is not defined/,
    ],
    [
      'plugins: [{type: disagg-profile-handler, parameters: {deciders: {prefill: queue-scorer}}}, {type: queue-scorer}]\nschedulingProfiles: [{name: decode}]',
      /"queue-scorer" \(type queue-scorer\) is not a decider/,
    ],
    [
      'plugins: [{type: disagg-profile-handler, parameters: {profile: {decode: x}}}]\nschedulingProfiles: [{name: decode}]',
      /disagg-profile-handler\): unknown parameter "profile"/,
    ],
    [
      'plugins: [{type: disagg-profile-handler}]\nschedulingProfiles: [{name: main}]',
      /decode profile "decode" is not among the scheduling profiles \(main\)/,
    ],
    [
      'plugins: [{type: approx-prefix-cache-producer, parameters: {autoTune: false, blockSizeTokens: 0}}]\nschedulingProfiles: [{name: a}]',
      /parameter "blockSizeTokens": blockSizeTokens must be > 0 when autoTune is false/,
    ],
    [
      'plugins: [{type: queue-scorer}, {type: queue-scorer}]\nschedulingProfiles: [{name: a}]',
      'EndpointPickerConfig: plugins[1]: duplicate plugin name "queue-scorer"',
    ],
    [
      'plugins: [{type: max-score-picker}, {name: r, type: random-picker}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: max-score-picker}, {pluginRef: r}]}]',
      /more than one picker/,
    ],
    ['schedulingProfiles: [{name: a}, {name: b}]', /several scheduling profiles need a profile handler/],
    [
      'plugins: [{type: queue-scorer, parameters: {future: 1}}]\nschedulingProfiles: [{name: a}]',
      'EndpointPickerConfig: plugin "queue-scorer" (type queue-scorer): unknown parameter "future"',
    ],
    [
      'plugins: [{type: label-selector-filter, parameters: {matchExpressions: [{key: a, operator: In, values: [x], extra: 1}]}}]\nschedulingProfiles: [{name: a}]',
      /plugin "label-selector-filter" \(type label-selector-filter\): unknown parameter "matchExpressions.0.extra"/,
    ],
    [
      'plugins: [{type: max-score-picker, parameters: {maxNumOfEndpoints: "2"}}]\nschedulingProfiles: [{name: a}]',
      /plugin "max-score-picker" \(type max-score-picker\): parameter "maxNumOfEndpoints": /,
    ],
    [
      'plugins: [{type: disagg-profile-handler}, {type: single-profile-handler}]\nschedulingProfiles: [{name: decode}]',
      /more than one profile handler/,
    ],
    [
      'plugins: [{type: token-producer, parameters: {vllm: {url: "https://x:8000"}}}]\nschedulingProfiles: [{name: a}]',
      /plugin "token-producer" \(type token-producer\): parameter "vllm.url": must be an http:\/\/ URL \(TLS is not supported, as upstream\)/,
    ],
    [
      'plugins: [{type: token-producer, parameters: {vllm: {timeout: 5}}}]\nschedulingProfiles: [{name: a}]',
      /parameter "vllm.timeout": "5" is missing a unit/,
    ],
    [
      'plugins: [{type: approx-prefix-cache-producer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: approx-prefix-cache-producer}]}]',
      /is not a filter, scorer or picker/,
    ],
    ['schedulingProfiles: [{name: a}]\nsurprise: 1', /Unrecognized key: "surprise"/],
  ];
  for (const [yaml, message] of cases) {
    it(typeof message === 'string' ? message : message.source, () => {
      let thrown: Error | undefined;
      try {
        load(yaml);
      } catch (e) {
        thrown = e as Error;
      }
      expect(thrown?.name).toBe('ConfigError');
      if (typeof message === 'string') expect(thrown!.message).toBe(message);
      else expect(thrown!.message).toMatch(message);
    });
  }

  it('bad apiVersion or kind, and non-YAML, are rejected', () => {
    expect(() => loadEndpointPickerConfig('apiVersion: v9\nkind: EndpointPickerConfig')).toThrow(
      /apiVersion must be one of llm-d.ai\/v1alpha1/,
    );
    expect(() => loadEndpointPickerConfig('apiVersion: llm-d.ai/v1alpha1\nkind: Other')).toThrow(
      /kind must be EndpointPickerConfig/,
    );
    expect(() => loadEndpointPickerConfig('- a\n- b')).toThrow(/must be a YAML mapping/);
    expect(() => loadEndpointPickerConfig('a: [')).toThrow(/cannot parse as YAML/);
  });
});

describe('the config file as the EPP reads it', () => {
  const base = { host: '127.0.0.1', grpcPort: 0, grpcHealthPort: 0, metricsPort: 0, secureServing: false };

  it('a 16 MB bad config is refused unread, in bounded CPU time, naming the flag and the bound', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { eppConfig, startEpp } = await import('../../src/epp/index.js');
    const { endpointsFile, endpointsYaml } = await import('./fixtures.js');
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'pd-epp-')), 'big.yaml');
    // 16 MB of plugins of unknown types: parsing it all took about 20 s of CPU before the bound.
    const line = (i: number) => `- {type: nope-${i}, name: plugin-number-${i}}\n`;
    const lines: string[] = [HEAD, 'plugins:\n'];
    for (let i = 0, size = 0; size < 16 * 1024 * 1024; i++) size += lines[lines.push(line(i)) - 1].length;
    writeFileSync(file, lines.join(''));
    const endpoints = endpointsFile(endpointsYaml([spec('a', '10.0.0.1')]));
    const cpu = process.cpuUsage();
    await expect(startEpp(eppConfig({ ...base, endpointsFile: endpoints, configFile: file }))).rejects.toThrow(
      `--config-file ${file} is larger than --max-config-size (262144 bytes)`,
    );
    const used = process.cpuUsage(cpu);
    expect((used.user + used.system) / 1000).toBeLessThan(1_000);
    // The same bound for --config-text.
    await expect(
      startEpp(eppConfig({ ...base, endpointsFile: endpoints, configText: lines.slice(0, 20_000).join('') })),
    ).rejects.toThrow('--config-text is larger than --max-config-size (262144 bytes)');
  });

  it('a file at the bound is read; the bound is --max-config-size', async () => {
    const { eppConfig, startEpp } = await import('../../src/epp/index.js');
    const { endpointsFile, endpointsYaml } = await import('./fixtures.js');
    const text = `${HEAD}schedulingProfiles: [{name: default}]\ndataLayer: {injectDefaults: false}\n`;
    const file = endpointsFile(text.padEnd(2048, '#'));
    const endpoints = endpointsFile(endpointsYaml([spec('a', '10.0.0.1')]));
    const epp = await startEpp(eppConfig({ ...base, endpointsFile: endpoints, configFile: file, maxConfigSize: 2048 }));
    await epp.close(500);
    await expect(
      startEpp(eppConfig({ ...base, endpointsFile: endpoints, configFile: file, maxConfigSize: 2047 })),
    ).rejects.toThrow('is larger than --max-config-size (2047 bytes)');
  });
});
