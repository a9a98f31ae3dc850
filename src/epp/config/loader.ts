/**
 * Loads an EndpointPickerConfig into a ready scheduler: validates the document (schema.ts), instantiates every plugin
 * through the registry (plugin-graph.ts; a parameter error fails here, naming the plugin and the key), applies the
 * loader defaults upstream applies, and wires profiles, the profile handler, producers, PreRequest plugins, parsers,
 * the data layer, and the (parsed, not enforced) flow-control settings.
 *
 * Defaults applied (llm-d-router and GAIE `pkg/epp/config/loader/defaults.go`): a plugin's name is its type; a
 * scorer's weight is 1; no scheduling profiles → one profile "default" with every configured filter, scorer and
 * picker; a profile without a picker gets the first configured picker, else `max-score-picker`; a single profile
 * without a handler gets `single-profile-handler`; the producer of data a plugin `requires` is created when no
 * configured plugin `produces` it (`approx-prefix-cache-producer` for the disagg/pd handlers, prefix-cache-scorer and
 * no-hit-lru-scorer); a metrics source is injected unless `dataLayer.injectDefaults: false`; the parsers default to
 * openai, anthropic, vllmhttp and passthrough, and a parser reference to an undefined name creates the parser of that
 * type. Forward references are fine. The default types are named in registry.ts (LOADER_DEFAULTS).
 *
 * The phases, each a function: parseDocument, buildPlugins, buildProfiles, chooseProfileHandler, buildParsers,
 * buildDataLayer, resolveFlowControl (flow-control-loader.ts). Every config slot that names a plugin checks its kind.
 */
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { isObject, silentLogger } from '../../common/index.js';
import { EppMetrics } from '../metrics.js';
import type { ConfiguredDiscovery } from '../datalayer/discovery.js';
import { DEFAULT_ENGINES, type EngineRegistry } from '../datalayer/engine-metrics.js';
import type { MetricsSourceSettings } from '../datalayer/metrics-scraper.js';
import {
  isAsyncDataProducer,
  isDataProducer,
  isEndpointRemoved,
  isFilter,
  isLifecyclePlugin,
  isPicker,
  isAdmitter,
  isPreRequest,
  isProfileHandler,
  isRequestPreparer,
  isResponseComplete,
  isResponseHeaders,
  isScorer,
} from '../framework/types.js';
import type {
  AsyncDataProducer,
  DataProducer,
  EndpointRemoved,
  LifecyclePlugin,
  Picker,
  Plugin,
  PreRequest,
  Admitter,
  ProfileHandler,
  RequestPreparer,
  ResponseComplete,
  ResponseHeaders,
} from '../framework/types.js';
import { kindsOf, type PluginDefinition } from '../plugins/definition.js';
import type { MetricsExtractor } from '../plugins/datalayer/core-metrics-extractor.js';
import type { FileDiscoverySettings } from '../plugins/datalayer/file-discovery.js';
import type { MetricsDataSource } from '../plugins/datalayer/metrics-data-source.js';
import type { ModelsDataSource } from '../plugins/datalayer/models-data-source.js';
import { isRequestParser, type RequestParser } from '../plugins/parser/parser-types.js';
import { LOADER_DEFAULTS, PLUGIN_REGISTRY } from '../plugins/registry.js';
import { PluginTimer } from '../scheduling/plugin-timer.js';
import { SchedulerProfile, type WeightedScorer } from '../scheduling/profile.js';
import { Scheduler } from '../scheduling/scheduler.js';
import { resolveFlowControl } from './flow-control-loader.js';
import type { FlowControlSettings } from './flow-control-section.js';
import { fail, namedSpecs, PluginGraph, type GraphDependencies } from './plugin-graph.js';
import {
  DEFAULT_CONFIG_YAML,
  validateDocument,
  type EndpointPickerConfigDocument,
  type ProfileSpec,
} from './schema.js';

/** What the loader may be given: metrics, a logger, a random source and the plugin registry. */
export interface LoadDependencies {
  metrics?: EppMetrics;
  logger?: Logger;
  random?: () => number;
  /** Plugin types available to the config; default PLUGIN_REGISTRY (tests and experiments add their own). */
  registry?: Readonly<Record<string, PluginDefinition>>;
}

