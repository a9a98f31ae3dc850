/**
 * The two EndpointPickerConfig schemas: llm-d.ai/v1alpha1 (llm-d-router) and inference.networking.x-k8s.io/v1alpha1
 * (GAIE v1.4/v1.5, llm-d v0.7.1): GAIE v1.4's `data:` and threshold `saturationDetector:`, GAIE v1.5's `parser:` and
 * `saturationDetector: {pluginRef}`, feature gates per apiVersion, and `flowControl:` parsed with its real schema,
 * kept, and reported in one startup warning as not enforced.
 */
import { describe, expect, it } from 'vitest';
import { loadEndpointPickerConfig } from '../../src/epp/index.js';
import { loadError } from './fixtures.js';

const GAIE = 'apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n';
const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const PROFILE =
  'plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]\n';

describe('data layer sections', () => {
  it('GAIE v1.4 `data:` (with the dataLayer gate and its extractor name) selects the metrics source and extractor', () => {
    const c = loadEndpointPickerConfig(`${GAIE}featureGates: [dataLayer]
plugins:
- {type: queue-scorer}
- {name: src, type: metrics-data-source, parameters: {path: /custom, scheme: http}}
- {name: ex, type: model-server-protocol-metrics, parameters: {defaultEngine: sglang}}
data:
  sources: [{pluginRef: src, extractors: [{pluginRef: ex}]}]
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
`);
    expect(c.document.dataKey).toBe('data');
    expect(c.metricsSource).toMatchObject({ path: '/custom' });
    expect(c.metricsEngines.defaultEngine).toBe('sglang');
    expect(c.warnings).toEqual([
      'plugin "ex" (type model-server-protocol-metrics) is deprecated upstream; use core-metrics-extractor',
    ]);
  });

  it('`data:` is GAIE-only; data and dataLayer cannot be combined; the dataLayer gate needs data', () => {
    expect(loadError(`${LLMD}${PROFILE}data: {sources: []}`)).toMatch(
      /data: is the GAIE v1\.4 name of the data layer section .* llm-d\.ai\/v1alpha1 calls it dataLayer/,
    );
    expect(loadError(`${GAIE}${PROFILE}data: {sources: []}\ndataLayer: {sources: []}`)).toMatch(
      /data: data \(GAIE v1\.4\) and dataLayer \(GAIE v1\.5, llm-d\) cannot both be set/,
    );
    expect(loadError(`${GAIE}featureGates: [dataLayer]\n${PROFILE}`)).toMatch(
      /the dataLayer gate is on, which needs the data section/,
    );
    expect(loadError(`${GAIE}${PROFILE}data: {sources: [{pluginRef: nope, extractors: []}]}`)).toMatch(
      /data\.sources\[0\]: pluginRef "nope" is not defined/,
    );
  });

  it('llm-d-router dataLayer fields: peer discovery and cross-replica sync are refused by name, their interval warned about', () => {
    expect(loadError(`${LLMD}${PROFILE}dataLayer: {peerDiscovery: {pluginRef: peers}}`)).toMatch(
      /dataLayer\.peerDiscovery: pluginRef "peers" is not defined/,
    );
    expect(loadError(`${LLMD}${PROFILE}dataLayer: {crossReplicaSyncerPluginRef: queue-scorer}`)).toMatch(
      /"queue-scorer" \(type queue-scorer\) is not a cross-replica syncer plugin/,
    );
    expect(loadEndpointPickerConfig(`${LLMD}${PROFILE}dataLayer: {crossReplicaSyncInterval: 5s}`).warnings).toEqual([
      'dataLayer.crossReplicaSyncInterval has no effect without crossReplicaSyncerPluginRef',
    ]);
    expect(loadError(`${LLMD}${PROFILE}dataLayer: {crossReplicaSyncInterval: 5}`)).toMatch(
      /dataLayer\.crossReplicaSyncInterval: /,
    );
  });
});

