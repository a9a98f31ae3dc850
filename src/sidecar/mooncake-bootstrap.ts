/**
 * The Mooncake bootstrap query (llm-d-router ebab687 connector_mooncake.go): `GET http://<prefill host>:<
 * --mooncake-bootstrap-port>/query` answers `{"<dp rank>": {"engine_id": "...", ...}, ...}`. The rank -> engine id
 * map is cached per prefiller (host:port), 1024 prefillers at most, least recently used out first, as upstream; the
 * query has a deadline (--mooncake-bootstrap-timeout) and its answer a size bound (--max-prefill-response-size).
 * Only a successful answer is cached, so a prefiller that was not ready is asked again on the next request.
 */
import { hostPort } from '../common/index.js';
import { isObject } from '../common/json.js';
import { LegStopped, UpstreamLeg, connectErrorCode } from '../common/upstream-leg.js';
import type { PdContext } from './pd-context.js';
import type { UpstreamAgents } from './upstream.js';

/** dp rank -> engine id, in the bootstrap answer's order. */
export type EngineIds = ReadonlyArray<readonly [rank: string, engineId: string]>;

export type BootstrapResult =
  { ok: true; engines: EngineIds } | { ok: false; message: string; timeout: boolean; detail?: string };

const CACHE_MAX = 1024;

/** One cache per sidecar: keyed by its upstream agents, which every rank of one sidecar shares. */
const caches = new WeakMap<UpstreamAgents, Map<string, EngineIds>>();

function cacheOf(agents: UpstreamAgents): Map<string, EngineIds> {
  let cache = caches.get(agents);
  if (!cache) caches.set(agents, (cache = new Map<string, EngineIds>()));
  return cache;
}

/** `http://<prefill host>:<bootstrap port>`: the bootstrap address, as the decode leg's remote_bootstrap_addr names it. */
export function bootstrapAddr(ctx: PdContext): string {
  return `http://${hostPort(ctx.target.host, ctx.config.mooncakeBootstrapPort)}`;
}

/** The engine ids of this request's prefiller: cached, or queried. */
export async function mooncakeEngines(ctx: PdContext): Promise<BootstrapResult> {
  const cache = cacheOf(ctx.agents);
  const key = ctx.target.hostPort;
  const cached = cache.get(key);
  if (cached) {
    cache.delete(key);
    cache.set(key, cached);
    return { ok: true, engines: cached };
  }
  const result = await query(ctx);
  if (result.ok) {
    cache.set(key, result.engines);
    if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
  }
  return result;
}

async function query(ctx: PdContext): Promise<BootstrapResult> {
  const timeoutMs = ctx.config.mooncakeBootstrapTimeout;
  let status: number;
  let body: Buffer;
  try {
    const leg = await UpstreamLeg.open({
      agent: ctx.agents.prefill,
      origin: bootstrapAddr(ctx),
      method: 'GET',
      path: '/query',
      headers: {},
      clientSignal: ctx.signal,
      firstByteTimeoutMs: timeoutMs,
      idleTimeoutMs: timeoutMs,
      wholeLegDeadline: true,
      label: 'mooncake bootstrap query',
    });
    status = leg.status;
    body = await leg.readAll(ctx.config.maxPrefillResponseSize);
  } catch (err) {
    if (err instanceof LegStopped && (err.reason === 'first_byte_timeout' || err.reason === 'idle_timeout'))
      return { ok: false, timeout: true, message: `mooncake bootstrap query: no answer within ${timeoutMs}ms` };
    if (err instanceof RangeError)
      return { ok: false, timeout: false, message: 'mooncake bootstrap query: the answer is too large' };
    const code = connectErrorCode(err) ?? 'EUNKNOWN';
    return {
      ok: false,
      timeout: false,
      message: `mooncake bootstrap query: the bootstrap server could not be reached (${code})`,
      detail: (err as Error | undefined)?.message,
    };
  }
  if (status < 200 || status >= 300)
    return {
      ok: false,
      timeout: false,
      message: `mooncake bootstrap query: the bootstrap endpoint returned status ${status}`,
    };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (!isObject(parsed))
    return { ok: false, timeout: false, message: 'mooncake bootstrap query: the answer is not a JSON object' };
  const engines: Array<readonly [string, string]> = [];
  for (const [rank, entry] of Object.entries(parsed))
    if (isObject(entry) && typeof entry.engine_id === 'string') engines.push([rank, entry.engine_id]);
  if (engines.length === 0)
    return {
      ok: false,
      timeout: false,
      message: 'mooncake bootstrap query: engine_id not found in bootstrap response',
    };
  return { ok: true, engines };
}
