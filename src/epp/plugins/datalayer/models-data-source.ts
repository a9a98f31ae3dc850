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
import { goDuration } from '../../config/go-values.js';
import { definePlugin } from '../definition.js';
import { pem, type MetricsSourceSettings } from './metrics-data-source.js';

export interface ModelsDataSource extends Plugin {
  readonly modelsSource: MetricsSourceSettings;
}

export interface ModelsExtractor extends Plugin {
  readonly modelsExtractor: true;
}

export const modelsDataSource = definePlugin({
  kind: 'models-source',
  description: 'Polls each endpoint’s /v1/models.',
  params: z
    .object({
      scheme: z.enum(['http', 'https'], { error: 'must be http or https' }).default('http'),
      path: z.string().startsWith('/', 'must start with /').default('/v1/models'),
      insecureSkipVerify: z.boolean().default(true),
      caCertPath: z.string().default(''),
      clientCertPath: z.string().default(''),
      clientKeyPath: z.string().default(''),
      interval: goDuration.optional(),
    })
    .strict()
    .refine((params) => (params.clientCertPath === '') === (params.clientKeyPath === ''), {
      error: 'clientCertPath and clientKeyPath must be set together',
      path: ['clientCertPath'],
    }),
  create: (ctx, params): ModelsDataSource => {
    if (params.caCertPath && params.insecureSkipVerify)
      ctx.warn(
        'parameter "caCertPath" has no effect while insecureSkipVerify is true (its default); set insecureSkipVerify: false to verify',
      );
    return {
      type: ctx.type,
      name: ctx.name,
      modelsSource: {
        scheme: params.scheme,
        path: params.path,
        insecureSkipVerify: params.insecureSkipVerify,
        intervalMs: params.interval || undefined,
        ca: params.caCertPath && !params.insecureSkipVerify ? pem('caCertPath', params.caCertPath) : undefined,
        cert: params.clientCertPath ? pem('clientCertPath', params.clientCertPath) : undefined,
        key: params.clientKeyPath ? pem('clientKeyPath', params.clientKeyPath) : undefined,
      },
    };
  },
});

export const modelsDataExtractor = definePlugin({
  kind: 'models-extractor',
  description: 'Keeps the models an endpoint lists at /v1/models.',
  params: z.object({}).strict(),
  create: (ctx): ModelsExtractor => ({ type: ctx.type, name: ctx.name, modelsExtractor: true }),
});
