/**
 * `topology-extractor` (llm-d-router): each endpoint's place in the cluster (host, rack, zone, region), read from its
 * pod labels, for `topology-affinity-filter` and `topology-affinity-scorer`.
 *
 * Parameters (label names; an empty string means the default): `hostname` (`kubernetes.io/hostname`), `rack`
 * (`topology.kubernetes.io/rack`), `zone` (`topology.kubernetes.io/zone`), `region` (`topology.kubernetes.io/region`).
 * When the hostname label is absent, the pod's `spec.hostname` is the host (Kubernetes discovery; an endpoints file
 * has no pod spec). An endpoint with none of the four has no topology.
 *
 * Consumers name the extractor with `topologyProducerName`; unset, they read the instance named `topology-extractor`
 * (upstream's default producer), and fail open when there is none (a load warning says so).
 */
import { z } from 'zod';
import { ConfigError } from '../../../common/index.js';
import type { Endpoint, Plugin, SchedulingContext } from '../../framework/types.js';
import { definePlugin, type PluginFactoryContext } from '../definition.js';

export const TOPOLOGY_EXTRACTOR_TYPE = 'topology-extractor';

export interface Topology {
  readonly hostname: string;
  readonly rack: string;
  readonly zone: string;
  readonly region: string;
}

/** Tightest first: a candidate that shares the peer's host also shares its rack, zone and region. */
export const TOPOLOGY_LEVELS = ['host', 'rack', 'zone', 'region'] as const;
export type TopologyLevel = (typeof TOPOLOGY_LEVELS)[number] | 'none';

export interface TopologyExtractor extends Plugin {
  topologyOf(e: Endpoint): Topology | undefined;
}

const same = (left: string, right: string) => left !== '' && left === right;

/** The tightest level two endpoints share; a missing value never matches, not even another missing one. */
export function compareTopology(peer: Topology | undefined, candidate: Topology | undefined): TopologyLevel {
  if (!peer || !candidate) return 'none';
  if (same(peer.hostname, candidate.hostname)) return 'host';
  if (same(peer.rack, candidate.rack)) return 'rack';
  if (same(peer.zone, candidate.zone)) return 'zone';
  if (same(peer.region, candidate.region)) return 'region';
  return 'none';
}

/** The peer's topology (the endpoint the other P/D stage picked), or undefined when it is unknown or empty. */
export function peerTopology(cycle: SchedulingContext, extractor: TopologyExtractor | undefined): Topology | undefined {
  return cycle.peerEndpoint && extractor ? extractor.topologyOf(cycle.peerEndpoint) : undefined;
}

/** The extractor a consumer reads: the named one (which must be a topology-extractor), else `topology-extractor`. */
export function resolveTopologyExtractor(
  ctx: PluginFactoryContext,
  named: string | undefined,
): TopologyExtractor | undefined {
  const name = named || TOPOLOGY_EXTRACTOR_TYPE;
  const type = ctx.typeOf(name);
  if (type === undefined) {
    if (named)
      throw new ConfigError(
        `plugin "${ctx.name}" (type ${ctx.type}): parameter "topologyProducerName": no plugin named "${named}" is configured`,
      );
    ctx.warn(
      `no ${TOPOLOGY_EXTRACTOR_TYPE} named "${TOPOLOGY_EXTRACTOR_TYPE}" is configured: endpoints have no topology and the plugin ${ctx.type.endsWith('filter') ? 'keeps every candidate' : 'scores every candidate 0'}`,
    );
    return undefined;
  }
  if (type !== TOPOLOGY_EXTRACTOR_TYPE)
    throw new ConfigError(
      `plugin "${ctx.name}" (type ${ctx.type}): parameter "topologyProducerName": "${name}" is a ${type}, not a ${TOPOLOGY_EXTRACTOR_TYPE}`,
    );
  return ctx.plugin(name) as TopologyExtractor;
}

const label = (fallback: string) =>
  z
    .string()
    .default('')
    .transform((labelName) => labelName || fallback);

/** What topology-extractor produces (its consumers read it as optional: they fail open without it). */
export const TOPOLOGY_DATA = 'endpoint-topology';

export const topologyExtractor = definePlugin({
  kind: 'data-producer',
  produces: [TOPOLOGY_DATA],
  description: 'Endpoint topology (host, rack, zone, region) from pod labels.',
  params: z
    .object({
      hostname: label('kubernetes.io/hostname'),
      rack: label('topology.kubernetes.io/rack'),
      zone: label('topology.kubernetes.io/zone'),
      region: label('topology.kubernetes.io/region'),
    })
    .strict(),
  create: (ctx, params): TopologyExtractor => {
    // Endpoints are immutable: a label change replaces the object, so a cached answer never goes stale.
    const cache = new WeakMap<Endpoint, Topology | null>();
    return {
      type: ctx.type,
      name: ctx.name,
      topologyOf(endpoint) {
        let t = cache.get(endpoint);
        if (t === undefined) {
          const l = endpoint.labels;
          const found = {
            hostname: l[params.hostname] || endpoint.hostname || '',
            rack: l[params.rack] ?? '',
            zone: l[params.zone] ?? '',
            region: l[params.region] ?? '',
          };
          t = found.hostname || found.rack || found.zone || found.region ? found : null;
          cache.set(endpoint, t);
        }
        return t ?? undefined;
      },
    };
  },
});
