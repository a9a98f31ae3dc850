/**
 * `topology-affinity-scorer` (llm-d-router): in the second P/D stage (the `prefill` profile after the decode pick),
 * scores each candidate by the tightest topology level it shares with the peer endpoint, on upstream's fixed curve
 * shaped by KV-transfer bandwidth: host 1.0 (NVLink), rack 0.2, zone 0.05, region 0.02, none 0. Every candidate scores
 * 0 without peer topology; a candidate without topology scores 0.
 *
 * Parameters: `topologyProducerName` (the topology-extractor to read; default the one named `topology-extractor`).
 */
import { z } from 'zod';
import type { Scorer } from '../../framework/types.js';
import {
  compareTopology,
  peerTopology,
  resolveTopologyExtractor,
  type TopologyLevel,
} from '../datalayer/topology-extractor.js';
import { definePlugin } from '../definition.js';

export const TOPOLOGY_LEVEL_SCORES: Readonly<Record<TopologyLevel, number>> = {
  host: 1,
  rack: 0.2,
  zone: 0.05,
  region: 0.02,
  none: 0,
};

export const topologyAffinityScorer = definePlugin({
  kind: 'scorer',
  description: 'Proximity to the other stage’s pick: host 1, rack 0.2, zone 0.05, region 0.02.',
  params: z.object({ topologyProducerName: z.string().default('') }).strict(),
  create: (ctx, params): Scorer => {
    const extractor = resolveTopologyExtractor(ctx, params.topologyProducerName);
    return {
      type: ctx.type,
      name: ctx.name,
      score(cycle, endpoints) {
        const out = new Float64Array(endpoints.length);
        const peer = peerTopology(cycle, extractor);
        if (!peer) return out;
        for (let i = 0; i < endpoints.length; i++)
          out[i] = TOPOLOGY_LEVEL_SCORES[compareTopology(peer, extractor!.topologyOf(endpoints[i]))];
        return out;
      },
    };
  },
});
