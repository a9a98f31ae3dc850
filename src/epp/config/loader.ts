/**
 * Loads an EndpointPickerConfig into a ready scheduler: validates the document (schema.ts), instantiates every plugin
 * through the registry (plugin-graph.ts; a parameter error fails here, naming the plugin and the key), applies the
 * loader defaults upstream applies, and wires profiles, the profile handler, producers, PreRequest plugins, parsers,
 * the data layer, and the (parsed, not enforced) flow-control settings.
 *
 * Defaults applied (llm-d-router and GAIE `pkg/epp/config/loader/defaults.go`): a plugin's name is its type; a
 * scorer's weight is 1; no scheduling profiles → one profile "default" with every configured filter, scorer and
 * picker; a profile without a picker gets the first configured picker, else `max-score-picker`; a single profile
 * without a handler gets `single-profile-handler`; `approx-prefix-cache-producer` is created when a consumer
 * (disagg/pd handler, prefix-cache-scorer, no-hit-lru-scorer) needs it; a metrics source is injected unless
 * `dataLayer.injectDefaults: false`; the parsers default to openai, anthropic, vllmhttp and passthrough, and a parser
 * reference to an undefined name creates the parser of that type. Forward references are fine.
 */
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { silentLogger } from '../../common/index.js';
import { EppMetrics } from '../metrics.js';
import { DEFAULT_ENGINES, type EngineRegistry } from '../datalayer/engine-metrics.js';
import { isAsyncDataProducer, isDataProducer, isEndpointRemoved, isLifecyclePlugin, isFilter, isPicker, isPreRequest, isProfileHandler, isResponseComplete, isScorer } from '../framework/types.js';
import type { AsyncDataProducer, DataProducer, EndpointRemoved, LifecyclePlugin, Picker, Plugin, PreRequest, ProfileHandler, ResponseComplete } from '../framework/types.js';
import type { PluginDefinition } from '../plugins/definition.js';
import type { MetricsExtractor } from '../plugins/datalayer/core-metrics-extractor.js';
import type { FileDiscoverySettings } from '../plugins/datalayer/file-discovery.js';
import type { MetricsDataSource, MetricsSourceSettings } from '../plugins/datalayer/metrics-data-source.js';
import { isFlowControlPlugin } from '../plugins/flow-control/flow-control-plugin.js';
import { isRequestParser, type RequestParser } from '../plugins/parser/parser-types.js';
import { PLUGIN_REGISTRY } from '../plugins/registry.js';
import { PluginTimer } from '../scheduling/plugin-timer.js';
import { SchedulerProfile, type WeightedScorer } from '../scheduling/profile.js';
import { Scheduler } from '../scheduling/scheduler.js';
import { resolveFlowControl } from './flow-control-loader.js';
import type { FlowControlSettings } from './flow-control-section.js';
import { fail, namedSpecs, PluginGraph } from './plugin-graph.js';
import { DEFAULT_CONFIG_YAML, validateDocument, type EndpointPickerConfigDocument, type ProfileSpec } from './schema.js';

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
  /** Producers that may wait (tokenizers); they run before `producers`. */
  readonly asyncProducers: readonly AsyncDataProducer[];
  /** Plugins with sockets or timers, started and closed with the EPP. */
  readonly lifecycle: readonly LifecyclePlugin[];
  readonly preRequest: readonly PreRequest[];
  readonly responseComplete: readonly ResponseComplete[];
  readonly endpointRemoved: readonly EndpointRemoved[];
  readonly parsers: readonly RequestParser[];
  readonly discovery?: FileDiscoverySettings['discovery'];
  /** Undefined when scraping is off. */
  readonly metricsSource?: MetricsSourceSettings;
  /** The engines the metrics extractor maps (core-metrics-extractor parameters). */
  readonly metricsEngines: EngineRegistry;
  /** Flow control and saturation detection as configured: parsed and validated, not enforced. */
  readonly flowControl: FlowControlSettings;
  readonly metrics: EppMetrics;
  readonly timer: PluginTimer;
  readonly warnings: readonly string[];
}

const DEFAULT_PARSERS = ['openai-parser', 'anthropic-parser', 'vllmhttp-parser', 'passthrough-parser'];

