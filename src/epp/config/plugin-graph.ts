/**
 * The `plugins:` list turned into instances: names default to types, types are checked against the registry up
 * front (every unsupported upstream type is named, with the reason, before any plugin is built), GAIE-style producer
 * parameters on prefix-cache-scorer move to the approx-prefix-cache-producer the loader adds, and plugins are built
 * on demand so forward references work. Parameters are strict: an unknown key is an error naming plugin and key.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../../common/index.js';
import type { EppMetrics } from '../metrics.js';
import {
  isDecider,
  isFilter,
  isPicker,
  isAdmitter,
  isPreRequest,
  isProfileHandler,
  isScorer,
  type Plugin,
} from '../framework/types.js';
import {
  kindsOf,
  type PluginDefinition,
  type PluginFactoryContext,
  type PluginKind,
  type ProducerParameters,
} from '../plugins/definition.js';
import { isFlowControlPlugin } from '../plugins/flow-control/flow-control-plugin.js';
import { isRequestParser } from '../plugins/parser/parser-types.js';
import { UNSUPPORTED_UPSTREAM_TYPES, producerTypeOf } from '../plugins/registry.js';
import { describeIssues, knownKeys } from './param-errors.js';
import type { PluginSpec } from './schema.js';

export type NamedSpec = PluginSpec & { name: string };
type Registry = Readonly<Record<string, PluginDefinition>>;

export function fail(message: string): never {
  throw new ConfigError(`EndpointPickerConfig: ${message}`);
}

const where = (namedSpec: NamedSpec) => `plugin "${namedSpec.name}" (type ${namedSpec.type})`;

function paramsOf(namedSpec: NamedSpec): Record<string, unknown> {
  const p = namedSpec.parameters ?? {};
  if (typeof p !== 'object' || p === null || Array.isArray(p))
    fail(`${where(namedSpec)}: parameters must be a mapping`);
  return p as Record<string, unknown>;
}

/** Names every configured type pd-router lacks at once, so one run lists everything a config needs. */
function checkTypes(specs: Iterable<NamedSpec>, registry: Registry): void {
  const problems: string[] = [];
  for (const s of specs) {
    if (registry[s.type]) continue;
    const why = UNSUPPORTED_UPSTREAM_TYPES[s.type];
    problems.push(
      why
        ? `${where(s)}: type ${s.type} is not supported by pd-router (${why})`
        : `${where(s)}: unknown plugin type "${s.type}"`,
    );
  }
  if (problems.length > 0) fail(problems.join('; '));
}

/**
 * Parameters configured plugins carry for the producer of `data` (`producerParameters`; GAIE v1.4/v1.5's
 * prefix-cache-scorer carries the prefix index's). GAIE v1.5's loader passes a scorer's parameters to the
 * approx-prefix-cache-producer it creates; pd-router does the same, and fails where GAIE would drop them silently.
 */
function carriedProducerParams(
  specs: Map<string, NamedSpec>,
  registry: Registry,
  data: string,
  producer: NamedSpec | undefined,
): Record<string, unknown> | undefined {
  const carriers = [...specs.values()].flatMap((namedSpec) => {
    const carried: ProducerParameters | undefined = registry[namedSpec.type].producerParameters;
    if (carried?.data !== data) return [];
    const params = paramsOf(namedSpec);
    const moved = Object.fromEntries(carried.keys.filter((k) => k in params).map((k) => [k, params[k]]));
    return Object.keys(moved).length > 0 ? [{ s: namedSpec, params, moved, carried }] : [];
  });
  if (carriers.length === 0) return undefined;
  const keys = (config: (typeof carriers)[number]) =>
    Object.keys(config.moved)
      .map((k) => `"${k}"`)
      .join(', ');
  for (const c of carriers) {
    const { index, producerReference } = c.carried;
    if (producer)
      fail(
        `${where(c.s)}: parameter ${keys(c)} configures the ${index} index; with an ${producer.type} configured ("${producer.name}"), set it there`,
      );
    if (c.params[producerReference] !== undefined)
      fail(
        `${where(c.s)}: parameter ${keys(c)} configures the producer pd-router creates; with ${producerReference} set, set it on that producer`,
      );
    const r = c.carried.params.safeParse(c.moved);
    if (!r.success) fail(`${where(c.s)}: ${describeIssues(r.error.issues)}`);
  }
  const canonical = (options: Record<string, unknown>) =>
    JSON.stringify(
      Object.keys(options)
        .sort()
        .map((k) => [k, options[k]]),
    );
  const first = carriers[0];
  const other = carriers.find((config) => canonical(config.moved) !== canonical(first.moved));
  if (other) {
    const type = producerTypeOf(registry, data);
    fail(
      `${where(first.s)} and ${where(other.s)} set different ${first.carried.index}-index parameters; pd-router creates one ${type}: configure producers and point each scorer at one with ${first.carried.producerReference}`,
    );
  }
  return first.moved;
}

