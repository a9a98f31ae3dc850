/**
 * `models-data-source` (llm-d v0.7.1 and llm-d-router) polls each endpoint's OpenAI `/v1/models`, and
 * `models-data-extractor` (v0.7.1: `model-server-protocol-models`) keeps what it lists on the endpoint: each model's
 * `id` and, for a LoRA adapter, its `parent` (datalayer/models-poller.ts). Wired as upstream:
 * `dataLayer.sources: [{pluginRef: <source>, extractors: [{pluginRef: <extractor>}]}]`. No pd-router plugin reads the
 * list yet (nor does any of upstream's).
 *
 * Source parameters: `scheme` (http | https), `path` (/v1/models), `insecureSkipVerify` (true), `caCertPath`,
 * `clientCertPath` + `clientKeyPath` (mTLS, both or neither; files read at load), `interval` (Go duration; rounded to
 * the base tick as metrics-data-source's). The extractor has no parameters.
 */
import { z } from 'zod';
import type { Plugin } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import {
  clientCertPair,
  httpSourceObject,
  httpSourceSettings,
  type MetricsSourceSettings,
} from './metrics-data-source.js';

export interface ModelsDataSource extends Plugin {
  readonly modelsSource: MetricsSourceSettings;
}

export interface ModelsExtractor extends Plugin {
  readonly modelsExtractor: true;
}

export const modelsDataSource = definePlugin({
  kind: 'models-source',
  description: 'Polls each endpoint’s /v1/models.',
  params: httpSourceObject('/v1/models')
    .strict()
    .refine(...clientCertPair),
  create: (ctx, params): ModelsDataSource => ({
    type: ctx.type,
    name: ctx.name,
    modelsSource: httpSourceSettings(ctx, params),
  }),
});

export const modelsDataExtractor = definePlugin({
  kind: 'models-extractor',
  description: 'Keeps the models an endpoint lists at /v1/models.',
  params: z.object({}).strict(),
  create: (ctx): ModelsExtractor => ({ type: ctx.type, name: ctx.name, modelsExtractor: true }),
});