/** A loaded EndpointPickerConfig: the document, the plugins, the scheduler and what the EPP wires from it. */
export interface LoadedEndpointPickerConfig {
  readonly document: EndpointPickerConfigDocument;
  readonly plugins: ReadonlyMap<string, Plugin>;
  readonly scheduler: Scheduler;
  readonly profiles: ReadonlyMap<string, SchedulerProfile>;
  readonly handler: ProfileHandler;
  readonly producers: readonly DataProducer[];
  /** Producers that wait (burst-prefix-cache-producer): scheduling becomes asynchronous when there is one. */
  readonly asyncProducers: readonly AsyncDataProducer[];
  /** Plugins that prepare a request before the producers and may wait (tokenizers): scheduling becomes asynchronous. */
  readonly preparers: readonly RequestPreparer[];
  /** Plugins with sockets or timers, started and closed with the EPP. */
  readonly lifecycle: readonly LifecyclePlugin[];
  /** Admission plugins (probabilistic-admitter), run in config order after the producers, before the scheduler. */
  readonly admitters: readonly Admitter[];
  readonly preRequest: readonly PreRequest[];
  readonly responseComplete: readonly ResponseComplete[];
  /** Plugins that add response headers (session affinity's token), in config order. */
  readonly responseHeaders: readonly ResponseHeaders[];
  readonly endpointRemoved: readonly EndpointRemoved[];
  readonly parsers: readonly RequestParser[];
  readonly discovery?: ConfiguredDiscovery;
  /** Undefined when scraping is off. */
  readonly metricsSource?: MetricsSourceSettings;
  /** The /v1/models poll (models-data-source with a models-data-extractor), when configured. */
  readonly modelsSource?: MetricsSourceSettings;
  /** The engines the metrics extractor maps (core-metrics-extractor parameters). */
  readonly metricsEngines: EngineRegistry;
  /** Flow control and saturation detection as configured: parsed and validated, not enforced. */
  readonly flowControl: FlowControlSettings;
  readonly metrics: EppMetrics;
  readonly timer: PluginTimer;
  readonly warnings: readonly string[];
}

