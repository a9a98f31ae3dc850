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
  kind: 'datalayer',
  description: 'Polls each endpoint’s /v1/models.',
  params: z
    .object({
      scheme: z.enum(['http', 'https'], { message: 'must be http or https' }).default('http'),
      path: z.string().startsWith('/', 'must start with /').default('/v1/models'),
      insecureSkipVerify: z.boolean().default(true),
      caCertPath: z.string().default(''),
      clientCertPath: z.string().default(''),
      clientKeyPath: z.string().default(''),
      interval: goDuration.optional(),
    })
    .strict()
    .refine((p) => (p.clientCertPath === '') === (p.clientKeyPath === ''), { message: 'clientCertPath and clientKeyPath must be set together', path: ['clientCertPath'] }),
  create: (ctx, p): ModelsDataSource => {
    if (p.caCertPath && p.insecureSkipVerify) ctx.warn('parameter "caCertPath" has no effect while insecureSkipVerify is true (its default); set insecureSkipVerify: false to verify');
    return {
      type: ctx.type,
      name: ctx.name,
      modelsSource: {
        scheme: p.scheme,
        path: p.path,
        insecureSkipVerify: p.insecureSkipVerify,
        intervalMs: p.interval || undefined,
        ca: p.caCertPath && !p.insecureSkipVerify ? pem('caCertPath', p.caCertPath) : undefined,
        cert: p.clientCertPath ? pem('clientCertPath', p.clientCertPath) : undefined,
        key: p.clientKeyPath ? pem('clientKeyPath', p.clientKeyPath) : undefined,
      },
    };
  },
});

export const modelsDataExtractor = definePlugin({
  kind: 'datalayer',
  description: 'Keeps the models an endpoint lists at /v1/models.',
  params: z.object({}).strict(),
  create: (ctx): ModelsExtractor => ({ type: ctx.type, name: ctx.name, modelsExtractor: true }),
});
