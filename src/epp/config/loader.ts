/**
 * Loads an EndpointPickerConfig into a ready scheduler: validates the document, instantiates every plugin through the
 * registry (a parameter error fails here, naming the plugin), applies llm-d's loader defaults, and wires profiles,
 * the profile handler, producers, PreRequest plugins, parsers and the data layer.
 *
 * Defaults applied (llm-d `pkg/epp/config/loader/defaults.go`): a plugin's name is its type; a scorer's weight is 1;
 * a profile without a picker gets `max-score-picker`; a single profile without a handler gets
 * `single-profile-handler`; `approx-prefix-cache-producer` is created when a consumer (disagg/pd handler,
 * prefix-cache-scorer, no-hit-lru-scorer) needs it; a metrics source is injected unless `dataLayer.injectDefaults:
 * false`; the parsers default to openai, anthropic, vllmhttp and passthrough. Forward references are fine.
 */
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { ConfigError, silentLogger } from '../../common/index.js';
import { EppMetrics } from '../metrics.js';
import { isDataProducer, isEndpointRemoved, isFilter, isPicker, isPreRequest, isProfileHandler, isResponseComplete, isScorer } from '../framework/types.js';
import type { DataProducer, EndpointRemoved, Picker, Plugin, PreRequest, ProfileHandler, ResponseComplete } from '../framework/types.js';
import type { PluginDefinition, PluginFactoryContext } from '../plugins/definition.js';
import type { FileDiscoverySettings } from '../plugins/datalayer/file-discovery.js';
import type { MetricsDataSource, MetricsSourceSettings } from '../plugins/datalayer/metrics-data-source.js';
import { isRequestParser, type RequestParser } from '../plugins/parser/parser-types.js';
import { PLUGIN_REGISTRY, UNSUPPORTED_UPSTREAM_TYPES } from '../plugins/registry.js';
import { APPROX_PREFIX_PRODUCER_TYPE } from '../prefix/match-state.js';
import { PluginTimer } from '../scheduling/plugin-timer.js';
import { SchedulerProfile, type WeightedScorer } from '../scheduling/profile.js';
import { Scheduler } from '../scheduling/scheduler.js';
import { describeIssues, knownKeys } from './param-errors.js';
import { DEFAULT_CONFIG_YAML, endpointPickerConfigSchema, type EndpointPickerConfigDocument, type PluginSpec } from './schema.js';

export interface LoadDependencies {
  metrics?: EppMetrics;
  logger?: Logger;
  random?: () => number;
  /** Plugin types available to the config; default PLUGIN_REGISTRY (tests and experiments add their own). */
  registry?: Readonly<Record<string, PluginDefinition>>;
}

export interface LoadedEndpointPickerConfig {
  readonly document: EndpointPickerConfigDocument;
  readonly plugins: ReadonlyMap<string, Plugin>;
  readonly scheduler: Scheduler;
  readonly profiles: ReadonlyMap<string, SchedulerProfile>;
  readonly handler: ProfileHandler;
  readonly producers: readonly DataProducer[];
  readonly preRequest: readonly PreRequest[];
  readonly responseComplete: readonly ResponseComplete[];
  readonly endpointRemoved: readonly EndpointRemoved[];
  readonly parsers: readonly RequestParser[];
  readonly discovery?: FileDiscoverySettings['discovery'];
  /** Undefined when scraping is off. */
  readonly metricsSource?: MetricsSourceSettings;
  readonly metrics: EppMetrics;
  readonly timer: PluginTimer;
  readonly warnings: readonly string[];
}

const PREFIX_CONSUMERS = new Set(['disagg-profile-handler', 'pd-profile-handler', 'prefix-cache-scorer', 'no-hit-lru-scorer']);
const DEFAULT_PARSERS = ['openai-parser', 'anthropic-parser', 'vllmhttp-parser', 'passthrough-parser'];

function fail(message: string): never {
  throw new ConfigError(`EndpointPickerConfig: ${message}`);
}

