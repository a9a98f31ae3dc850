/**
 * The `plugins:` list turned into instances: names default to types, types are checked against the registry up
 * front (every unsupported upstream type is named, with the reason, before any plugin is built), GAIE-style producer
 * parameters on prefix-cache-scorer move to the approx-prefix-cache-producer the loader adds, and plugins are built
 * on demand so forward references work. Parameters are strict: an unknown key is an error naming plugin and key.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../../common/index.js';
import type { EppMetrics } from '../metrics.js';
import type { Plugin } from '../framework/types.js';
import type { PluginDefinition, PluginFactoryContext } from '../plugins/definition.js';
import { approxPrefixCacheParams, PRODUCER_PARAMETER_KEYS } from '../plugins/producer/approx-prefix-cache-producer.js';
import { PREFIX_SCORER_TYPE } from '../plugins/scorer/producer-ref.js';
import { UNSUPPORTED_UPSTREAM_TYPES } from '../plugins/registry.js';
import { APPROX_PREFIX_PRODUCER_TYPE, PREFIX_PRODUCER_TYPES } from '../prefix/match-state.js';
import { describeIssues, knownKeys } from './param-errors.js';
import type { PluginSpec } from './schema.js';

export type NamedSpec = PluginSpec & { name: string };

/** Plugins whose presence makes the loader add an approx-prefix-cache-producer when none is configured. */
const PREFIX_CONSUMERS = new Set(['disagg-profile-handler', 'pd-profile-handler', PREFIX_SCORER_TYPE, 'no-hit-lru-scorer']);

export function fail(message: string): never {
  throw new ConfigError(`EndpointPickerConfig: ${message}`);
}

const where = (s: NamedSpec) => `plugin "${s.name}" (type ${s.type})`;

function paramsOf(s: NamedSpec): Record<string, unknown> {
  const p = s.parameters ?? {};
  if (typeof p !== 'object' || p === null || Array.isArray(p)) fail(`${where(s)}: parameters must be a mapping`);
  return p as Record<string, unknown>;
}

/** Names every configured type pd-router lacks at once, so one run lists everything a config needs. */
function checkTypes(specs: Iterable<NamedSpec>, registry: Readonly<Record<string, PluginDefinition>>): void {
  const problems: string[] = [];
  for (const s of specs) {
    if (registry[s.type]) continue;
    const why = UNSUPPORTED_UPSTREAM_TYPES[s.type];
    problems.push(why ? `${where(s)}: type ${s.type} is not supported by pd-router (${why})` : `${where(s)}: unknown plugin type "${s.type}"`);
  }
  if (problems.length > 0) fail(problems.join('; '));
}

/**
 * GAIE v1.4/v1.5 prefix-cache-scorer parameters that configure the prefix index. GAIE v1.5's loader passes a
 * scorer's parameters to the approx-prefix-cache-producer it creates; pd-router does the same, and fails where GAIE
 * would drop them silently.
 */
function producerParamsFromScorers(specs: Map<string, NamedSpec>): Record<string, unknown> | undefined {
  const carriers = [...specs.values()]
    .filter((s) => s.type === PREFIX_SCORER_TYPE)
    .map((s) => ({ s, params: paramsOf(s) }))
    .map(({ s, params }) => ({ s, params, moved: Object.fromEntries(PRODUCER_PARAMETER_KEYS.filter((k) => k in params).map((k) => [k, params[k]])) }))
    .filter((c) => Object.keys(c.moved).length > 0);
  if (carriers.length === 0) return undefined;
  const keys = (c: (typeof carriers)[number]) => Object.keys(c.moved).map((k) => `"${k}"`).join(', ');
  const configured = [...specs.values()].find((s) => s.type === APPROX_PREFIX_PRODUCER_TYPE);
  for (const c of carriers) {
    if (configured) fail(`${where(c.s)}: parameter ${keys(c)} configures the prefix index; with an approx-prefix-cache-producer configured ("${configured.name}"), set it there`);
    if (c.params.prefixMatchInfoProducerName !== undefined) fail(`${where(c.s)}: parameter ${keys(c)} configures the producer pd-router creates; with prefixMatchInfoProducerName set, set it on that producer`);
    const r = approxPrefixCacheParams.safeParse(c.moved);
    if (!r.success) fail(`${where(c.s)}: ${describeIssues(r.error.issues)}`);
  }
  const canonical = (o: Record<string, unknown>) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
  const first = carriers[0]!;
  const other = carriers.find((c) => canonical(c.moved) !== canonical(first.moved));
  if (other) {
    fail(`${where(first.s)} and ${where(other.s)} set different prefix-index parameters; pd-router creates one approx-prefix-cache-producer: configure producers and point each scorer at one with prefixMatchInfoProducerName`);
  }
  return first.moved;
}

/** The configured specs by name, plus the producer the loader adds for prefix consumers. */
export function namedSpecs(plugins: readonly PluginSpec[], registry: Readonly<Record<string, PluginDefinition>>): Map<string, NamedSpec> {
  const specs = new Map<string, NamedSpec>();
  for (const [i, s] of plugins.entries()) {
    const name = s.name ?? s.type;
    if (specs.has(name)) fail(`plugins[${i}]: duplicate plugin name "${name}"`);
    specs.set(name, { ...s, name });
  }
  checkTypes(specs.values(), registry);
  const moved = producerParamsFromScorers(specs);
  const needsProducer = [...specs.values()].some((s) => PREFIX_CONSUMERS.has(s.type));
  if (needsProducer && ![...specs.values()].some((s) => PREFIX_PRODUCER_TYPES.has(s.type))) {
    if (specs.has(APPROX_PREFIX_PRODUCER_TYPE)) fail(`plugin "${APPROX_PREFIX_PRODUCER_TYPE}" must be of type ${APPROX_PREFIX_PRODUCER_TYPE}: the loader adds one under that name`);
    specs.set(APPROX_PREFIX_PRODUCER_TYPE, { name: APPROX_PREFIX_PRODUCER_TYPE, type: APPROX_PREFIX_PRODUCER_TYPE, parameters: moved });
  }
  return specs;
}

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
    const configured = [...this.specs.keys()].map((n) => this.instances.get(n)).filter((p): p is Plugin => p !== undefined);
    return [...configured, ...[...this.instances.entries()].filter(([n]) => !this.specs.has(n)).map(([, p]) => p)];
  }

  get(name: string): Plugin | undefined {
    return this.instances.get(name);
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
      namesOfType: (t) => [...this.specs.values()].filter((s) => s.type === t).map((s) => s.name),
      typeOf: (name) => this.specs.get(name)?.type,
      warn: (message) => this.deps.warn(`${w}: ${message}`),
    };
    let plugin: Plugin;
    try {
      plugin = def.create(ctx, parsed.data);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      fail(`${w}: ${(e as Error).message}`);
    }
    this.building.delete(spec.name);
    this.instances.set(spec.name, plugin);
    return plugin;
  }
}
