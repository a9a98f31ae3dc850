/** Builds one plugin through its registry definition (the loader's validation), with other plugins it may refer to. */
import { silentLogger } from '../../src/common/index.js';
import {
  EppMetrics,
  PLUGIN_REGISTRY,
  SchedulingContext,
  endpointFromSpec,
  type Endpoint,
  type InferenceRequest,
  type Plugin,
} from '../../src/epp/index.js';
import { kindsOf, type PluginDefinition, type PluginFactoryContext } from '../../src/epp/plugins/definition.js';
import { seeded, spec } from './fixtures.js';

const registry: ReadonlyMap<string, PluginDefinition> = new Map(Object.entries(PLUGIN_REGISTRY));
const definitionOf = (plugin: Plugin) => registry.get(plugin.type);

/** The plugin as the interface the test exercises (T: Filter, Scorer, ...). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- callers name the interface they test
export function build<T>(
  type: string,
  params: Record<string, unknown>,
  others: Record<string, Plugin> = {},
  warnings: string[] = [],
  name = type,
): T {
  const def = registry.get(type);
  if (!def) throw new Error(`no plugin type ${type}`);
  const byName = new Map(Object.entries(others));
  const ctx: PluginFactoryContext = {
    type,
    name,
    logger: silentLogger(),
    metrics: new EppMetrics(),
    random: seeded(),
    plugin: (pluginName) => {
      const plugin = byName.get(pluginName);
      if (!plugin) throw new Error(`no plugin ${pluginName}`);
      return plugin;
    },
    namesProducing: (data) =>
      [...byName]
        .filter(([, plugin]) => definitionOf(plugin)?.produces?.includes(data))
        .map(([pluginName]) => pluginName),
    kindsOf: (pluginName) => {
      const plugin = byName.get(pluginName);
      const definition = plugin && definitionOf(plugin);
      return definition ? kindsOf(definition) : [];
    },
    typeOf: (pluginName) => byName.get(pluginName)?.type,
    warn: (message) => warnings.push(message),
  };
  return def.create(ctx, def.params.parse(params)) as T;
}

let n = 0;
/** A fresh endpoint (unique name and address) with the given labels, metrics and pod hostname. */
export function endpoint(
  labels: Record<string, string> = {},
  metrics: Partial<Endpoint['metrics']> = {},
  hostname?: string,
): Endpoint {
  n++;
  const e = endpointFromSpec({
    ...spec(`e${n}`, `10.0.${n >> 8}.${n & 255}`),
    labels,
    ...(hostname ? { hostname } : {}),
  });
  Object.assign(e.metrics, { updatedAt: Date.now(), stale: false }, metrics);
  return e;
}

export const REQUEST: InferenceRequest = {
  requestId: 'r',
  model: 'm',
  targetModel: 'm',
  tokenCount: 0,
  prompts: [],
  headers: {},
  path: '/v1/completions',
  api: 'completions',
  parser: 'openai-parser',
  stream: false,
  cacheSalt: '',
  objective: '',
  priority: 0,
};

export function context(over: Partial<InferenceRequest> = {}, now?: () => number): SchedulingContext {
  return new SchedulingContext({ ...REQUEST, headers: {}, ...over }, silentLogger(), now);
}
