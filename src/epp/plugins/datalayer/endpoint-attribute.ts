/**
 * Numeric endpoint attributes for `endpoint-attribute-filter` and `endpoint-attribute-scorer`. An attribute is named
 * by its key and its producer, as upstream: unset, the producer is `core-metrics-extractor`, whose engineConfigs
 * `customMetrics` publish scalars by `attributeKey` (refreshed on every scrape). That is the only producer of such
 * attributes in pd-router; another (`dcgm-extractor`, or "" for a producer-agnostic attribute) is accepted, with a
 * load warning, and every endpoint lacks the attribute.
 */
import { ConfigError } from '../../../common/index.js';
import type { Endpoint } from '../../framework/types.js';
import type { PluginFactoryContext } from '../definition.js';
import {
  CORE_METRICS_EXTRACTOR_TYPE,
  ENDPOINT_ATTRIBUTE_DATA,
  type MetricsExtractor,
} from './core-metrics-extractor.js';

export type AttributeReader = (e: Endpoint) => number | undefined;

/** How a consumer reads `attribute` from `producer`; `key` is the parameter name, for messages. */
export function attributeReader(
  ctx: PluginFactoryContext,
  key: string,
  attribute: string,
  producer: string | undefined,
): AttributeReader {
  if (producer === undefined) {
    const slash = attribute.lastIndexOf('/');
    if (slash >= 0) {
      // Upstream's check: "Attribute/Producer" is not a key; the two are separate parameters.
      throw new ConfigError(
        `plugin "${ctx.name}" (type ${ctx.type}): parameter "${key}": "${attribute}" contains "/" but no producer is set; if this is the combined "Attribute/Producer" spelling, write ${key}: "${attribute.slice(0, slash)}" and producer: "${attribute.slice(slash + 1)}"; if the name itself contains "/", set producer explicitly`,
      );
    }
    producer = CORE_METRICS_EXTRACTOR_TYPE;
  }
  if (producer !== CORE_METRICS_EXTRACTOR_TYPE) {
    ctx.warn(
      `parameter "producer": pd-router has no producer "${producer}" of endpoint attributes (only ${CORE_METRICS_EXTRACTOR_TYPE} customMetrics): every endpoint lacks "${attribute}"`,
    );
    return () => undefined;
  }
  const declared = ctx
    .namesProducing(ENDPOINT_ATTRIBUTE_DATA)
    .some((name) =>
      Object.values((ctx.plugin(name) as MetricsExtractor).engines.engines).some((engine) =>
        engine.custom?.some((metric) => metric.attributeKey === attribute),
      ),
    );
  if (!declared)
    ctx.warn(
      `no ${CORE_METRICS_EXTRACTOR_TYPE} engineConfigs declare customMetrics attributeKey "${attribute}": every endpoint lacks it`,
    );
  return (endpoint) => endpoint.metrics.custom?.[attribute];
}
