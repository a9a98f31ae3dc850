/**
 * `topology-affinity-filter` (llm-d-router): in the second P/D stage (the `prefill` profile after the decode pick),
 * keeps the candidates co-located with the peer endpoint at `minAffinity` or tighter (same host implies same rack,
 * zone and region), so the KV-cache transfer prefers NVLink over the network.
 *
 * It never makes a request unroutable: with no peer topology (no peer, or a peer without any topology value) or when
 * no candidate qualifies, every candidate is kept. A candidate without topology never qualifies; a missing value
 * never matches, not even another missing one.
 *
 * Parameters: `minAffinity` (host | rack | zone | region, default host; empty means host), `topologyProducerName`
 * (the topology-extractor to read; default the one named `topology-extractor`).
 */
import { z } from 'zod';
import type { Filter } from '../../framework/types.js';
import {
  TOPOLOGY_LEVELS,
  compareTopology,
  peerTopology,
  resolveTopologyExtractor,
} from '../datalayer/topology-extractor.js';
import { definePlugin } from '../definition.js';

export const topologyAffinityFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps candidates co-located with the other stage’s pick (fails open).',
  params: z
    .object({
      minAffinity: z
        .enum(['', ...TOPOLOGY_LEVELS], { error: 'must be one of host, rack, zone, region' })
        .default('host')
        .transform((level) => level || 'host'),
      topologyProducerName: z.string().default(''),
    })
    .strict(),
  create: (ctx, params): Filter => {
    const extractor = resolveTopologyExtractor(ctx, params.topologyProducerName);
    const floor = TOPOLOGY_LEVELS.indexOf(params.minAffinity);
    return {
      type: ctx.type,
      name: ctx.name,
      filter(cycle, endpoints) {
        const peer = peerTopology(cycle, extractor);
        if (!peer) return [...endpoints];
        const kept = endpoints.filter((endpoint) => {
          const level = compareTopology(peer, extractor!.topologyOf(endpoint));
          return level !== 'none' && TOPOLOGY_LEVELS.indexOf(level) <= floor;
        });
        return kept.length > 0 ? kept : [...endpoints];
      },
    };
  },
});