function parseDocument(text: string): EndpointPickerConfigDocument {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    fail(`cannot parse as YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('must be a YAML mapping');
  const r = validateDocument(raw as Record<string, unknown>);
  if (!r.ok) fail(r.issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; '));
  return r.doc;
}

/** Upstream's default profile when none is configured: every configured filter, scorer and picker. */
function defaultProfiles(doc: EndpointPickerConfigDocument, graph: PluginGraph): ProfileSpec[] {
  if (doc.schedulingProfiles.length > 0) return doc.schedulingProfiles;
  const refs = graph
    .ordered()
    .filter((p) => isFilter(p) || isScorer(p) || isPicker(p))
    .map((p) => ({ pluginRef: p.name }));
  return [{ name: 'default', plugins: refs }];
}

function buildProfiles(specs: ProfileSpec[], graph: PluginGraph, timer: PluginTimer, warn: (m: string) => void): Map<string, SchedulerProfile> {
  const configuredPicker = graph.ordered().find(isPicker);
  const profiles = new Map<string, SchedulerProfile>();
  for (const [i, p] of specs.entries()) {
    const where = `schedulingProfiles[${i}] "${p.name}"`;
    if (profiles.has(p.name)) fail(`${where}: duplicate profile name`);
    const filters = [];
    const scorers: WeightedScorer[] = [];
    let picker: Picker | undefined;
    for (const r of p.plugins) {
      const plugin = graph.get(r.pluginRef);
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
      if (!used && isFlowControlPlugin(plugin)) fail(`${where}: "${r.pluginRef}" (type ${plugin.type}) is a flow-control plugin; pd-router does not implement it as a filter`);
      if (!used) fail(`${where}: "${r.pluginRef}" (type ${plugin.type}) is not a filter, scorer or picker`);
    }
    profiles.set(p.name, new SchedulerProfile(p.name, filters, scorers, picker ?? configuredPicker ?? (graph.hidden('max-score-picker') as Picker), timer));
  }
  return profiles;
}

function buildParsers(doc: EndpointPickerConfigDocument, graph: PluginGraph, registry: Readonly<Record<string, PluginDefinition>>, warn: (m: string) => void): RequestParser[] {
  let refs = doc.requestHandler?.parsers;
  let section = 'requestHandler.parsers';
  if (doc.parser) {
    if (doc.family === 'llm-d') warn('top-level parser is deprecated in llm-d-router; use requestHandler.parsers');
    if (refs?.length) warn('both parser and requestHandler.parsers are set; requestHandler.parsers is used, as upstream');
    else [refs, section] = [[doc.parser], 'parser'];
  }
  if (!refs?.length) return DEFAULT_PARSERS.map((t) => graph.hidden(t) as RequestParser);
  return refs.map((r, i) => {
    const at = section === 'parser' ? 'parser' : `${section}[${i}]`;
    // As upstream, a reference to an undefined name creates the parser of that type.
    const p = graph.get(r.pluginRef) ?? (registry[r.pluginRef]?.kind === 'parser' ? graph.hidden(r.pluginRef, r.pluginRef) : undefined);
    if (!p) fail(`${at}: pluginRef "${r.pluginRef}" is not defined in plugins`);
    if (!isRequestParser(p)) fail(`${at}: "${r.pluginRef}" (type ${p.type}) is not a parser`);
    return p;
  });
}

interface DataLayerResult {
  discovery?: FileDiscoverySettings['discovery'];
  metricsSource?: MetricsSourceSettings;
  engines: EngineRegistry;
}

function buildDataLayer(doc: EndpointPickerConfigDocument, graph: PluginGraph, warn: (m: string) => void): DataLayerResult {
  const dl = doc.dataLayer;
  const key = doc.dataKey ?? 'dataLayer';
  if (doc.featureGates.dataLayer && !dl?.sources) fail('featureGates: the dataLayer gate is on, which needs the data section with its sources (GAIE v1.4)');
  let discovery: FileDiscoverySettings['discovery'] | undefined;
  const discoveryRef = dl?.discovery?.pluginRef;
  if (discoveryRef) {
    const d = graph.get(discoveryRef) as Partial<FileDiscoverySettings> | undefined;
    if (!d) fail(`${key}.discovery: pluginRef "${discoveryRef}" is not defined in plugins`);
    if (!d.discovery) fail(`${key}.discovery: "${discoveryRef}" (type ${d.type}) is not a discovery plugin`);
    discovery = d.discovery;
  }
  for (const [field, ref] of [
    ['peerDiscovery', dl?.peerDiscovery?.pluginRef],
    ['crossReplicaSyncerPluginRef', dl?.crossReplicaSyncerPluginRef],
  ] as const) {
    if (!ref) continue;
    const p = graph.get(ref);
    fail(p ? `${key}.${field}: "${ref}" (type ${p.type}) is not a ${field === 'peerDiscovery' ? 'peer-discovery' : 'cross-replica syncer'} plugin (pd-router does not sync state across EPP replicas)` : `${key}.${field}: pluginRef "${ref}" is not defined in plugins`);
  }
  if (dl?.crossReplicaSyncInterval !== undefined) warn(`${key}.crossReplicaSyncInterval has no effect without crossReplicaSyncerPluginRef`);
  const legacyMetrics = doc.featureGates.enableLegacyMetrics === true;
  if (legacyMetrics && dl?.sources?.length) warn(`${key}.sources is not used: the enableLegacyMetrics gate scrapes with the default metrics source, as GAIE v1.5`);

  let metricsSource: MetricsSourceSettings | undefined;
  let engines: EngineRegistry = DEFAULT_ENGINES;
  for (const [i, s] of (legacyMetrics ? [] : (dl?.sources ?? [])).entries()) {
    const src = graph.get(s.pluginRef) as (Partial<MetricsDataSource> & { notificationSource?: true }) | undefined;
    if (!src) fail(`${key}.sources[${i}]: pluginRef "${s.pluginRef}" is not defined in plugins`);
    if (src.notificationSource) {
      // endpoint-notification-source: pd-router notifies plugins of endpoint changes itself; its extractors must exist.
      for (const [j, x] of s.extractors.entries()) if (!graph.get(x.pluginRef)) fail(`${key}.sources[${i}].extractors[${j}]: pluginRef "${x.pluginRef}" is not defined in plugins`);
      continue;
    }
    if (!src.source) fail(`${key}.sources[${i}]: "${s.pluginRef}" (type ${src.type}) is not a metrics data source`);
    if (metricsSource) fail(`${key}.sources[${i}]: pd-router supports one metrics data source`);
    for (const [j, x] of s.extractors.entries()) {
      const ex = graph.get(x.pluginRef) as Partial<MetricsExtractor> | undefined;
      if (!ex?.extractor) fail(`${key}.sources[${i}].extractors[${j}]: "${x.pluginRef}" is not a metrics extractor`);
      engines = ex.engines!;
    }
    metricsSource = src.source;
  }
  if (!metricsSource && (legacyMetrics || dl?.injectDefaults !== false)) {
    metricsSource = (graph.hidden('metrics-data-source') as MetricsDataSource).source;
  }
  return { discovery, metricsSource, engines };
}

/** Loads a config from YAML text; an empty text loads llm-d's default single-profile config. */
export function loadEndpointPickerConfig(yamlText: string, deps: LoadDependencies = {}): LoadedEndpointPickerConfig {
  const doc = parseDocument(yamlText.trim() === '' ? DEFAULT_CONFIG_YAML : yamlText);
  const metrics = deps.metrics ?? new EppMetrics();
  const logger = deps.logger ?? silentLogger();
  const registry = deps.registry ?? PLUGIN_REGISTRY;
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    logger.warn(m);
  };

  const graph = new PluginGraph(namedSpecs(doc.plugins, registry), { registry, logger, metrics, random: deps.random ?? Math.random, warn });
  graph.buildAll();

  const timer = new PluginTimer((point, plugin) => metrics.pluginDuration(point, plugin.type, plugin.name));
  const profiles = buildProfiles(defaultProfiles(doc, graph), graph, timer, warn);
  const handlers = [...graph.instances.values()].filter(isProfileHandler);
  if (handlers.length > 1) fail(`more than one profile handler: ${handlers.map((h) => `"${h.name}"`).join(', ')}`);
  let handler = handlers[0];
  if (!handler) {
    if (profiles.size > 1) fail('several scheduling profiles need a profile handler (e.g. disagg-profile-handler)');
    handler = graph.hidden('single-profile-handler') as ProfileHandler;
  }
  const problem = handler.validateProfiles?.([...profiles.keys()]);
  if (problem) fail(problem);

  const parsers = buildParsers(doc, graph, registry, warn);
  const data = buildDataLayer(doc, graph, warn);
  const flowControl = resolveFlowControl(doc, graph, warn);

  const all = graph.ordered();
  return {
    document: doc,
    plugins: graph.instances,
    scheduler: new Scheduler(profiles, handler, timer),
    profiles,
    handler,
    producers: all.filter(isDataProducer),
    asyncProducers: all.filter(isAsyncDataProducer),
    lifecycle: all.filter(isLifecyclePlugin),
    // PreRequest plugins run in config order; the handler is among them when it writes headers.
    preRequest: all.filter(isPreRequest),
    responseComplete: all.filter(isResponseComplete),
    endpointRemoved: all.filter(isEndpointRemoved),
    parsers,
    discovery: data.discovery,
    metricsSource: data.metricsSource,
    metricsEngines: data.engines,
    flowControl,
    metrics,
    timer,
    warnings,
  };
}
