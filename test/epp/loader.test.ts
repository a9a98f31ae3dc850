/**
 * The config loader's phases (config/loader.ts) and the plugin metadata they read: `kind` checked at every slot that
 * names a plugin, `requires`/`produces` adding the producer of required data, the defaults of registry.ts
 * (LOADER_DEFAULTS) filling the slots a config leaves empty. Plugins of a test registry make each rule visible on its
 * own; config.test.ts covers the same loader through whole upstream configs.
 */
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, silentLogger } from '../../src/common/index.js';
import {
  buildDataLayer,
  buildParsers,
  buildPlugins,
  buildProfiles,
  chooseProfileHandler,
  type LoadPhase,
} from '../../src/epp/config/loader.js';
import {
  EppMetrics,
  PLUGIN_REGISTRY,
  loadEndpointPickerConfig,
  type Endpoint,
  type PluginDefinition,
} from '../../src/epp/index.js';
import { validateDocument } from '../../src/epp/config/schema.js';
import { LOADER_DEFAULTS } from '../../src/epp/plugins/registry.js';
import { PluginTimer } from '../../src/epp/scheduling/plugin-timer.js';

const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const none = z.object({}).strict();

/** A scorer that reads data "x" (requires) from the scheduling context. */
const needsX: PluginDefinition = {
  kind: 'scorer',
  requires: ['x'],
  description: 'reads x',
  params: none,
  create: (ctx) => ({
    type: ctx.type,
    name: ctx.name,
    score: (_context: unknown, endpoints: readonly Endpoint[]) => endpoints.map(() => 1),
  }),
};
/** The registry's producer of "x". */
const makesX: PluginDefinition = {
  kind: 'data-producer',
  produces: ['x'],
  description: 'writes x',
  params: none,
  create: (ctx) => ({ type: ctx.type, name: ctx.name, produce: () => undefined }),
};
/** Implements filter() but declares itself a data producer only: no profile may use it as a filter. */
const undeclaredFilter: PluginDefinition = {
  kind: 'data-producer',
  description: 'filters without saying so',
  params: none,
  create: (ctx) => ({
    type: ctx.type,
    name: ctx.name,
    filter: (_context: unknown, endpoints: readonly Endpoint[]) => [...endpoints],
  }),
};
/** Declares kind filter but does not implement it: a broken plugin, refused at load. */
const brokenFilter: PluginDefinition = {
  kind: 'filter',
  description: 'says filter, is not one',
  params: none,
  create: (ctx) => ({ type: ctx.type, name: ctx.name }),
};