function parseDocument(text: string): EndpointPickerConfigDocument {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    fail(`cannot parse as YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('must be a YAML mapping');
  const r = endpointPickerConfigSchema.safeParse(raw);
  if (!r.success) {
    fail(r.error.issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; '));
  }
  return r.data;
}

/** Loads a config from YAML text; an empty text loads llm-d's default single-profile config. */
export function loadEndpointPickerConfig(yamlText: string, deps: LoadDependencies = {}): LoadedEndpointPickerConfig {
  const doc = parseDocument(yamlText.trim() === '' ? DEFAULT_CONFIG_YAML : yamlText);
  const metrics = deps.metrics ?? new EppMetrics();
  const logger = deps.logger ?? silentLogger();
  const random = deps.random ?? Math.random;
  const registry = deps.registry ?? PLUGIN_REGISTRY;
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    logger.warn(m);
  };

  const specs = new Map<string, PluginSpec & { name: string }>();
  for (const [i, s] of doc.plugins.entries()) {
    const name = s.name ?? s.type;
    if (specs.has(name)) fail(`plugins[${i}]: duplicate plugin name "${name}"`);
    specs.set(name, { ...s, name });
  }
  const hasType = (t: string) => [...specs.values()].some((s) => s.type === t);
  if ([...specs.values()].some((s) => PREFIX_CONSUMERS.has(s.type)) && !hasType(APPROX_PREFIX_PRODUCER_TYPE)) {
    specs.set(APPROX_PREFIX_PRODUCER_TYPE, { name: APPROX_PREFIX_PRODUCER_TYPE, type: APPROX_PREFIX_PRODUCER_TYPE });
  }

  const instances = new Map<string, Plugin>();
  const building = new Set<string>();
  const instantiate = (spec: PluginSpec & { name: string }): Plugin => {
    const done = instances.get(spec.name);
    if (done) return done;
    const where = `plugin "${spec.name}" (type ${spec.type})`;
    if (building.has(spec.name)) fail(`${where}: circular plugin reference`);
    const def = registry[spec.type];
    if (!def) {
      const why = UNSUPPORTED_UPSTREAM_TYPES[spec.type];
      fail(why ? `${where}: type ${spec.type} is not supported by pd-router (${why})` : `${where}: unknown plugin type "${spec.type}"`);
    }
    if (def.deprecatedFor) warn(`${where} is deprecated upstream; use ${def.deprecatedFor}`);
    const rawParams = spec.parameters ?? {};
    if (typeof rawParams !== 'object' || rawParams === null || Array.isArray(rawParams)) fail(`${where}: parameters must be a mapping`);
    const parsed = def.params.safeParse(rawParams);
    if (!parsed.success) fail(`${where}: ${describeIssues(parsed.error.issues)}`);
    const known = knownKeys(def.params);
    const unknown = known ? Object.keys(rawParams).filter((k) => !known.has(k)) : [];
    if (unknown.length > 0) {
      if (def.strictParams) fail(`${where}: unknown parameter ${unknown.map((k) => `"${k}"`).join(', ')}`);
      warn(`${where}: ignoring unknown parameter ${unknown.map((k) => `"${k}"`).join(', ')}`);
    }
    building.add(spec.name);
    const ctx: PluginFactoryContext = {
      type: spec.type,
      name: spec.name,
      logger,
      metrics,
      random,
      plugin(name) {
        const target = specs.get(name);
        if (!target) fail(`${where}: refers to plugin "${name}", which is not defined`);
        return instantiate(target);
      },
      namesOfType: (t) => [...specs.values()].filter((s) => s.type === t).map((s) => s.name),
    };
    let plugin: Plugin;
    try {
      plugin = def.create(ctx, parsed.data);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      fail(`${where}: ${(e as Error).message}`);
    }
    building.delete(spec.name);
    instances.set(spec.name, plugin);
    return plugin;
  };
  for (const spec of specs.values()) instantiate(spec);
  const hidden = (type: string): Plugin => instantiate({ name: `${type} (default)`, type });

  // Profiles.
  const timer = new PluginTimer((point, plugin) => metrics.pluginDuration(point, plugin.type, plugin.name));
  if (doc.schedulingProfiles.length === 0) fail('schedulingProfiles: at least one profile is required');
  const profiles = new Map<string, SchedulerProfile>();
  for (const [i, p] of doc.schedulingProfiles.entries()) {
    const where = `schedulingProfiles[${i}] "${p.name}"`;
    if (profiles.has(p.name)) fail(`${where}: duplicate profile name`);
    const filters = [];
    const scorers: WeightedScorer[] = [];
    let picker: Picker | undefined;
    for (const r of p.plugins) {
      const plugin = instances.get(r.pluginRef);
      if (!plugin) fail(`${where}: pluginRef "${r.pluginRef}" is not defined in plugins`);
      let used = false;
      if (isFilter(plugin)) {
        filters.push(plugin);
        used = true;
      }
      if (isScorer(plugin)) {
        scorers.push({ scorer: plugin, weight: r.weight ?? 1 });
        used = true;
      } else if (r.weight !== undefined) warn(`${where}: weight on "${r.pluginRef}" ignored: it is not a scorer`);
      if (isPicker(plugin)) {
        if (picker) fail(`${where}: more than one picker ("${picker.name}", "${plugin.name}")`);
        picker = plugin;
        used = true;
      }
      if (!used) fail(`${where}: "${r.pluginRef}" (type ${plugin.type}) is not a filter, scorer or picker`);
    }
    profiles.set(p.name, new SchedulerProfile(p.name, filters, scorers, picker ?? (hidden('max-score-picker') as Picker), timer));
  }

  // Profile handler.
  const handlers = [...instances.values()].filter(isProfileHandler);
  if (handlers.length > 1) fail(`more than one profile handler: ${handlers.map((h) => `"${h.name}"`).join(', ')}`);
  let handler = handlers[0];
  if (!handler) {
    if (profiles.size > 1) fail('several scheduling profiles need a profile handler (e.g. disagg-profile-handler)');
    handler = hidden('single-profile-handler') as ProfileHandler;
  }
  const problem = handler.validateProfiles?.([...profiles.keys()]);
  if (problem) fail(problem);

  // Parsers.
  const parserRefs = doc.requestHandler?.parsers;
  const parsers: RequestParser[] = parserRefs?.length
    ? parserRefs.map((r, i) => {
        const p = instances.get(r.pluginRef);
        if (!p) fail(`requestHandler.parsers[${i}]: pluginRef "${r.pluginRef}" is not defined in plugins`);
        if (!isRequestParser(p)) fail(`requestHandler.parsers[${i}]: "${r.pluginRef}" (type ${p.type}) is not a parser`);
        return p;
      })
    : DEFAULT_PARSERS.map((t) => hidden(t) as RequestParser);

  // Data layer.
  let discovery: FileDiscoverySettings['discovery'] | undefined;
  const discoveryRef = doc.dataLayer?.discovery?.pluginRef;
  if (discoveryRef) {
    const d = instances.get(discoveryRef) as Partial<FileDiscoverySettings> | undefined;
    if (!d) fail(`dataLayer.discovery: pluginRef "${discoveryRef}" is not defined in plugins`);
    if (!d.discovery) fail(`dataLayer.discovery: "${discoveryRef}" (type ${d.type}) is not a discovery plugin`);
    discovery = d.discovery;
  }
  let metricsSource: MetricsSourceSettings | undefined;
  const sources = doc.dataLayer?.sources ?? [];
  for (const [i, s] of sources.entries()) {
    const src = instances.get(s.pluginRef) as Partial<MetricsDataSource> | undefined;
    if (!src) fail(`dataLayer.sources[${i}]: pluginRef "${s.pluginRef}" is not defined in plugins`);
    if (!src.source) fail(`dataLayer.sources[${i}]: "${s.pluginRef}" (type ${src.type}) is not a metrics data source`);
    for (const [j, x] of s.extractors.entries()) {
      const ex = instances.get(x.pluginRef) as { extractor?: boolean; type?: string } | undefined;
      if (!ex?.extractor) fail(`dataLayer.sources[${i}].extractors[${j}]: "${x.pluginRef}" is not a metrics extractor`);
    }
    if (metricsSource) fail(`dataLayer.sources[${i}]: pd-router supports one metrics data source`);
    metricsSource = src.source;
  }
  if (!metricsSource && doc.dataLayer?.injectDefaults !== false) {
    metricsSource = (hidden('metrics-data-source') as MetricsDataSource).source;
  }

  if (doc.flowControl !== undefined || doc.featureGates.includes('flowControl')) warn('flowControl is not implemented by pd-router; the section is ignored');
  if (doc.saturationDetector) warn('saturationDetector is not implemented by pd-router (no request is ever shed); the section is ignored');
  for (const g of doc.featureGates) if (g !== 'flowControl') warn(`unknown feature gate "${g}" ignored`);

  // Config order (instantiation order differs with forward references), then the defaults the loader added.
  const all = [...[...specs.keys()].map((n) => instances.get(n)!), ...[...instances.entries()].filter(([n]) => !specs.has(n)).map(([, p]) => p)];
  return {
    document: doc,
    plugins: instances,
    scheduler: new Scheduler(profiles, handler, timer),
    profiles,
    handler,
    producers: all.filter(isDataProducer),
    // PreRequest plugins run in config order; the handler is among them when it writes headers.
    preRequest: all.filter(isPreRequest),
    responseComplete: all.filter(isResponseComplete),
    endpointRemoved: all.filter(isEndpointRemoved),
    parsers,
    discovery,
    metricsSource,
    metrics,
    timer,
    warnings,
  };
}
