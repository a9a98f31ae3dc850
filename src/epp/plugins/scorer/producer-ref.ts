/**
 * Resolves which prefix-match producer a consumer reads (`prefixMatchInfoProducerName`): the named one, else the
 * first `approx-prefix-cache-producer` in the config (the loader auto-creates one when a consumer needs it).
 */
import { ConfigError } from '../../../common/index.js';
import { APPROX_PREFIX_PRODUCER_TYPE } from '../../prefix/match-state.js';
import type { PluginFactoryContext } from '../definition.js';

export function resolvePrefixProducer(ctx: PluginFactoryContext, named: string | undefined): string {
  if (named) {
    const p = ctx.plugin(named);
    if (p.type !== APPROX_PREFIX_PRODUCER_TYPE) {
      throw new ConfigError(`plugin "${ctx.name}" (type ${ctx.type}): prefixMatchInfoProducerName "${named}" is a ${p.type}, not an ${APPROX_PREFIX_PRODUCER_TYPE}`);
    }
    return named;
  }
  const first = ctx.namesOfType(APPROX_PREFIX_PRODUCER_TYPE)[0];
  if (first === undefined) throw new ConfigError(`plugin "${ctx.name}" (type ${ctx.type}) needs an ${APPROX_PREFIX_PRODUCER_TYPE}`);
  return first;
}
