/**
 * Chooses and starts the one endpoint source: --endpoints-file, the config's file-discovery plugin, --pool-name
 * (InferencePool) or --endpoint-selector. Kubernetes sources do not block start-up: the EPP reports NOT_SERVING
 * until the first listing arrives.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../../common/index.js';
import type { EppMetrics } from '../metrics.js';
import { kubeClientSettings, type EppConfig } from '../options.js';
import type { EndpointStore } from './endpoint-store.js';
import { EndpointsFileWatcher } from './endpoints-file.js';
import { startKubernetesDiscovery } from './kubernetes-discovery.js';

export interface RunningDiscovery {
  description: string;
  stop(): Promise<void>;
}

/** The endpoint source an EndpointPickerConfig chooses (its file-discovery plugin), in place of the flags. */
export interface ConfiguredDiscovery {
  kind: 'file';
  path: string;
  watchFile: boolean;
}

export async function startDiscovery(
  optionValues: EppConfig,
  configured: ConfiguredDiscovery | undefined,
  store: EndpointStore,
  metrics: EppMetrics,
  logger: Logger,
): Promise<RunningDiscovery> {
  const flagSource = optionValues.endpointsFile
    ? '--endpoints-file'
    : optionValues.poolName
      ? '--pool-name'
      : optionValues.endpointSelector
        ? '--endpoint-selector'
        : undefined;
  if (configured && flagSource)
    throw new ConfigError(
      `the EndpointPickerConfig's dataLayer.discovery and ${flagSource} both choose the endpoints; give one`,
    );
  const file = optionValues.endpointsFile
    ? { path: optionValues.endpointsFile, watch: true }
    : configured
      ? { path: configured.path, watch: configured.watchFile }
      : undefined;
  if (file) {
    const errors = metrics.pollErrors('file-discovery');
    const watcher = new EndpointsFileWatcher(
      file.path,
      (specs) => store.replaceAll(specs),
      logger,
      () => errors.inc(),
    );
    try {
      await watcher.load();
    } catch (e) {
      throw new ConfigError(
        `endpoints file ${file.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    if (file.watch) watcher.watch();
    return { description: `file ${file.path}${file.watch ? ' (watched)' : ''}`, stop: async () => watcher.close() };
  }
  const namespace = optionValues.poolNamespace || 'default';
  if (optionValues.poolName || optionValues.endpointSelector) {
    const source = optionValues.poolName
      ? ({ kind: 'pool', namespace, name: optionValues.poolName, group: optionValues.poolGroup } as const)
      : ({
          kind: 'selector',
          namespace,
          selector: optionValues.endpointSelector,
          ports: optionValues.endpointTargetPorts.map(Number),
        } as const);
    const watcher = startKubernetesDiscovery(
      { source, kube: kubeClientSettings(optionValues) },
      (specs) => store.replaceAll(specs),
      logger,
    );
    const what = optionValues.poolName
      ? `InferencePool ${namespace}/${optionValues.poolName}`
      : `pods ${namespace} ${optionValues.endpointSelector}`;
    return { description: what, stop: () => watcher.stop() };
  }
  throw new ConfigError(
    'no endpoint source: give --endpoints-file, --pool-name, --endpoint-selector or a file-discovery plugin in the config',
  );
}
