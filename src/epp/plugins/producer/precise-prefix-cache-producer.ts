/**
 * `precise-prefix-cache-producer` (llm-d-router): per-candidate prefix match info from the KV blocks the model
 * servers report holding (vLLM KV events over ZMQ), for `prefix-cache-scorer` with `prefixMatchInfoProducerName`
 * (and the other prefix consumers). Tokens come from a `token-producer` in the config, or, without one, from the
 * pool's model servers. Parameters (`tokenProcessorConfig`, `indexerConfig`, `kvEventsConfig`, `speculativeIndexing`,
 * `speculativeTTL`) and behaviour: kv-events/precise-config.ts and kv-events/precise-core.ts. As upstream,
 * `indexerConfig.tokenizersPoolConfig` is an error here (configure a token-producer).
 */
import type {
  DataProducer,
  EndpointRemoved,
  LifecyclePlugin,
  PreRequest,
  RequestPreparer,
} from '../../framework/types.js';
import { configHasTokenizer, PreciseCore } from '../../kv-events/precise-core.js';
import { preciseParams } from '../../kv-events/precise-config.js';
import { PREFIX_MATCH_DATA } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';

export type PreciseProducer = DataProducer &
  PreRequest &
  EndpointRemoved &
  LifecyclePlugin &
  Partial<RequestPreparer> & { readonly core: PreciseCore };

export const precisePrefixCacheProducer = definePlugin({
  kind: 'data-producer',
  produces: [PREFIX_MATCH_DATA],
  description: 'Precise per-endpoint prefix-cache match from vLLM KV events.',
  params: preciseParams.refine((params) => params.indexerConfig?.tokenizersPoolConfig === undefined, {
    error: 'tokenizersPoolConfig is not supported; configure a token-producer plugin instead',
    path: ['indexerConfig', 'tokenizersPoolConfig'],
  }),
  create: (ctx, params): PreciseProducer => {
    const core = new PreciseCore(ctx, params, !configHasTokenizer(ctx));
    const plugin: PreciseProducer = {
      type: ctx.type,
      name: ctx.name,
      core,
      start: (runtime) => core.start(runtime),
      close: () => core.close(),
      ready: () => core.ready(),
      produce: (context, candidates) => void core.produce(context, candidates),
      preRequest: (context, result) => core.preRequest(context, result),
      endpointRemoved: (id) => core.endpointRemoved(id),
    };
    if (core.ownTokenizer) plugin.prepareRequest = (request, candidates) => core.prepareRequest(request, candidates);
    return plugin;
  },
});
