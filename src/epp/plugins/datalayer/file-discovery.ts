/**
 * `file-discovery`: endpoints from a YAML/JSON file instead of Kubernetes (selected by `dataLayer.discovery.pluginRef`).
 * Format: `endpoints: [{name, namespace? = "default", address (IPv4), port ("1-65535", string or number), labels?}]`,
 * at most 1 MiB. With `watchFile`, changes are applied without a restart; a bad file keeps the previous endpoints.
 *
 * Parameters: `path` (required), `watchFile` (default false).
 */
import { z } from 'zod';
import type { Plugin } from '../../framework/types.js';
import type { ConfiguredDiscovery } from '../../datalayer/discovery.js';
import { definePlugin } from '../definition.js';

export interface FileDiscoverySettings extends Plugin {
  readonly discovery: ConfiguredDiscovery;
}

export const fileDiscovery = definePlugin({
  kind: 'endpoint-discovery',
  description: 'Endpoints from a YAML/JSON file.',
  params: z.object({ path: z.string({ message: 'is required' }).min(1, 'must name the endpoints file'), watchFile: z.boolean().default(false) }).strict(),
  create: (ctx, params): FileDiscoverySettings => ({ type: ctx.type, name: ctx.name, discovery: { kind: 'file', path: params.path, watchFile: params.watchFile } }),
});
