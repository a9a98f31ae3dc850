/**
 * Which prefix-match producer a consumer reads.
 *
 * - `prefixMatchInfoProducerName` (llm-d-router): the named producer of prefix-match data (approx-prefix-cache-producer,
 *   burst-prefix-cache-producer, precise-prefix-cache-producer, or v0.7.1's precise-prefix-cache-scorer); default the
 *   first of them in the config (the loader auto-creates an approx-prefix-cache-producer when a consumer needs one
 *   and none is configured).
 * - `prefixPluginName` / `prefixPluginType` (llm-d v0.7.1 pd-profile-handler and no-hit-lru-scorer; kept but unused
 *   in llm-d-router): the prefix plugin whose state to read. In v0.7.1 that plugin was the prefix-cache-scorer, which
 *   owned the index; here it may name a prefix-cache-scorer (its producer is read) or an approx-prefix-cache-producer.
 *   The name defaults to the type. Only values actually written in the config are checked: the name must be a
 *   configured plugin, and the type, if given, must be its type. With a single producer the result is the same as
 *   upstream's, which reads the default producer.
 */
import { ConfigError } from '../../../common/index.js';
import type { Plugin } from '../../framework/types.js';
import { APPROX_PREFIX_PRODUCER_TYPE, PREFIX_MATCH_DATA } from '../../prefix/match-state.js';
import type { PluginFactoryContext } from '../definition.js';

export const PREFIX_SCORER_TYPE = 'prefix-cache-scorer';

/** A consumer that exposes the producer it reads (prefix-cache-scorer). */
export interface PrefixConsumer extends Plugin {
  readonly prefixProducer: string;
}

function fail(ctx: PluginFactoryContext, message: string): never {
  throw new ConfigError(`plugin "${ctx.name}" (type ${ctx.type}): ${message}`);
}

export function resolvePrefixProducer(ctx: PluginFactoryContext, named: string | undefined): string {
  if (named) {
    const p = ctx.plugin(named);
    if (!ctx.namesProducing(PREFIX_MATCH_DATA).includes(named))
      fail(
        ctx,
        `prefixMatchInfoProducerName "${named}" is a ${p.type}, not a producer of prefix-match data (an ${APPROX_PREFIX_PRODUCER_TYPE}, burst-prefix-cache-producer or precise-prefix-cache-producer)`,
      );
    return named;
  }
  const first = ctx.namesProducing(PREFIX_MATCH_DATA)[0];
  if (first === undefined) fail(ctx, `needs an ${APPROX_PREFIX_PRODUCER_TYPE}`);
  return first;
}

/** The producer named by v0.7.1's prefixPluginType/prefixPluginName, or undefined when neither is written. */
export function producerOfPrefixPlugin(
  ctx: PluginFactoryContext,
  type: string | undefined,
  name: string | undefined,
): string | undefined {
  const target = name ?? type;
  if (target === undefined) return undefined;
  const actual = ctx.typeOf(target);
  if (actual === undefined) fail(ctx, `prefixPluginName "${target}" is not a configured plugin`);
  if (type !== undefined && type !== actual)
    fail(ctx, `prefixPluginType "${type}" does not match plugin "${target}", whose type is ${actual}`);
  if (ctx.namesProducing(PREFIX_MATCH_DATA).includes(target)) return target;
  if (actual === PREFIX_SCORER_TYPE) return (ctx.plugin(target) as PrefixConsumer).prefixProducer;
  fail(
    ctx,
    `prefixPluginName "${target}" is a ${actual}, not a ${PREFIX_SCORER_TYPE} or ${APPROX_PREFIX_PRODUCER_TYPE}`,
  );
}

/** Both ways of naming the producer; they must agree when both are written. */
export function prefixProducerFor(
  ctx: PluginFactoryContext,
  params: { prefixMatchInfoProducerName?: string; prefixPluginType?: string; prefixPluginName?: string },
): string {
  const legacy = producerOfPrefixPlugin(ctx, params.prefixPluginType, params.prefixPluginName);
  const current = resolvePrefixProducer(ctx, params.prefixMatchInfoProducerName);
  if (legacy !== undefined && params.prefixMatchInfoProducerName && legacy !== current) {
    fail(ctx, `prefixPluginName reads producer "${legacy}" but prefixMatchInfoProducerName names "${current}"`);
  }
  return legacy ?? current;
}
