/**
 * How a plugin type is built: a zod schema for its `parameters` (checked when the config is loaded, so a bad value
 * fails at start, naming the plugin and the parameter) and a constructor. Parameters are strict, as llm-d-router
 * decodes them: a key the schema does not know is a load error. The type string lives only in the registry
 * (`registry.ts`); a plugin learns its type and name from the factory context.
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { EppMetrics } from '../metrics.js';
import type { Plugin } from '../framework/types.js';

export type PluginKind = 'filter' | 'scorer' | 'picker' | 'profile-handler' | 'pre-request' | 'data-producer' | 'decider' | 'datalayer' | 'parser' | 'flow-control';

export interface PluginFactoryContext {
  readonly type: string;
  readonly name: string;
  readonly logger: Logger;
  readonly metrics: EppMetrics;
  /** Random numbers in [0, 1) for pickers; injectable for deterministic tests. */
  readonly random: () => number;
  /** Another plugin by name, instantiated on demand (forward references work); throws a ConfigError when missing. */
  plugin(name: string): Plugin;
  /** Names of the configured plugins of a type, in config order (including auto-created ones). */
  namesOfType(type: string): string[];
  /** The type of a configured plugin, without instantiating it; undefined when there is none of that name. */
  typeOf(name: string): string | undefined;
  /** A load-time warning about this plugin (a deprecated or inert parameter), logged and kept in `warnings`. */
  warn(message: string): void;
}

export interface PluginDefinition<P = any> {
  readonly kind: PluginKind;
  readonly params: z.ZodType<P>;
  /** Accepted only for compatibility; using it logs a deprecation warning naming the replacement. */
  readonly deprecatedFor?: string;
  readonly description: string;
  create(ctx: PluginFactoryContext, params: P): Plugin;
}

/** Helper that keeps the parameter type inferred from the schema. */
export function definePlugin<S extends z.ZodType>(def: Omit<PluginDefinition<z.infer<S>>, 'params'> & { params: S }): PluginDefinition<z.infer<S>> {
  return def as PluginDefinition<z.infer<S>>;
}
