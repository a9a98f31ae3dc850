/**
 * `metrics-data-source`: scrape each endpoint's Prometheus metrics (injected by default; `dataLayer.injectDefaults:
 * false` turns scraping off). The period is `--refresh-metrics-interval` unless `interval` is set: rounded to the
 * nearest multiple of it, or, when shorter, the tick itself is lowered to it (not below 50 ms), as llm-d-router does
 * (endpoint-poller.ts `scrapeCadence`).
 *
 * Parameters: `scheme` (http | https, default http), `path` (default /metrics), `port` (override; default the serving
 * port), `insecureSkipVerify` (default true), `caCertPath` (PEM bundle that verifies the model server's certificate;
 * like upstream it has no effect while insecureSkipVerify is true, which pd-router says in a load warning),
 * `clientCertPath` and `clientKeyPath` (both or neither: a client certificate for mTLS), `interval` (Go duration,
 * optional). The PEM files are read at load; an unreadable file is a load error naming the parameter.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Plugin } from '../../framework/types.js';
import { goDuration } from '../../config/go-values.js';
import type { MetricsSourceSettings } from '../../datalayer/metrics-scraper.js';
import { definePlugin } from '../definition.js';

export type { MetricsSourceSettings } from '../../datalayer/metrics-scraper.js';

export interface MetricsDataSource extends Plugin {
  readonly source: MetricsSourceSettings;
}

/** The parameters every HTTP model-server source takes (metrics-data-source, models-data-source). */
export function httpSourceObject(defaultPath: string) {
  return z.object({
    scheme: z.enum(['http', 'https'], { error: 'must be http or https' }).default('http'),
    path: z.string().startsWith('/', 'must start with /').default(defaultPath),
    insecureSkipVerify: z.boolean().default(true),
    caCertPath: z.string().default(''),
    clientCertPath: z.string().default(''),
    clientKeyPath: z.string().default(''),
    interval: goDuration.optional(),
  });
}

type HttpSourceParams = z.output<ReturnType<typeof httpSourceObject>>;

/** The mTLS pair check every HTTP source applies: `.refine(...clientCertPair)`. */
export const clientCertPair: [(params: HttpSourceParams) => boolean, { error: string; path: string[] }] = [
  (params) => (params.clientCertPath === '') === (params.clientKeyPath === ''),
  { error: 'clientCertPath and clientKeyPath must be set together', path: ['clientCertPath'] },
];

/** An HTTP source's settings from its parameters: the PEM files read, a warning for a CA that cannot take effect. */
export function httpSourceSettings(
  ctx: { warn(message: string): void },
  params: HttpSourceParams,
): Omit<MetricsSourceSettings, 'port'> {
  if (params.caCertPath && params.insecureSkipVerify)
    ctx.warn(
      'parameter "caCertPath" has no effect while insecureSkipVerify is true (its default); set insecureSkipVerify: false to verify',
    );
  return {
    scheme: params.scheme,
    path: params.path,
    insecureSkipVerify: params.insecureSkipVerify,
    intervalMs: params.interval || undefined,
    ca: params.caCertPath && !params.insecureSkipVerify ? pem('caCertPath', params.caCertPath) : undefined,
    cert: params.clientCertPath ? pem('clientCertPath', params.clientCertPath) : undefined,
    key: params.clientKeyPath ? pem('clientKeyPath', params.clientKeyPath) : undefined,
  };
}

export const metricsDataSourceParams = httpSourceObject('/metrics')
  .extend({
    port: z.number().int().min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535').optional(),
  })
  .strict()
  .refine(...clientCertPair);

/** A PEM file read at load; unreadable is an error naming the parameter. */
export function pem(parameter: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(
      `parameter "${parameter}": cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

export const metricsDataSource = definePlugin({
  kind: 'metrics-source',
  description: 'Scrapes endpoint metrics.',
  params: metricsDataSourceParams,
  create: (ctx, params): MetricsDataSource => ({
    type: ctx.type,
    name: ctx.name,
    source: { ...httpSourceSettings(ctx, params), port: params.port },
  }),
});