describe('saturationDetector', () => {
  it('GAIE v1.4 thresholds are kept; out-of-range values fall back to GAIE v1.4 defaults, with a warning', () => {
    const c = loadEndpointPickerConfig(
      `${GAIE}${PROFILE}saturationDetector: {queueDepthThreshold: 9, kvCacheUtilThreshold: 1.0, metricsStalenessThreshold: 350ms}`,
    );
    expect(c.flowControl.saturationDetector).toEqual({
      form: 'thresholds',
      queueDepthThreshold: 9,
      kvCacheUtilThreshold: 0.8,
      metricsStalenessThresholdMs: 350,
    });
    expect(c.warnings[0]).toBe(
      'saturationDetector.kvCacheUtilThreshold: 1 is out of range; GAIE v1.4 uses the default 0.8',
    );
    expect(c.warnings[1]).toMatch(
      /^not enforced by pd-router .*saturationDetector \(thresholds queueDepthThreshold=9, kvCacheUtilThreshold=0\.8, metricsStalenessThreshold=350ms\): no request is shed/,
    );
    expect(c.warnings).toHaveLength(2);
  });

  it('GAIE v1.5 pluginRef form: the detector plugin is parsed with its schema and kept; empty means utilization-detector', () => {
    const c = loadEndpointPickerConfig(`${GAIE}plugins:
- {type: queue-scorer}
- {name: sat, type: utilization-detector, parameters: {queueDepthThreshold: 3, headroom: 0.5, metricsStalenessThreshold: 1s}}
saturationDetector: {pluginRef: sat}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
`);
    const d = c.flowControl.saturationDetector;
    expect(d.form === 'plugin' && d.plugin.flowControl.settings).toEqual({
      queueDepthThreshold: 3,
      kvCacheUtilThreshold: 0.8,
      metricsStalenessThresholdMs: 1000,
      headroom: 0.5,
    });
    expect(c.warnings).toEqual([
      expect.stringMatching(
        /saturationDetector \(sat \(utilization-detector: queueDepthThreshold=3, kvCacheUtilThreshold=0\.8, metricsStalenessThresholdMs=1000, headroom=0\.5\)\)/,
      ),
    ]);
    const dflt = loadEndpointPickerConfig(`${GAIE}${PROFILE}saturationDetector: {pluginRef: ""}`).flowControl
      .saturationDetector;
    expect(dflt.form === 'plugin' && dflt.plugin.type).toBe('utilization-detector');
  });

  it('llm-d.ai: the top-level form is deprecated for flowControl.saturationDetector, which wins; errors name the field', () => {
    const c =
      loadEndpointPickerConfig(`${LLMD}plugins: [{type: queue-scorer}, {name: c, type: concurrency-detector, parameters: {maxConcurrency: 7}}]
saturationDetector: {pluginRef: utilization-detector}
flowControl: {saturationDetector: {pluginRef: c}}
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
`);
    const d = c.flowControl.saturationDetector;
    expect(d.form === 'plugin' && [d.section, d.plugin.name]).toEqual(['flowControl.saturationDetector', 'c']);
    expect(c.warnings.slice(0, 2)).toEqual([
      'top-level saturationDetector is deprecated in llm-d-router; use flowControl.saturationDetector',
      'both saturationDetector and flowControl.saturationDetector are set; flowControl.saturationDetector is used, as upstream',
    ]);
    expect(loadError(`${LLMD}${PROFILE}saturationDetector: {queueDepthThreshold: 5}`)).toMatch(
      /saturationDetector: Unrecognized key: "queueDepthThreshold"/,
    );
    expect(loadError(`${GAIE}${PROFILE}saturationDetector: {pluginRef: x, queueDepthThreshold: 5}`)).toMatch(
      /saturationDetector: pluginRef \(GAIE v1\.5, llm-d\) cannot be combined with thresholds \(GAIE v1\.4\)/,
    );
    expect(loadError(`${GAIE}${PROFILE}saturationDetector: {pluginRef: queue-scorer}`)).toMatch(
      /saturationDetector\.pluginRef: "queue-scorer" \(type queue-scorer\) is not a saturation-detector/,
    );
    expect(loadError(`${GAIE}${PROFILE}saturationDetector: {queueDepthThreshold: "5"}`)).toMatch(
      /saturationDetector\.queueDepthThreshold: /,
    );
    expect(
      loadError(
        `${LLMD}plugins: [{type: utilization-detector, parameters: {kvCacheUtilThreshold: 1.5}}]\nschedulingProfiles: [{name: a}]`,
      ),
    ).toMatch(
      /plugin "utilization-detector" \(type utilization-detector\): parameter "kvCacheUtilThreshold": must be in \(0, 1\]/,
    );
  });
});

