/**
 * Upstream connections and headers. All upstream calls go through three undici Agents owned here: one for prefillers
 * (any number of hosts, pooled per origin), one for encoders and one for the local decoder, each with the TLS settings
 * of its stage.
 * Deadlines are enforced per call by the callers, so the agents themselves have no header or body timeouts.
 */
import { randomFillSync } from 'node:crypto';
import { Agent } from './undici-agent.js';
import type { IncomingHttpHeaders } from 'node:http';
import { HOP_BY_HOP_HEADERS } from '../common/index.js';
import { REQUEST_ID_HEADER, ROUTING_HEADER_SET } from '../common/pd-contract.js';

export type Stage = 'prefiller' | 'decoder' | 'encoder';

export interface UpstreamSettings {
  enableTls: readonly string[];
  tlsInsecureSkipVerify: readonly string[];
  maxConnsPerHost: number;
}

export class UpstreamAgents {
  readonly prefill: Agent;
  readonly decode: Agent;
  /** Encoders (E/PD, --ec-connector), with the `encoder` stage's TLS settings, as upstream's encoder proxies. */
  readonly encode: Agent;

  constructor(private readonly settings: UpstreamSettings) {
    this.prefill = this.agent('prefiller');
    this.decode = this.agent('decoder');
    this.encode = this.agent('encoder');
  }

  scheme(stage: Stage): 'http' | 'https' {
    return this.settings.enableTls.includes(stage) ? 'https' : 'http';
  }

  private agent(stage: Stage): Agent {
    return new Agent({
      connections: this.settings.maxConnsPerHost,
      pipelining: 1,
      // Go's transport keeps idle connections 90s; vLLM's uvicorn closes them after 5s unless told otherwise.
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 90_000,
      headersTimeout: 0,
      bodyTimeout: 0,
      connectTimeout: 30_000,
      connect: this.settings.enableTls.includes(stage)
        ? { rejectUnauthorized: !this.settings.tlsInsecureSkipVerify.includes(stage) }
        : undefined,
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.prefill.close(), this.decode.close(), this.encode.close()]);
  }
}

export interface ForwardOptions {
  requestId: string;
  /** Drop Host (legs to another server); passthrough keeps the client's Host, as Go's reverse proxy does. */
  dropHost: boolean;
  clientAddress?: string;
  /** Trace context to use when the client sent none; one per request, so both legs share it. */
  traceparent?: string;
}

/** Headers for an upstream leg: hop-by-hop, routing and Expect headers removed, one x-request-id, traceparent propagated. */
export function forwardHeaders(
  incoming: IncomingHttpHeaders,
  options: ForwardOptions,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  // Headers the client's Connection header names are hop-by-hop too (rare: most clients send only keep-alive).
  const connection = incoming.connection;
  const connectionListed =
    connection === undefined || connection === 'keep-alive' || connection === 'close'
      ? undefined
      : new Set(connection.split(',').map((text) => text.trim().toLowerCase()));
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (HOP_BY_HOP_HEADERS.has(name) || ROUTING_HEADER_SET.has(name) || connectionListed?.has(name)) continue;
    // Expect: 100-continue is answered by the sidecar, which sends the body whole (undici refuses the header).
    if (name === 'content-length' || name === REQUEST_ID_HEADER || name === 'x-forwarded-for' || name === 'expect')
      continue;
    if (name === 'host' && options.dropHost) continue;
    out[name] = value;
  }
  out[REQUEST_ID_HEADER] = options.requestId;
  if (!out.traceparent) out.traceparent = options.traceparent ?? newTraceparent();
  const xff = incoming['x-forwarded-for'];
  if (options.clientAddress)
    out['x-forwarded-for'] = xff
      ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${options.clientAddress}`
      : options.clientAddress;
  else if (xff) out['x-forwarded-for'] = xff;
  return out;
}

/** Random bytes for trace ids, refilled in blocks: one getrandom call per 170 trace contexts, not one per request. */
const TRACE_ENTROPY = Buffer.alloc(24 * 170);
let traceEntropyAt = TRACE_ENTROPY.length;

/** A W3C trace context for requests that arrive without one, so both legs share a trace id. */
export function newTraceparent(): string {
  if (traceEntropyAt + 24 > TRACE_ENTROPY.length) {
    randomFillSync(TRACE_ENTROPY);
    traceEntropyAt = 0;
  }
  const at = traceEntropyAt;
  traceEntropyAt += 24;
  // An all-zero trace or span id is invalid; with 128 and 64 random bits it does not happen in practice.
  return `00-${TRACE_ENTROPY.toString('hex', at, at + 16)}-${TRACE_ENTROPY.toString('hex', at + 16, at + 24)}-01`;
}

/** Response headers relayed to the client (hop-by-hop removed; content-length removed when the body is rewritten). */
export function responseHeaders(
  headers: Record<string, string | string[] | undefined>,
  dropLength: boolean,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP_HEADERS.has(name)) continue;
    if (dropLength && name === 'content-length') continue;
    out[name] = value;
  }
  return out;
}

/** All candidate prefillers from the header's values (comma-split when there is exactly one value, as upstream). */
export function prefillCandidates(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  // The usual case: one value naming one host.
  if (typeof header === 'string' && !header.includes(',')) {
    const v = header.trim();
    return v.length > 0 ? [v] : [];
  }
  const values = Array.isArray(header) ? header : [header];
  const list = values.length === 1 ? values[0].split(',') : values;
  return list.map((text) => text.trim()).filter((text) => text.length > 0);
}
