/**
 * `mm-embeddings-cache-scorer` (llm-d-router): prefers endpoints that likely still hold the encoder embeddings of the
 * request's multimodal items, per `mm-embeddings-cache-producer`.
 *
 * score = matched item size / total item size of the request (each unique item has size 1: the fraction of the
 * request's media the endpoint served recently), in [0, 1]; 0 when the producer left no match info (a request without
 * media) or the request's total is 0.
 *
 * Parameters: `producerName` (default: the first mm-embeddings-cache-producer; the loader adds one when none is
 * configured).
 */
import { z } from 'zod';
import { ConfigError } from '../../../common/index.js';
import type { Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { MM_EMBEDDINGS_MATCH_DATA, mmMatchState } from '../producer/mm-embeddings-cache-producer.js';

const weight = (items: readonly { size: number }[]) => items.reduce((sum, item) => sum + item.size, 0);

export const mmEmbeddingsCacheScorer = definePlugin({
  kind: 'scorer',
  requires: [MM_EMBEDDINGS_MATCH_DATA],
  description: "Fraction of the request's multimodal items the endpoint served recently (encoder-cache affinity).",
  params: z.object({ producerName: z.string().optional() }).strict(),
  create: (ctx, params): Scorer => {
    const producers = ctx.namesProducing(MM_EMBEDDINGS_MATCH_DATA);
    const producer = params.producerName ?? producers[0];
    if (producer === undefined || !producers.includes(producer))
      throw new ConfigError(
        `plugin "${ctx.name}" (type ${ctx.type}): ${params.producerName ? `producerName "${params.producerName}" is not an mm-embeddings-cache-producer` : 'needs an mm-embeddings-cache-producer'}`,
      );
    return {
      type: ctx.type,
      name: ctx.name,
      score(context, endpoints) {
        const out = new Float64Array(endpoints.length);
        const s = mmMatchState(context, producer);
        const total = s ? weight(s.items) : 0;
        if (!s || total <= 0) return out;
        for (let i = 0; i < endpoints.length; i++) out[i] = weight(s.matched.get(endpoints[i].id) ?? []) / total;
        return out;
      },
    };
  },
});