const registry = {
  ...PLUGIN_REGISTRY,
  'needs-x': needsX,
  'makes-x': makesX,
  'undeclared-filter': undeclaredFilter,
  'broken-filter': brokenFilter,
};
const load = (body: string) => loadEndpointPickerConfig(HEAD + body, { registry });
const loadError = (body: string): string => {
  try {
    load(body);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('the config loaded');
};

/** The phases' shared state for a document, as loadEndpointPickerConfig builds it. */
function phaseOf(body: string): LoadPhase {
  const validated = validateDocument(parseYaml(HEAD + body) as Record<string, unknown>);
  if (!validated.ok) throw new Error(JSON.stringify(validated.issues));
  const doc = validated.doc;
  const warnings: string[] = [];
  const warn = (message: string) => warnings.push(message);
  const graph = buildPlugins(doc, {
    registry,
    logger: silentLogger(),
    metrics: new EppMetrics(),
    random: Math.random,
    warn,
  });
  return { doc, graph, registry, warn };
}

describe('requires and produces', () => {
  it('the loader adds the registry producer of data a configured plugin requires, under its type name', () => {
    const config = load('plugins:\n- type: needs-x\n');
    expect(config.plugins.get('makes-x')?.type).toBe('makes-x');
    expect(config.producers.map((plugin) => plugin.name)).toEqual(['makes-x']);
  });

  it('a configured producer of the data is used instead, whatever its name', () => {
    const config = load('plugins:\n- type: needs-x\n- type: makes-x\n  name: mine\n');
    expect(config.plugins.get('mine')?.type).toBe('makes-x');
    expect(config.plugins.has('makes-x')).toBe(false);
    expect(config.producers.map((plugin) => plugin.name)).toEqual(['mine']);
  });

  it('data no registry type produces is a load error naming who requires it', () => {
    const lonely: PluginDefinition = { ...needsX, requires: ['y'] };
    expect(() =>
      loadEndpointPickerConfig(`${HEAD}plugins:\n- type: lonely\n`, { registry: { ...registry, lonely } }),
    ).toThrow(/no plugin type produces "y", which plugin "lonely" \(type lonely\) requires/);
  });

  it('the prefix-cache consumers get approx-prefix-cache-producer, as llm-d adds it', () => {
    for (const type of ['prefix-cache-scorer', 'no-hit-lru-scorer']) {
      const config = load(`plugins:\n- type: ${type}\n`);
      expect(config.plugins.get('approx-prefix-cache-producer')?.type, type).toBe('approx-prefix-cache-producer');
    }
    expect(load('plugins:\n- type: queue-scorer\n').plugins.has('approx-prefix-cache-producer')).toBe(false);
  });
});

describe('kind, checked where a plugin is used', () => {
  it('a profile names only filters, scorers and pickers', () => {
    expect(
      loadError(
        'plugins:\n- type: openai-parser\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: openai-parser\n',
      ),
    ).toMatch(/"openai-parser" \(type openai-parser\) is not a filter, scorer or picker/);
  });

  it('a plugin that implements filter() without declaring the kind is not used as a filter', () => {
    expect(
      loadError(
        'plugins:\n- type: undeclared-filter\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: undeclared-filter\n',
      ),
    ).toMatch(/is not a filter, scorer or picker/);
  });

  it('a plugin that declares a kind it does not implement is refused at load', () => {
    expect(loadError('plugins:\n- type: broken-filter\n')).toMatch(
      /plugin type broken-filter declares kind filter but does not implement it/,
    );
  });

  it('a parser reference must name a parser', () => {
    expect(
      loadError('plugins:\n- type: queue-scorer\nrequestHandler:\n  parsers:\n  - pluginRef: queue-scorer\n'),
    ).toMatch(/requestHandler.parsers\[0\]: "queue-scorer" \(type queue-scorer\) is not a parser/);
  });

  it('the data layer discovery must name a discovery plugin, a source a metrics source', () => {
    expect(
      loadError('plugins:\n- type: queue-scorer\ndataLayer:\n  discovery:\n    pluginRef: queue-scorer\n'),
    ).toMatch(/dataLayer.discovery: "queue-scorer" \(type queue-scorer\) is not a discovery plugin/);
    expect(loadError('plugins:\n- type: queue-scorer\ndataLayer:\n  sources:\n  - pluginRef: queue-scorer\n')).toMatch(
      /dataLayer.sources\[0\]: "queue-scorer" \(type queue-scorer\) is not a metrics data source/,
    );
  });

  it('a disagg handler decider must be a decider', () => {
    const body =
      'plugins:\n- type: queue-scorer\n- type: disagg-profile-handler\n  parameters:\n    deciders:\n      prefill: queue-scorer\n' +
      'schedulingProfiles:\n- name: decode\n  plugins:\n  - pluginRef: queue-scorer\n- name: prefill\n  plugins:\n  - pluginRef: queue-scorer\n';
    expect(loadError(body)).toMatch(/"queue-scorer" \(type queue-scorer\) is not a decider/);
  });

  it('every registry type builds with its defaults and implements the kinds it declares', () => {
    const needsParameters = new Set([
      'by-label',
      'file-discovery',
      'priority-holdback-policy',
      'disagg-profile-handler',
      'pd-profile-handler',
      'endpoint-attribute-filter',
      'endpoint-attribute-scorer',
      'session-id-producer',
    ]);
    for (const type of Object.keys(PLUGIN_REGISTRY).filter((name) => !needsParameters.has(name))) {
      expect(() => loadEndpointPickerConfig(`${HEAD}plugins:\n- type: ${type}\n  name: probe\n`), type).not.toThrow();
    }
  });
});

describe('the phases', () => {
  it('buildProfiles: a profile without a picker gets the default picker', () => {
    const phase = phaseOf('plugins:\n- type: queue-scorer\n');
    const profiles = buildProfiles(phase, new PluginTimer());
    expect(profiles.get('default')?.picker.type).toBe(LOADER_DEFAULTS.picker);
  });

  it('chooseProfileHandler: one profile gets the default handler; two need one configured', () => {
    const single = phaseOf('plugins:\n- type: queue-scorer\n');
    expect(chooseProfileHandler(single, buildProfiles(single, new PluginTimer())).type).toBe(
      LOADER_DEFAULTS.profileHandler,
    );
    const two = phaseOf(
      'plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n  plugins:\n  - pluginRef: queue-scorer\n- name: b\n  plugins:\n  - pluginRef: queue-scorer\n',
    );
    expect(() => chooseProfileHandler(two, buildProfiles(two, new PluginTimer()))).toThrow(ConfigError);
  });

  it('buildParsers: the default parsers in order; a reference to an unconfigured parser type creates it', () => {
    expect(buildParsers(phaseOf('plugins:\n- type: queue-scorer\n')).map((parser) => parser.type)).toEqual([
      ...LOADER_DEFAULTS.parsers,
    ]);
    expect(
      buildParsers(
        phaseOf('plugins:\n- type: queue-scorer\nrequestHandler:\n  parsers:\n  - pluginRef: vllmhttp-parser\n'),
      ).map((parser) => parser.name),
    ).toEqual(['vllmhttp-parser']);
  });

  it('buildDataLayer: the default metrics source unless injectDefaults is false', () => {
    expect(buildDataLayer(phaseOf('plugins:\n- type: queue-scorer\n')).metricsSource).toMatchObject({
      scheme: 'http',
      path: '/metrics',
    });
    expect(
      buildDataLayer(phaseOf('plugins:\n- type: queue-scorer\ndataLayer:\n  injectDefaults: false\n')).metricsSource,
    ).toBeUndefined();
  });
});
