/**
 * `session-id-producer` (llm-d-router): publishes the request's session id as the request attribute
 * `SessionIDDataKey` of this producer, for session affinity's `sessionIdConfig.sources` entries
 * `{attribute: SessionIDDataKey, producer: <this plugin's name>}`. Nothing is published when the source is absent.
 *
 * Parameters, exactly one: `headerName` (matched case-insensitively) or `cookieName` (a cookie of the `Cookie` header).
 */
import { z } from 'zod';
import { putRequestAttribute } from '../../framework/request-attributes.js';
import type { DataProducer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const SESSION_ID_ATTRIBUTE = 'SessionIDDataKey';

function cookieValue(header: string | undefined, name: string): string {
  for (const pair of (header ?? '').split(';')) {
    const p = pair.trim();
    const eq = p.indexOf('=');
    if (eq >= 0 && p.slice(0, eq) === name) return p.slice(eq + 1);
  }
  return '';
}

export const sessionIdProducer = definePlugin({
  kind: 'data-producer',
  produces: [SESSION_ID_ATTRIBUTE],
  description: 'Publishes the session id from a header or a cookie as a request attribute.',
  params: z
    .object({
      headerName: z
        .string()
        .default('')
        .transform((header) => header.trim().toLowerCase()),
      cookieName: z
        .string()
        .default('')
        .transform((cookie) => cookie.trim()),
    })
    .strict()
    .refine(
      (params) => (params.headerName === '') !== (params.cookieName === ''),
      'exactly one of headerName or cookieName must be set',
    ),
  create: (ctx, params): DataProducer => ({
    type: ctx.type,
    name: ctx.name,
    produce(cycle) {
      const id = (
        params.headerName
          ? (cycle.request.headers[params.headerName] ?? '')
          : cookieValue(cycle.request.headers.cookie, params.cookieName)
      ).trim();
      if (id) putRequestAttribute(cycle, SESSION_ID_ATTRIBUTE, ctx.name, id);
    },
  }),
});