function parseDocument(text: string): EndpointPickerConfigDocument {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    fail(`cannot parse as YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!isObject(raw)) fail('must be a YAML mapping');
  const r = validateDocument(raw);
  if (!r.ok)
    fail(r.issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; '));
  return r.doc;
}

/** What every phase after parsing shares: the document, the plugins and where warnings go. */
export interface LoadPhase {
  readonly doc: EndpointPickerConfigDocument;
  readonly graph: PluginGraph;
  readonly registry: Readonly<Record<string, PluginDefinition>>;
  readonly warn: (message: string) => void;
}

/** Phase 2: every configured plugin, built and checked, plus the producers the configured ones require. */
export function buildPlugins(doc: EndpointPickerConfigDocument, deps: GraphDependencies): PluginGraph {
  const graph = new PluginGraph(namedSpecs(doc.plugins, deps.registry), deps);
  graph.buildAll();
  return graph;
}

/** Upstream's default profile when none is configured: every configured filter, scorer and picker. */
function profileSpecs({ doc, graph }: LoadPhase): ProfileSpec[] {
  if (doc.schedulingProfiles.length > 0) return doc.schedulingProfiles;
  const refs = graph
    .ordered()
    .filter((plugin) => isFilter(plugin) || isScorer(plugin) || isPicker(plugin))
    .map((plugin) => ({ pluginRef: plugin.name }));
  return [{ name: 'default', plugins: refs }];
}

/**
 * Phase 3: the scheduling profiles. Each reference must name a filter, a scorer or a picker (by its kind); a profile
 * without a picker gets the first configured one, else the default picker.
 */
export function buildProfiles(phase: LoadPhase, timer: PluginTimer): Map<string, SchedulerProfile> {
  const { graph, warn } = phase;
  const configuredPicker = graph.ordered().find((plugin) => isPicker(plugin) && graph.hasKind(plugin, 'picker')) as
    Picker | undefined;
  const profiles = new Map<string, SchedulerProfile>();
  for (const [i, p] of profileSpecs(phase).entries()) {
    const where = `schedulingProfiles[${i}] "${p.name}"`;
    if (profiles.has(p.name)) fail(`${where}: duplicate profile name`);
    const filters = [];
    const scorers: WeightedScorer[] = [];
    let picker: Picker | undefined;
    for (const ref of p.plugins) {
      const plugin = graph.get(ref.pluginRef);
      if (!plugin) fail(`${where}: pluginRef "${ref.pluginRef}" is not defined in plugins`);
      let used = false;
      if (isFilter(plugin) && graph.hasKind(plugin, 'filter')) {
        filters.push(plugin);
        used = true;
      }
      if (isScorer(plugin) && graph.hasKind(plugin, 'scorer')) {
        scorers.push({ scorer: plugin, weight: ref.weight ?? 1 });
        used = true;
      } else if (ref.weight !== undefined) warn(`${where}: weight on "${ref.pluginRef}" ignored: it is not a scorer`);
      if (isPicker(plugin) && graph.hasKind(plugin, 'picker')) {
        if (picker) fail(`${where}: more than one picker ("${picker.name}", "${plugin.name}")`);
        picker = plugin;
        used = true;
      }
      if (!used && graph.hasKind(plugin, 'flow-control'))
        fail(
          `${where}: "${ref.pluginRef}" (type ${plugin.type}) is a flow-control plugin; pd-router does not implement it as a filter`,
        );
      if (!used) fail(`${where}: "${ref.pluginRef}" (type ${plugin.type}) is not a filter, scorer or picker`);
    }
    profiles.set(
      p.name,
      new SchedulerProfile(
        p.name,
        filters,
        scorers,
        picker ?? configuredPicker ?? (graph.hidden(LOADER_DEFAULTS.picker) as Picker),
        timer,
      ),
    );
  }
  return profiles;
}

/** Phase 4: the one profile handler (the default one for a single profile), checked against the profiles. */
export function chooseProfileHandler(
  { graph }: LoadPhase,
  profiles: ReadonlyMap<string, SchedulerProfile>,
): ProfileHandler {
  const handlers = [...graph.instances.values()].filter(
    (plugin) => isProfileHandler(plugin) && graph.hasKind(plugin, 'profile-handler'),
  ) as ProfileHandler[];
  if (handlers.length > 1)
    fail(`more than one profile handler: ${handlers.map((handler) => `"${handler.name}"`).join(', ')}`);
  let handler = handlers[0];
  if (!handler) {
    if (profiles.size > 1) fail('several scheduling profiles need a profile handler (e.g. disagg-profile-handler)');
    handler = graph.hidden(LOADER_DEFAULTS.profileHandler) as ProfileHandler;
  }
  const problem = handler.validateProfiles?.([...profiles.keys()]);
  if (problem) fail(problem);
  return handler;
}

/** Phase 5: the request parsers, in order; the defaults when none is configured. */
export function buildParsers({ doc, graph, registry, warn }: LoadPhase): RequestParser[] {
  let refs = doc.requestHandler?.parsers;
  let section = 'requestHandler.parsers';
  if (doc.parser) {
    if (doc.family === 'llm-d') warn('top-level parser is deprecated in llm-d-router; use requestHandler.parsers');
    if (refs?.length)
      warn('both parser and requestHandler.parsers are set; requestHandler.parsers is used, as upstream');
    else [refs, section] = [[doc.parser], 'parser'];
  }
  if (!refs?.length) return LOADER_DEFAULTS.parsers.map((text) => graph.hidden(text) as RequestParser);
  return refs.map((result, i) => {
    const at = section === 'parser' ? 'parser' : `${section}[${i}]`;
    // As upstream, a reference to an undefined name creates the parser of that type.
    const named = registry[result.pluginRef];
    const p =
      graph.get(result.pluginRef) ??
      (named && kindsOf(named).includes('parser') ? graph.hidden(result.pluginRef, result.pluginRef) : undefined);
    if (!p) fail(`${at}: pluginRef "${result.pluginRef}" is not defined in plugins`);
    if (!isRequestParser(p) || !graph.hasKind(p, 'parser'))
      fail(`${at}: "${result.pluginRef}" (type ${p.type}) is not a parser`);
    return p;
  });
}

interface DataLayerResult {
  discovery?: ConfiguredDiscovery;
  metricsSource?: MetricsSourceSettings;
  modelsSource?: MetricsSourceSettings;
  engines: EngineRegistry;
}

/** The data layer's discovery plugin, if the config names one. */
function configuredDiscovery({ doc, graph }: LoadPhase, key: string): ConfiguredDiscovery | undefined {
  const ref = doc.dataLayer?.discovery?.pluginRef;
  if (!ref) return undefined;
  const d = graph.get(ref);
  if (!d) fail(`${key}.discovery: pluginRef "${ref}" is not defined in plugins`);
  if (!graph.hasKind(d, 'endpoint-discovery'))
    fail(`${key}.discovery: "${ref}" (type ${d.type}) is not a discovery plugin`);
  return (d as FileDiscoverySettings).discovery;
}

/** The configured metrics source and its extractor's engines (at most one source); undefined when none is. */
function configuredMetricsSource(
  { doc, graph }: LoadPhase,
  key: string,
): { source: MetricsSourceSettings; engines: EngineRegistry } | undefined {
  let found: { source: MetricsSourceSettings; engines: EngineRegistry } | undefined;
  for (const [i, s] of (doc.dataLayer?.sources ?? []).entries()) {
    const src = graph.get(s.pluginRef);
    if (!src) fail(`${key}.sources[${i}]: pluginRef "${s.pluginRef}" is not defined in plugins`);
    if (graph.hasKind(src, 'models-source')) continue;
    if (graph.hasKind(src, 'notification-source')) {
      // endpoint-notification-source: pd-router notifies plugins of endpoint changes itself; its extractors must exist.
      for (const [j, x] of s.extractors.entries())
        if (!graph.get(x.pluginRef))
          fail(`${key}.sources[${i}].extractors[${j}]: pluginRef "${x.pluginRef}" is not defined in plugins`);
      continue;
    }
    if (!graph.hasKind(src, 'metrics-source'))
      fail(`${key}.sources[${i}]: "${s.pluginRef}" (type ${src.type}) is not a metrics data source`);
    if (found) fail(`${key}.sources[${i}]: pd-router supports one metrics data source`);
    let engines: EngineRegistry = DEFAULT_ENGINES;
    for (const [j, x] of s.extractors.entries()) {
      const ex = graph.get(x.pluginRef);
      if (!ex || !graph.hasKind(ex, 'metrics-extractor'))
        fail(`${key}.sources[${i}].extractors[${j}]: "${x.pluginRef}" is not a metrics extractor`);
      engines = (ex as MetricsExtractor).engines;
    }
    found = { source: (src as MetricsDataSource).source, engines };
  }
  return found;
}

/** The configured models source (models-data-source with its models-data-extractor), if any; at most one. */
function configuredModelsSource({ doc, graph, warn }: LoadPhase, key: string): MetricsSourceSettings | undefined {
  let found: MetricsSourceSettings | undefined;
  for (const [i, s] of (doc.dataLayer?.sources ?? []).entries()) {
    const src = graph.get(s.pluginRef);
    if (!src || !graph.hasKind(src, 'models-source')) continue;
    if (found) fail(`${key}.sources[${i}]: pd-router supports one models data source`);
    for (const [j, x] of s.extractors.entries()) {
      const ex = graph.get(x.pluginRef);
      if (!ex || !graph.hasKind(ex, 'models-extractor'))
        fail(
          `${key}.sources[${i}].extractors[${j}]: "${x.pluginRef}" is not a models extractor (models-data-extractor)`,
        );
    }
    // Without an extractor nothing would keep what the poll returns: do not poll.
    if (s.extractors.length === 0)
      warn(`${key}.sources[${i}]: "${s.pluginRef}" has no extractor; /v1/models is not polled`);
    else found = (src as ModelsDataSource).modelsSource;
  }
  return found;
}

/** Plugins other than the handler that name a profile (session affinity's profileName) check it against the profiles. */
function checkProfileReferences(
  { graph }: LoadPhase,
  profiles: ReadonlyMap<string, SchedulerProfile>,
  handler: ProfileHandler,
): void {
  for (const plugin of graph.instances.values()) {
    const check = (plugin as Partial<Pick<ProfileHandler, 'validateProfiles'>>).validateProfiles;
    const issue =
      plugin !== handler && typeof check === 'function' ? check.call(plugin, [...profiles.keys()]) : undefined;
    if (issue) fail(issue);
  }
}

/**
 * Phase 6: the data layer. Discovery from a discovery plugin, if named; one metrics source with its extractor, else
 * the default source (unless `injectDefaults: false`). Peer discovery and cross-replica sync are refused.
 */
export function buildDataLayer(phase: LoadPhase): DataLayerResult {
  const { doc, graph, warn } = phase;
  const dl = doc.dataLayer;
  const key = doc.dataKey ?? 'dataLayer';
  if (doc.featureGates.dataLayer && !dl?.sources)
    fail('featureGates: the dataLayer gate is on, which needs the data section with its sources (GAIE v1.4)');
  const discovery = configuredDiscovery(phase, key);
  for (const [field, ref] of [
    ['peerDiscovery', dl?.peerDiscovery?.pluginRef],
    ['crossReplicaSyncerPluginRef', dl?.crossReplicaSyncerPluginRef],
  ] as const) {
    if (!ref) continue;
    const p = graph.get(ref);
    fail(
      p
        ? `${key}.${field}: "${ref}" (type ${p.type}) is not a ${field === 'peerDiscovery' ? 'peer-discovery' : 'cross-replica syncer'} plugin (pd-router does not sync state across EPP replicas)`
        : `${key}.${field}: pluginRef "${ref}" is not defined in plugins`,
    );
  }
  if (dl?.crossReplicaSyncInterval !== undefined)
    warn(`${key}.crossReplicaSyncInterval has no effect without crossReplicaSyncerPluginRef`);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-boolean-literal-compare -- a gate the document does not name is undefined
  const legacyMetrics = doc.featureGates.enableLegacyMetrics === true;
  if (legacyMetrics && dl?.sources?.length)
    warn(
      `${key}.sources is not used: the enableLegacyMetrics gate scrapes with the default metrics source, as GAIE v1.5`,
    );
  const configured = legacyMetrics ? undefined : configuredMetricsSource(phase, key);
  const modelsSource = legacyMetrics ? undefined : configuredModelsSource(phase, key);
  if (configured) return { discovery, metricsSource: configured.source, modelsSource, engines: configured.engines };
  const inject = legacyMetrics || dl?.injectDefaults !== false;
  return {
    discovery,
    metricsSource: inject ? (graph.hidden(LOADER_DEFAULTS.metricsSource) as MetricsDataSource).source : undefined,
    modelsSource,
    engines: DEFAULT_ENGINES,
  };
}

/** Loads a config from YAML text; an empty text loads llm-d's default single-profile config. */
export function loadEndpointPickerConfig(yamlText: string, deps: LoadDependencies = {}): LoadedEndpointPickerConfig {
  const doc = parseDocument(yamlText.trim() === '' ? DEFAULT_CONFIG_YAML : yamlText);
  const metrics = deps.metrics ?? new EppMetrics();
  const logger = deps.logger ?? silentLogger();
  const registry = deps.registry ?? PLUGIN_REGISTRY;
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    logger.warn(message);
  };

  const graph = buildPlugins(doc, { registry, logger, metrics, random: deps.random ?? Math.random, warn });
  const phase: LoadPhase = { doc, graph, registry, warn };
  const timer = new PluginTimer((point, plugin) => metrics.pluginDuration(point, plugin.type, plugin.name));
  const profiles = buildProfiles(phase, timer);
  const handler = chooseProfileHandler(phase, profiles);
  checkProfileReferences(phase, profiles, handler);
  const parsers = buildParsers(phase);
  const data = buildDataLayer(phase);
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
    preparers: all.filter(isRequestPreparer),
    lifecycle: all.filter(isLifecyclePlugin),
    // PreRequest plugins run in config order; the handler is among them when it writes headers.
    admitters: all.filter(isAdmitter),
    preRequest: all.filter(isPreRequest),
    responseComplete: all.filter(isResponseComplete),
    responseHeaders: all.filter(isResponseHeaders),
    endpointRemoved: all.filter(isEndpointRemoved),
    parsers,
    discovery: data.discovery,
    metricsSource: data.metricsSource,
    modelsSource: data.modelsSource,
    metricsEngines: data.engines,
    flowControl,
    metrics,
    timer,
    warnings,
  };
}
