/**
 * Session affinity, shared by `session-affinity-scorer` (a soft preference) and `session-affinity-filter` (a hard pin),
 * as llm-d-router: both find the request's session endpoint among the candidates with one of two strategies.
 *
 * - `encoded_endpoint_header` (default, stateless): the request header `encodedEndpointHeaderConfig.header`
 *   (`x-session-token`) carries base64(`namespace/name`) of the endpoint that served the session before; the plugin
 *   writes that header on every response (the endpoint of `profileName`'s pick, else the primary pick) for the client
 *   to echo. A token that is not base64 or names no candidate (the pod left the pool) expresses no preference.
 * - `session_id` (stateful): an opaque session id, from the first non-empty of `sessionIdConfig.sources` (each
 *   `{header}` or `{attribute, producer?}`; default one header source, `x-session-id`), bound in the EPP to the endpoint
 *   that served it. Unbound: no preference. Bound to an endpoint that is not a candidate: no preference, and the
 *   session is rebound to the endpoint the request goes to. Bindings unused for `evictionTtlSeconds` (300) are dropped,
 *   swept at most every `evictionSweepSeconds` (10); pd-router also bounds them at `maxSessions` (100000, the least
 *   recently used goes first). Nothing is written to the client.
 *
 * `profileName` (default: the primary profile): the profile whose pick the plugin records or writes; one instance per
 * profile pins P and D separately. It must name a configured scheduling profile. An `attribute` source reads a request
 * attribute: `session-id-producer` publishes `SessionIDDataKey` under its name; any other never matches (a load
 * warning says so).
 */
