/**
 * `precise-prefix-cache-scorer` (llm-d v0.7.1): the precise prefix index and a scorer in one plugin. Parameters are
 * the producer's (kv-events/precise-config.ts); `indexerConfig.tokenizersPoolConfig` (v0.7.1's in-process or UDS
 * tokenizer) is accepted and tokenization goes to the pool's model servers instead, unless a `tokenizer` plugin
 * produced the token ids. Unlike v0.7.1, `tokenizersPoolConfig.modelName` is not required: the request's target
 * model is what the pool serves.
 *
 * Score (v0.7.1's indexedScoresToNormalizedScoredPods): the weighted LongestPrefix score s of each candidate holding
 * the first block, min-max normalised over those candidates, `(s − min) / (max − min)`, 1 when they are all equal;
 * 0 for candidates holding nothing. Without token ids or events it scores like `prefix-cache-scorer` over its
 * approximate fallback index (matched / total). It also leaves match info for other consumers (pd-profile-handler,
 * no-hit-lru-scorer), as v0.7.1 did in PrepareRequestData.
 */
import type {
  DataProducer,
  EndpointRemoved,
  LifecyclePlugin,
  PreRequest,
  Scorer,
  RequestPreparer,
} from '../../framework/types.js';
import { configHasTokenizer, PreciseCore, type PreciseScores } from '../../kv-events/precise-core.js';
import { preciseParams } from '../../kv-events/precise-config.js';
import { PREFIX_MATCH_DATA, prefixState } from '../../prefix/match-state.js';
import { definePlugin } from '../definition.js';

export type PreciseScorer = Scorer &
  DataProducer &
  PreRequest &
  EndpointRemoved &
  LifecyclePlugin &
  Partial<RequestPreparer> & { readonly core: PreciseCore };

export const precisePrefixCacheScorer = definePlugin({
  kind: 'scorer',
  // It leaves match info for the other prefix consumers too, as v0.7.1's did.
  produces: [PREFIX_MATCH_DATA],
  description: 'Precise prefix-cache scorer from vLLM KV events (llm-d v0.7.1).',
  params: preciseParams,
  create: (ctx, params): PreciseScorer => {
    const core = new PreciseCore(ctx, params, !configHasTokenizer(ctx));
    const stateKey = `precise-scores/${ctx.name}`;
    const plugin: PreciseScorer = {
      type: ctx.type,
      name: ctx.name,
      core,
      start: (runtime) => core.start(runtime),
      close: () => core.close(),
      ready: () => core.ready(),
      produce: (context, candidates) => {
        const s = core.produce(context, candidates);
        if (s) context.state.set(stateKey, s);
      },
      score(context, endpoints) {
        const out = new Float64Array(endpoints.length);
        const precise = context.state.get(stateKey) as PreciseScores | undefined;
        if (precise) {
          let min = Infinity;
          let max = -Infinity;
          for (const endpoint of endpoints) {
            const s = precise.scores.get(endpoint.id);
            if (s === undefined) continue;
            min = Math.min(min, s);
            max = Math.max(max, s);
          }
          for (let i = 0; i < endpoints.length; i++) {
            const s = precise.scores.get(endpoints[i].id);
            if (s !== undefined) out[i] = max === min ? 1 : (s - min) / (max - min);
          }
          return out;
        }
        const s = prefixState(context, ctx.name);
        if (!s || s.totalBlocks === 0) return out;
        for (let i = 0; i < endpoints.length; i++) out[i] = (s.matched.get(endpoints[i].id) ?? 0) / s.totalBlocks;
        return out;
      },
      preRequest: (context, result) => core.preRequest(context, result),
      endpointRemoved: (id) => core.endpointRemoved(id),
    };
    if (core.ownTokenizer) plugin.prepareRequest = (request, candidates) => core.prepareRequest(request, candidates);
    return plugin;
  },
});
