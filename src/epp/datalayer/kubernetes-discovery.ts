/**
 * Kubernetes discovery: an InferencePool (or a label selector plus ports) watched through the shared PoolWatcher.
 * Only Ready pods count; each pod yields one endpoint per target port, named `<pod>-rank-<i>` as upstream.
 */
import type { Logger } from 'pino';
import {
  PoolWatcher,
  loadKubeConfig,
  type KubeClientSettings,
  type PodEndpoint,
  type PoolSource,
} from '../../common/kubernetes/index.js';
import type { EndpointSpec } from './endpoint-store.js';

export function endpointSpecsFromPods(pods: readonly PodEndpoint[]): EndpointSpec[] {
  const rank = new Map<string, number>();
  const out: EndpointSpec[] = [];
  for (const p of pods) {
    if (!p.ready) continue;
    const i = rank.get(p.podKey) ?? 0;
    rank.set(p.podKey, i + 1);
    out.push({
      name: `${p.podName}-rank-${i}`,
      namespace: p.namespace,
      address: p.address,
      port: p.port,
      labels: p.labels,
      ...(p.hostname ? { hostname: p.hostname } : {}),
    });
  }
  return out;
}

export interface KubernetesDiscoverySettings {
  source: PoolSource;
  /** How to reach the API server (default: $KUBECONFIG, in-cluster, ~/.kube/config). */
  kube: KubeClientSettings;
}

export function startKubernetesDiscovery(
  settings: KubernetesDiscoverySettings,
  onEndpoints: (specs: EndpointSpec[]) => void,
  logger: Logger,
): PoolWatcher {
  const watcher = new PoolWatcher(loadKubeConfig(settings.kube), settings.source, logger);
  watcher.on('change', (pods) => onEndpoints(endpointSpecsFromPods(pods)));
  watcher.start();
  return watcher;
}