/**
 * Adds the registry's producer of every data a configured plugin requires and no configured plugin produces (llm-d
 * adds approx-prefix-cache-producer for the prefix-cache consumers), under its type name.
 */
function addRequiredProducers(specs: Map<string, NamedSpec>, registry: Registry): void {
  const configured = [...specs.values()];
  const data = new Set(
    configured.flatMap((namedSpec) => [
      ...(registry[namedSpec.type].requires ?? []),
      ...(registry[namedSpec.type].producerParameters ? [registry[namedSpec.type].producerParameters!.data] : []),
    ]),
  );
  for (const d of data) {
    const producer = configured.find((namedSpec) => registry[namedSpec.type].produces?.includes(d));
    const moved = carriedProducerParams(specs, registry, d, producer);
    if (producer || !configured.some((namedSpec) => registry[namedSpec.type].requires?.includes(d))) continue;
    const type = producerTypeOf(registry, d);
    if (type === undefined)
      fail(
        `no plugin type produces "${d}", which ${configured
          .filter((namedSpec) => registry[namedSpec.type].requires?.includes(d))
          .map(where)
          .join(', ')} requires`,
      );
    if (specs.has(type)) fail(`plugin "${type}" must be of type ${type}: the loader adds one under that name`);
    specs.set(type, { name: type, type, parameters: moved });
  }
}

/** The configured specs by name, plus the producers the loader adds for what they require. */
export function namedSpecs(plugins: readonly PluginSpec[], registry: Registry): Map<string, NamedSpec> {
  const specs = new Map<string, NamedSpec>();
  for (const [i, s] of plugins.entries()) {
    const name = s.name ?? s.type;
    if (specs.has(name)) fail(`plugins[${i}]: duplicate plugin name "${name}"`);
    specs.set(name, { ...s, name });
  }
  checkTypes(specs.values(), registry);
  addRequiredProducers(specs, registry);
  return specs;
}

/** The interface each kind promises, where a kind has one (a data producer's output is not an interface). */
const KIND_INTERFACES: Partial<Record<PluginKind, (plugin: Plugin) => boolean>> = {
  filter: isFilter,
  scorer: isScorer,
  picker: isPicker,
  'profile-handler': isProfileHandler,
  'pre-request': isPreRequest,
  admitter: isAdmitter,
  decider: isDecider,
  parser: isRequestParser,
  'flow-control': isFlowControlPlugin,
  'endpoint-discovery': (plugin) => (plugin as { discovery?: unknown }).discovery !== undefined,
  'metrics-source': (plugin) => (plugin as { source?: unknown }).source !== undefined,
  'metrics-extractor': (plugin) => (plugin as { extractor?: unknown }).extractor !== undefined,
  'models-source': (plugin) => (plugin as { modelsSource?: unknown }).modelsSource !== undefined,
  'models-extractor': (plugin) => (plugin as { modelsExtractor?: unknown }).modelsExtractor !== undefined,
  'notification-source': (plugin) => (plugin as { notificationSource?: unknown }).notificationSource === true,
};

export interface GraphDependencies {
  registry: Readonly<Record<string, PluginDefinition>>;
  logger: Logger;
  metrics: EppMetrics;
  random: () => number;
  warn: (message: string) => void;
}

