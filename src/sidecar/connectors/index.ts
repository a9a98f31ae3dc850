/** The P/D protocols by their --kv-connector name. */
import type { SidecarConfig } from '../options.js';
import type { Connector } from '../pd-context.js';
import { mooncakeConnector } from './mooncake.js';
import { nixlv2Connector } from './nixlv2.js';
import { offloadingConnector } from './offloading.js';
import { sglangConnector } from './sglang.js';
import { sharedStorageConnector } from './shared-storage.js';

/** Connectors by their --kv-connector name. */
export const CONNECTOR_REGISTRY: Readonly<Record<SidecarConfig['kvConnector'], Connector>> = {
  nixlv2: nixlv2Connector,
  sglang: sglangConnector,
  'shared-storage': sharedStorageConnector,
  mooncake: mooncakeConnector,
  offloading: offloadingConnector,
};