import { z } from 'zod';
import type { Endpoint, SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { requestAttribute } from '../../framework/request-attributes.js';
import type { PluginFactoryContext } from '../definition.js';
import { SESSION_ID_ATTRIBUTE } from '../producer/session-id-producer.js';

const SESSION_ID_PRODUCER_TYPE = 'session-id-producer';

export const DEFAULT_SESSION_TOKEN_HEADER = 'x-session-token';
const DEFAULT_SESSION_ID_HEADER = 'x-session-id';
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** Lower-cased and trimmed, as upstream (the EPP sees lower-case header names); empty means the default. */
const headerName = (fallback: string) =>
  z
    .string()
    .default('')
    .transform((header) => header.trim().toLowerCase() || fallback)
    .refine((header) => HEADER_NAME.test(header), 'must be an HTTP header name');

const positiveSeconds = (fallback: number) =>
  z
    .number()
    .refine((seconds) => seconds >= 0, 'must be > 0')
    .default(0)
    .transform((seconds) => seconds || fallback);

const source = z
  .object({ header: z.string().default(''), attribute: z.string().default(''), producer: z.string().default('') })
  .strict()
  .refine(
    (source) => (source.header === '') !== (source.attribute === ''),
    'exactly one of header or attribute must be set',
  );

export const sessionAffinityParams = z
  .object({
    strategy: z
      .enum(['encoded_endpoint_header', 'session_id'], { error: 'must be "encoded_endpoint_header" or "session_id"' })
      .default('encoded_endpoint_header'),
    profileName: z.string().default(''),
    encodedEndpointHeaderConfig: z
      .object({ header: headerName(DEFAULT_SESSION_TOKEN_HEADER) })
      .strict()
      .optional(),
    sessionIdConfig: z
      .object({
        sources: z.array(source).default([]),
        evictionTtlSeconds: positiveSeconds(300),
        evictionSweepSeconds: positiveSeconds(10),
        maxSessions: z.number().int().min(1, 'must be >= 1').default(100_000),
      })
      .strict()
      .optional(),
  })
  .strict();

export type SessionAffinityParams = z.infer<typeof sessionAffinityParams>;

export interface SessionAffinity {
  /** The session's endpoint among the candidates, or undefined (no session, unknown endpoint, bad token). */
  choose(c: SchedulingContext, endpoints: readonly Endpoint[]): Endpoint | undefined;
  preRequest(c: SchedulingContext, result: SchedulingResult): void;
  responseHeaders(c: SchedulingContext, result: SchedulingResult): Array<[string, string]>;
  validateProfiles(names: readonly string[]): string | undefined;
}

/** Go's base64.StdEncoding: the standard alphabet with padding; anything else decodes to nothing. */
export function decodeSessionToken(token: string | undefined): string | undefined {
  if (!token || token.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(token)) return undefined;
  return Buffer.from(token, 'base64').toString('utf8');
}

export const encodeSessionToken = (endpointId: string) => Buffer.from(endpointId, 'utf8').toString('base64');

function pickOf(result: SchedulingResult, profile: string): Endpoint | undefined {
  return result.results.get(profile || result.primaryProfile)?.targets[0];
}

export function sessionAffinity(ctx: PluginFactoryContext, params: SessionAffinityParams): SessionAffinity {
  const validateProfiles = (names: readonly string[]) =>
    params.profileName && !names.includes(params.profileName)
      ? `plugin "${ctx.name}" (type ${ctx.type}): parameter "profileName": "${params.profileName}" is not a scheduling profile (${names.join(', ')})`
      : undefined;
  if (params.strategy === 'encoded_endpoint_header') {
    if (params.sessionIdConfig)
      ctx.warn('parameter "sessionIdConfig" has no effect with strategy encoded_endpoint_header');
    const header = params.encodedEndpointHeaderConfig?.header ?? DEFAULT_SESSION_TOKEN_HEADER;
    return {
      choose(cycle, endpoints) {
        const id = decodeSessionToken(cycle.request.headers[header]);
        return id === undefined ? undefined : endpoints.find((endpoint) => endpoint.id === id);
      },
      preRequest() {},
      responseHeaders(_cycle, result) {
        // With profileName, that profile's pick (none when it did not run, e.g. a decode-only request); else the primary.
        const e = params.profileName ? result.results.get(params.profileName)?.targets[0] : pickOf(result, '');
        return e ? [[header, encodeSessionToken(e.id)]] : [];
      },
      validateProfiles,
    };
  }
  if (params.encodedEndpointHeaderConfig)
    ctx.warn('parameter "encodedEndpointHeaderConfig" has no effect with strategy session_id');
  const cfg = params.sessionIdConfig ?? sessionAffinityParams.shape.sessionIdConfig.unwrap().parse({});
  const sources =
    cfg.sources.length > 0 ? cfg.sources : [{ header: DEFAULT_SESSION_ID_HEADER, attribute: '', producer: '' }];
  for (const s of sources) {
    // session-id-producer is the only publisher of request attributes in pd-router.
    if (s.attribute && (s.attribute !== SESSION_ID_ATTRIBUTE || ctx.typeOf(s.producer) !== SESSION_ID_PRODUCER_TYPE)) {
      ctx.warn(
        `sessionIdConfig source {attribute: "${s.attribute}", producer: "${s.producer}"} never matches: only a configured session-id-producer publishes a request attribute (${SESSION_ID_ATTRIBUTE})`,
      );
    }
  }
  const read = sources.map((source) =>
    source.header
      ? { header: source.header.trim().toLowerCase() }
      : { attribute: source.attribute, producer: source.producer },
  );
  const ttlMs = cfg.evictionTtlSeconds * 1000;
  const sweepMs = cfg.evictionSweepSeconds * 1000;
  /** Session id → endpoint id and last use; Map order is least recently used first. */
  const bindings = new Map<string, { endpoint: string; lastSeen: number }>();
  let lastSweep = 0;
  const presenceKey = `session-affinity/${ctx.name}/bound-present`;

  const sessionOf = (cycle: SchedulingContext): string | undefined => {
    for (const s of read) {
      const v =
        s.header !== undefined ? cycle.request.headers[s.header] : requestAttribute(cycle, s.attribute, s.producer);
      const id = typeof v === 'string' ? v.trim() : '';
      if (id) return id;
    }
    return undefined;
  };
  const sweep = (now: number) => {
    if (now - lastSweep < sweepMs) return;
    lastSweep = now;
    for (const [id, b] of bindings) if (now - b.lastSeen > ttlMs) bindings.delete(id);
  };
  const bound = (id: string, now: number): string | undefined => {
    sweep(now);
    const b = bindings.get(id);
    if (!b) return undefined;
    if (now - b.lastSeen > ttlMs) {
      bindings.delete(id);
      return undefined;
    }
    return b.endpoint;
  };
  const bind = (id: string, endpoint: string, now: number) => {
    bindings.delete(id);
    bindings.set(id, { endpoint, lastSeen: now });
    if (bindings.size > cfg.maxSessions) bindings.delete(bindings.keys().next().value!);
  };

  return {
    choose(cycle, endpoints) {
      const id = sessionOf(cycle);
      if (!id) return undefined;
      const endpointId = bound(id, cycle.now());
      if (endpointId === undefined) return undefined;
      const target = endpoints.find((endpoint) => endpoint.id === endpointId);
      cycle.state.set(presenceKey, target !== undefined);
      return target;
    },
    preRequest(cycle, result) {
      const id = sessionOf(cycle);
      const picked = pickOf(result, params.profileName);
      if (!id || !picked) return;
      const now = cycle.now();
      const current = bound(id, now);
      // A session moves only when its endpoint was not among the candidates; otherwise another plugin outweighed the
      // preference for this one request, and the binding stays.
      if (current === undefined || current === picked.id || cycle.state.get(presenceKey) === false)
        bind(id, picked.id, now);
    },
    responseHeaders: () => [],
    validateProfiles,
  };
}