/** Builds plugins on demand (forward references, cycles detected) and keeps them by name. */
export class PluginGraph {
  readonly instances = new Map<string, Plugin>();
  private readonly kinds = new Map<string, readonly PluginKind[]>();
  private readonly building = new Set<string>();

  constructor(
    readonly specs: Map<string, NamedSpec>,
    private readonly deps: GraphDependencies,
  ) {}

  /** Every configured plugin, in config order. */
  buildAll(): void {
    for (const s of this.specs.values()) this.instantiate(s);
  }

  /** Configured plugins in config order (instantiation order differs with forward references), then added ones. */
  ordered(): Plugin[] {
    const configured = [...this.specs.keys()]
      .map((count) => this.instances.get(count))
      .filter((plugin): plugin is Plugin => plugin !== undefined);
    return [
      ...configured,
      ...[...this.instances.entries()].filter(([name]) => !this.specs.has(name)).map(([, plugin]) => plugin),
    ];
  }

  get(name: string): Plugin | undefined {
    return this.instances.get(name);
  }

  /** The kinds of a built plugin (empty for an unknown name). */
  kindsOf(name: string): readonly PluginKind[] {
    return this.kinds.get(name) ?? [];
  }

  /** Whether a built plugin declares `kind`: the check every config slot that names a plugin makes. */
  hasKind(plugin: Plugin, kind: PluginKind): boolean {
    return this.kindsOf(plugin.name).includes(kind);
  }

  /** A plugin the loader adds with default parameters (a default picker, handler, parser, policy). */
  hidden(type: string, name = `${type} (default)`): Plugin {
    return this.instantiate({ name, type });
  }

  instantiate(spec: NamedSpec): Plugin {
    const done = this.instances.get(spec.name);
    if (done) return done;
    const w = where(spec);
    if (this.building.has(spec.name)) fail(`${w}: circular plugin reference`);
    const def = this.deps.registry[spec.type];
    if (!def) fail(`${w}: unknown plugin type "${spec.type}"`);
    if (def.deprecatedFor) this.deps.warn(`${w} is deprecated upstream; use ${def.deprecatedFor}`);
    const raw = paramsOf(spec);
    const parsed = def.params.safeParse(raw);
    if (!parsed.success) fail(`${w}: ${describeIssues(parsed.error.issues)}`);
    const known = knownKeys(def.params);
    const unknown = known ? Object.keys(raw).filter((k) => !known.has(k)) : [];
    if (unknown.length > 0) fail(`${w}: unknown parameter ${unknown.map((k) => `"${k}"`).join(', ')}`);
    this.building.add(spec.name);
    const ctx: PluginFactoryContext = {
      type: spec.type,
      name: spec.name,
      logger: this.deps.logger,
      metrics: this.deps.metrics,
      random: this.deps.random,
      plugin: (name) => {
        const target = this.specs.get(name);
        if (!target) fail(`${w}: refers to plugin "${name}", which is not defined`);
        return this.instantiate(target);
      },
      namesProducing: (data) =>
        [...this.specs.values()]
          .filter((namedSpec) => this.deps.registry[namedSpec.type]?.produces?.includes(data))
          .map((namedSpec) => namedSpec.name),
      typeOf: (name) => this.specs.get(name)?.type,
      kindsOf: (name) => {
        const type = this.specs.get(name)?.type;
        const named = type === undefined ? undefined : this.deps.registry[type];
        return named ? kindsOf(named) : [];
      },
      warn: (message) => this.deps.warn(`${w}: ${message}`),
    };
    let plugin: Plugin;
    try {
      plugin = def.create(ctx, parsed.data);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      fail(`${w}: ${(e as Error).message}`);
    }
    const kinds = kindsOf(def);
    const missing = kinds.find((k) => KIND_INTERFACES[k] && !KIND_INTERFACES[k](plugin));
    if (missing) throw new Error(`plugin type ${spec.type} declares kind ${missing} but does not implement it`);
    this.building.delete(spec.name);
    this.kinds.set(spec.name, kinds);
    this.instances.set(spec.name, plugin);
    return plugin;
  }
}
