/**
 * How a plugin type is built: a zod schema for its `parameters` (checked when the config is loaded, so a bad value
 * fails at start, naming the plugin and the parameter) and a constructor. Parameters are strict, as llm-d-router
 * decodes them: a key the schema does not know is a load error. The type string lives only in the registry
 * (`registry.ts`); a plugin learns its type and name from the factory context.
 *
 * The metadata the loader reads:
 * - `kind`: the extension points a plugin can be used in. A reference from a config slot (a profile's filters,
 *   scorers and picker; the profile handler; a parser; the data layer's discovery, sources and extractors; a flow-
 *   control reference; a handler's decider) must name a plugin of that slot's kind, and a plugin must implement the
 *   interface of every kind it declares. Hooks any plugin may implement (PreRequest, ResponseComplete,
 *   EndpointRemoved, DataProducer.produce) are found by the interface alone, as llm-d does.
 * - `requires` / `produces`: data shared through the scheduling context. When a configured plugin requires data no
 *   configured plugin produces, the loader adds the registry's producer of it.
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { EppMetrics } from '../metrics.js';
import type { Plugin } from '../framework/types.js';

/** The extension points of the EPP, which a plugin's `kind` names. */
export type PluginKind =
  | 'filter'
  | 'scorer'
  | 'picker'
  | 'profile-handler'
  | 'pre-request'
  | 'data-producer'
  | 'admitter'
  | 'decider'
  | 'endpoint-discovery'
  | 'metrics-source'
  | 'metrics-extractor'
  | 'models-source'
  | 'models-extractor'
  | 'notification-source'
  | 'parser'
  | 'flow-control';

/** What a plugin constructor gets: its type and name, shared services, and lookups of other plugins. */
export interface PluginFactoryContext {
  readonly type: string;
  readonly name: string;
  readonly logger: Logger;
  readonly metrics: EppMetrics;
  /** Random numbers in [0, 1) for pickers; injectable for deterministic tests. */
  readonly random: () => number;
  /** Another plugin by name, instantiated on demand (forward references work); throws a ConfigError when missing. */
  plugin(name: string): Plugin;
  /** The type of a configured plugin, without instantiating it; undefined when there is none of that name. */
  typeOf(name: string): string | undefined;
  /** Names of the configured plugins that produce `data`, in config order (including auto-created ones). */
  namesProducing(data: string): string[];
  /** The kinds of a configured plugin; empty when there is none of that name. */
  kindsOf(name: string): readonly PluginKind[];
  /** A load-time warning about this plugin (a deprecated or inert parameter), logged and kept in `warnings`. */
  warn(message: string): void;
}

/**
 * Parameters a plugin accepts on behalf of the producer of data it requires (GAIE's prefix-cache-scorer carries the
 * prefix index's): the loader validates them with `params` and moves them to the producer it adds.
 */
export interface ProducerParameters {
  readonly data: string;
  /** The producer's index these parameters configure, for messages: "prefix" reads "the prefix index". */
  readonly index: string;
  readonly keys: readonly string[];
  readonly params: z.ZodType;
  /** The plugin's own parameter naming the producer it reads; set, the producer is configured and takes them. */
  readonly producerReference: string;
}

/** How a plugin type is built: its kind, data needs, parameter schema and constructor. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one table holds definitions of every parameter type; `any` is the slot each of their types fits
export interface PluginDefinition<P = any> {
  /** The extension points the plugin can be used in: one, or several (a saturation detector that also filters). */
  readonly kind: PluginKind | readonly PluginKind[];
  /** Data the plugin reads from the scheduling context (e.g. PREFIX_MATCH_DATA). */
  readonly requires?: readonly string[];
  /** Data the plugin writes into the scheduling context for others. */
  readonly produces?: readonly string[];
  readonly producerParameters?: ProducerParameters;
  readonly params: z.ZodType<P>;
  /** Accepted only for compatibility; using it logs a deprecation warning naming the replacement. */
  readonly deprecatedFor?: string;
  readonly description: string;
  create(ctx: PluginFactoryContext, params: P): Plugin;
}

/** Helper that keeps the parameter type inferred from the schema. */
export function definePlugin<S extends z.ZodType>(
  def: Omit<PluginDefinition<z.infer<S>>, 'params'> & { params: S },
): PluginDefinition<z.infer<S>> {
  return def as PluginDefinition<z.infer<S>>;
}

/** The kinds a definition declares, as a list. */
export function kindsOf(def: Pick<PluginDefinition, 'kind'>): readonly PluginKind[] {
  return typeof def.kind === 'string' ? [def.kind] : def.kind;
}
