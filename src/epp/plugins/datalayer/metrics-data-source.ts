/**
 * `metrics-data-source`: scrape each endpoint's Prometheus metrics (injected by default; `dataLayer.injectDefaults:
 * false` turns scraping off). The interval is `--refresh-metrics-interval` unless `interval` is set (rounded up to a
 * multiple of it, as upstream).
 *
 * Parameters: `scheme` (http | https, default http), `path` (default /metrics), `port` (override; default the serving
 * port), `insecureSkipVerify` (default true), `interval` (duration, optional).
 */
import { z } from 'zod';
import { parseDuration } from '../../../common/index.js';
import type { Plugin } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export interface MetricsSourceSettings {
  scheme: 'http' | 'https';
  path: string;
  port?: number;
  insecureSkipVerify: boolean;
  intervalMs?: number;
}

export interface MetricsDataSource extends Plugin {
  readonly source: MetricsSourceSettings;
}

export const metricsDataSourceParams = z.object({
  scheme: z.enum(['http', 'https']).default('http'),
  path: z.string().startsWith('/', 'must start with /').default('/metrics'),
  port: z.number().int().min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535').optional(),
  insecureSkipVerify: z.boolean().default(true),
  interval: z
    .union([z.string(), z.number()])
    .transform((v, c) => {
      try {
        const ms = parseDuration(v);
        if (ms > 0) return ms;
      } catch {
        /* reported below */
      }
      c.addIssue({ code: 'custom', message: 'must be a positive duration such as 50ms or 1s' });
      return z.NEVER;
    })
    .optional(),
});

export const metricsDataSource = definePlugin({
  kind: 'datalayer',
  description: 'Scrapes endpoint metrics.',
  params: metricsDataSourceParams,
  create: (ctx, p): MetricsDataSource => ({
    type: ctx.type,
    name: ctx.name,
    source: { scheme: p.scheme, path: p.path, port: p.port, insecureSkipVerify: p.insecureSkipVerify, intervalMs: p.interval },
  }),
});
