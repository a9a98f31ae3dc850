/**
 * The EPP's view of the pool: endpoints from the active discovery source, each with the metrics the scraper keeps up
 * to date in place. A discovery source replaces the whole list; the store diffs it, keeps the metrics of endpoints that
 * stay, and tells listeners which endpoints came and went.
 */
import { EventEmitter } from 'node:events';
import { hostPort } from '../../common/index.js';
import type { EndpointMetrics } from '../../decider/index.js';
import type { Endpoint } from '../framework/types.js';

export interface EndpointSpec {
  name: string;
  namespace: string;
  address: string;
  port: number;
  labels: Record<string, string>;
  /** The pod's spec.hostname (Kubernetes discovery only). */
  hostname?: string;
}

export function emptyMetrics(): EndpointMetrics {
  return { waitingQueueSize: 0, runningRequests: 0, kvCacheUsage: 0, cacheBlockSize: 0, cacheNumBlocks: 0, updatedAt: 0, stale: true };
}

export function endpointFromSpec(spec: EndpointSpec, metrics: EndpointMetrics = emptyMetrics()): Endpoint {
  return {
    id: `${spec.namespace}/${spec.name}`,
    name: spec.name,
    namespace: spec.namespace,
    address: spec.address,
    port: spec.port,
    hostPort: hostPort(spec.address, spec.port),
    metricsHost: hostPort(spec.address, spec.port),
    labels: Object.freeze({ ...spec.labels }),
    ...(spec.hostname ? { hostname: spec.hostname } : {}),
    metrics,
  };
}

function sameLabels(left: Readonly<Record<string, string>>, right: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(left);
  return ka.length === Object.keys(right).length && ka.every((k) => left[k] === right[k]);
}

export interface EndpointStoreEvents {
  added: [Endpoint];
  removed: [Endpoint];
  changed: [readonly Endpoint[]];
}

export class EndpointStore extends EventEmitter<EndpointStoreEvents> {
  private byId = new Map<string, Endpoint>();
  private list: readonly Endpoint[] = [];
  /** Whether discovery has produced its first complete list (readiness). */
  synced = false;

  all(): readonly Endpoint[] {
    return this.list;
  }

  get(id: string): Endpoint | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.list.length;
  }

  /** Replaces the endpoint set. Duplicate ids: the last spec wins. */
  replaceAll(specs: readonly EndpointSpec[]): void {
    const next = new Map<string, Endpoint>();
    const added: Endpoint[] = [];
    for (const spec of specs) {
      const id = `${spec.namespace}/${spec.name}`;
      const old = this.byId.get(id);
      if (old && old.address === spec.address && old.port === spec.port) {
        // Same endpoint: keep its metrics; a label (or hostname) change yields a new object (endpoints are immutable to plugins).
        next.set(id, sameLabels(old.labels, spec.labels) && old.hostname === spec.hostname ? old : endpointFromSpec(spec, old.metrics));
      } else {
        const e = endpointFromSpec(spec);
        next.set(id, e);
        added.push(e);
      }
    }
    const removed: Endpoint[] = [];
    for (const [id, e] of this.byId) {
      const kept = next.get(id);
      if (!kept || kept.address !== e.address || kept.port !== e.port) removed.push(e);
    }
    this.byId = next;
    this.list = Object.freeze([...next.values()]);
    this.synced = true;
    for (const e of removed) this.emit('removed', e);
    for (const e of added) this.emit('added', e);
    this.emit('changed', this.list);
  }
}