describe('feature gates', () => {
  it('are checked against the gates upstream registers for the apiVersion; name=false turns one off', () => {
    expect(
      loadEndpointPickerConfig(`${GAIE}featureGates: [prepareDataPlugins, enableLegacyMetrics]\n${PROFILE}`).document
        .featureGates,
    ).toMatchObject({ prepareDataPlugins: true, enableLegacyMetrics: true, flowControl: false });
    expect(
      loadEndpointPickerConfig(
        `${LLMD}featureGates: [flowControl=false, haPopulateNonLeaderDatastore=false]\n${PROFILE}`,
      ).document.featureGates,
    ).toEqual({ flowControl: false, haPopulateNonLeaderDatastore: false });
    expect(loadError(`${LLMD}featureGates: [prepareDataPlugins]\n${PROFILE}`)).toBe(
      'EndpointPickerConfig: featureGates.0: unknown feature gate "prepareDataPlugins" for llm-d.ai/v1alpha1 (known: flowControl, haPopulateNonLeaderDatastore)',
    );
    expect(loadError(`${GAIE}featureGates: [flowControl=maybe]\n${PROFILE}`)).toMatch(
      /featureGates\.0: "flowControl=maybe": the value after = must be true or false/,
    );
  });
});

describe('flowControl', () => {
  const FC = `${LLMD}featureGates: [flowControl]
plugins:
- {type: queue-scorer}
- {name: pa, type: program-aware-fairness, parameters: {lasWeightService: 0.5}}
- {name: hold, type: priority-holdback-policy, parameters: {minCeiling: 0.2}}
flowControl:
  maxBytes: 1Gi
  maxRequests: 500
  defaultRequestTTL: 30s
  priorityBands:
  - {priority: 10, fairnessPolicyRef: pa, orderingPolicyRef: edf-ordering-policy, maxRequests: 2k}
  - {priority: 0}
  defaultPriorityBand: {fairnessPolicyRef: global-strict-fairness-policy}
  usageLimitPolicyPluginRef: hold
  enableEviction: true
schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
`;

  const OK = FC.replace('edf-ordering-policy', 'fcfs-ordering-policy');

  it('is parsed with its real schema, resolved against the policies, kept, and with the gate on everything here is enforced (no warning)', () => {
    const c = loadEndpointPickerConfig(OK);
    const fc = c.flowControl;
    expect(fc.enabled).toBe(true);
    expect(fc.section).toMatchObject({
      maxBytes: 2 ** 30,
      maxRequests: 500,
      defaultRequestTTL: 30_000,
      enableEviction: true,
    });
    expect(fc.section!.priorityBands![0]).toEqual({
      priority: 10,
      fairnessPolicyRef: 'pa',
      orderingPolicyRef: 'fcfs-ordering-policy',
      maxRequests: 2000,
    });
    expect(fc.plugins.get('pa')!.flowControl.settings).toMatchObject({
      strategy: 'las',
      lasWeightService: 0.5,
      lasHalfLifeSeconds: 60,
    });
    expect(fc.plugins.get('hold')!.flowControl.settings).toEqual({
      minCeiling: 0.2,
      maxCeiling: 1,
      shape: 'linear',
      domain: 'rank',
    });
    // Upstream's default policies may be referenced without being defined.
    expect([...fc.plugins.keys()]).toEqual(
      expect.arrayContaining(['fcfs-ordering-policy', 'global-strict-fairness-policy']),
    );
    // enableEviction is enforced (src/epp/flowcontrol/eviction.ts), as are the policies here.
    expect(c.warnings).toEqual([]);
    // priority-holdback-policy (above), static-usage-limit-policy and soft-reflective-ceiling-policy are enforced.
    const soft = OK.replace('usageLimitPolicyPluginRef: hold', 'usageLimitPolicyPluginRef: soft').replace(
      '- {name: hold,',
      '- {name: soft, type: soft-reflective-ceiling-policy}\n- {name: hold,',
    );
    expect(loadEndpointPickerConfig(soft).warnings).toEqual(c.warnings);
  });

  it('bad values and dangling references are load errors naming the field', () => {
    expect(loadError(FC)).toMatch(
      /flowControl\.priorityBands\[0\]\.orderingPolicyRef: plugin "edf-ordering-policy" is not defined/,
    );
    expect(loadError(OK.replace('maxBytes: 1Gi', 'maxBytes: lots'))).toMatch(
      /flowControl\.maxBytes: "lots" is not a quantity/,
    );
    expect(loadError(OK.replace('maxRequests: 500', 'maxRequests: -1'))).toMatch(
      /flowControl\.maxRequests: must be non-negative/,
    );
    expect(loadError(OK.replace('defaultRequestTTL: 30s', 'defaultRequestTTL: 30'))).toMatch(
      /flowControl\.defaultRequestTTL: "30" is missing a unit/,
    );
    expect(loadError(OK.replace('{priority: 0}', '{priority: 10}'))).toMatch(
      /flowControl\.priorityBands\.1\.priority: duplicate priority 10/,
    );
    expect(loadError(OK.replace('usageLimitPolicyPluginRef: hold', 'usageLimitPolicyPluginRef: pa'))).toMatch(
      /usageLimitPolicyPluginRef: "pa" \(type program-aware-fairness\) is not a usage-limit-policy/,
    );
    expect(loadError(OK.replace('enableEviction: true', 'enableEviction: true\n  surprise: 1'))).toMatch(
      /flowControl: Unrecognized key: "surprise"/,
    );
    expect(loadError(OK.replace('{minCeiling: 0.2}', '{maxCeiling: 0.5}'))).toMatch(
      /plugin "hold" \(type priority-holdback-policy\): parameter "minCeiling": is required/,
    );
  });

  it('with the gate off the section is still validated, not resolved, and the warning says upstream ignores it too', () => {
    const c = loadEndpointPickerConfig(FC.replace('featureGates: [flowControl]', 'featureGates: []'));
    expect(c.flowControl.enabled).toBe(false);
    expect(c.warnings[0]).toMatch(
      /flowControl \(the flowControl feature gate is off \(upstream would ignore these settings too\); maxBytes=1073741824/,
    );
  });

  it('a config without flow control or a saturation detector gets no warning (the default detector is implicit)', () => {
    const c = loadEndpointPickerConfig(`${LLMD}${PROFILE}`);
    expect(c.warnings).toEqual([]);
    expect(c.flowControl.saturationDetector.form).toBe('default');
  });
});

describe('parsers', () => {
  it('GAIE v1.5 `parser:` selects one parser, created from its type when not defined; deprecated under llm-d.ai', () => {
    const c = loadEndpointPickerConfig(`${GAIE}${PROFILE}parser: {pluginRef: passthrough-parser}`);
    expect(c.parsers.map((parser) => parser.type)).toEqual(['passthrough-parser']);
    expect(c.warnings).toEqual([]);
    expect(loadEndpointPickerConfig(`${LLMD}${PROFILE}parser: {pluginRef: openai-parser}`).warnings).toEqual([
      'top-level parser is deprecated in llm-d-router; use requestHandler.parsers',
    ]);
    expect(
      loadEndpointPickerConfig(
        `${LLMD}${PROFILE}requestHandler: {parsers: [{pluginRef: vllmhttp-parser}]}`,
      ).parsers.map((parser) => parser.name),
    ).toEqual(['vllmhttp-parser']);
    expect(loadError(`${LLMD}${PROFILE}requestHandler: {parsers: [{pluginRef: queue-scorer}]}`)).toMatch(
      /requestHandler\.parsers\[0\]: "queue-scorer" \(type queue-scorer\) is not a parser/,
    );
  });
});
