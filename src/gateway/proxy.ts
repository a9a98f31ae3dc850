/**
 * One HTTP exchange through the gateway, in Envoy's ext_proc order with FULL_DUPLEX_STREAMED bodies:
 *
 *   request headers  ──► EPP          (protocol_config announces the body modes)
 *   request body     ──► EPP          (chunks as they arrive, end_of_stream on the last)
 *   EPP ──► headers response          (header mutations, clear_route_cache, envoy.lb destination metadata)
 *   EPP ──► body chunks               (the body to send upstream, ≤ 62000 bytes each)
 *       or immediate response         (relayed to the client as is)
 *   upstream request to the destination (first entry of x-gateway-destination-endpoint; the next on connect failure)
 *   response headers ──► EPP ──► header mutations applied to the client response
 *   response body    ──► EPP ──► chunks written to the client as the EPP returns them
 *
 * With several EPP replicas (--epp a,b,c) the request phase is asked of the next replica when one is unavailable or
 * answers as a follower (503 rejected-not-leader), until --epp-retry-timeout; nothing has gone upstream by then.
 *
 * If the EPP fails (unreachable, stream error, no answer within the message timeout), fail-closed answers 500 as Envoy
 * does, or, once the answer is streaming, cuts it at once (the client sees an unterminated body, never a complete-looking
 * one with chunks missing); fail-open sends the original request, without the client's routing headers, to a fallback
 * endpoint, or, once the answer is streaming, keeps streaming it without the EPP: the chunks the EPP had not returned
 * first, from the gateway's own copy, then the rest, so none is lost or reordered.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { envoyStatusNumber, structToJson, type CommonResponse, type HeaderValue, type ProcessingResponse } from '../common/envoy/ext-proc.js';
import { HOP_BY_HOP_HEADERS, LegStopped, UpstreamLeg, connectErrorCode, drainOrClose, type StopSignal } from '../common/index.js';
import { ROUTING_HEADERS } from '../common/pd-contract.js';
import { EppUnavailable, type ExtProcSession } from './ext-proc-session.js';
import { applyMutation, InvalidHeaderMutation, type HeaderMultiMap } from './header-mutation.js';
import { NOT_LEADER_REASON, type EppReplicas } from './epp-replicas.js';
import type { GatewayConfig } from './options.js';
import type { GatewayMetrics } from './metrics.js';

/** Not forwarded either way: hop-by-hop headers, and content-length (undici and Node set it for the body they send). */
const HOP_BY_HOP = new Set([...HOP_BY_HOP_HEADERS, 'content-length']);

export interface Exchange {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Readable | undefined;
  res: ServerResponse;
  /** Stopped when the client disconnects. */
  signal: StopSignal;
  logger: Logger;
}

export interface ProxyDeps {
  config: GatewayConfig;
  agent: Dispatcher;
  metrics: GatewayMetrics;
  epps: EppReplicas;
  nextFallback: () => string | undefined;
}

/** Request headers as a multi-map (lower-case names), the form mutations apply to; pseudo-headers under `:` names. */
type Headers = HeaderMultiMap;

/** The request as Envoy's ext_proc filter sees it: the pseudo-headers first, then the client's headers. */
function toHeaders(pseudo: Record<string, string>, h: IncomingHttpHeaders): Headers {
  const out: Headers = new Map(Object.entries(pseudo).map(([k, v]) => [k, [v]]));
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out.set(k, Array.isArray(v) ? [...v] : [String(v)]);
  // The gateway answered the expectation itself (100 Continue) and has the body: like Envoy, it passes the header
  // neither to the EPP nor upstream (undici refuses to send it).
  out.delete('expect');
  return out;
}

function headerMap(h: Headers): { headers: HeaderValue[] } {
  const headers: HeaderValue[] = [];
  for (const [key, values] of h) for (const v of values) headers.push({ key, raw_value: Buffer.from(v) });
  return { headers };
}

function commonOf(r: ProcessingResponse): CommonResponse | undefined {
  return r.request_headers?.response ?? r.request_body?.response ?? r.response_headers?.response ?? r.response_body?.response;
}

/** Destinations from the envoy.lb dynamic metadata, else the x-gateway-destination-endpoint header. */
function destinations(meta: Record<string, unknown> | undefined, h: Headers): string[] {
  const lb = meta?.['envoy.lb'] as Record<string, unknown> | undefined;
  const fromMeta = typeof lb?.['x-gateway-destination-endpoint'] === 'string' ? (lb['x-gateway-destination-endpoint'] as string) : undefined;
  const value = fromMeta ?? h.get('x-gateway-destination-endpoint')?.[0] ?? '';
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function writeLocalReply(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    if (!res.destroyed) res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function relayImmediate(res: ServerResponse, r: NonNullable<ProcessingResponse['immediate_response']>): number {
  const status = envoyStatusNumber(r.status?.code);
  const h: Headers = new Map();
  try {
    applyMutation(h, r.headers);
  } catch (err) {
    // Envoy logs a failed immediate-response mutation and sends the response without it.
    if (!(err instanceof InvalidHeaderMutation)) throw err;
    h.clear();
  }
  const body = r.body ? Buffer.from(r.body) : Buffer.alloc(0);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of h) headers[k] = v.length === 1 ? v[0]! : v;
  headers['content-length'] = String(body.length);
  if (!headers['content-type']) headers['content-type'] = 'text/plain';
  res.writeHead(status || 500, headers);
  res.end(body);
  return status || 500;
}


/** The client's body stopped arriving for the body timeout. */
class BodyTimeout extends Error {}

/**
 * Reads the whole request body: at most `limit` bytes (RangeError beyond), each chunk within `idleMs` of the one
 * before (BodyTimeout beyond; a stalled upload would otherwise hold its buffers until the client gives up).
 */
function readBody(body: Readable | undefined, limit: number, idleMs: number): Promise<Buffer[]> {
  if (!body) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const done = (err?: Error) => {
      clearTimeout(timer);
      body.off('data', onData).off('end', onEnd).off('error', done).off('close', onClose);
      if (err) reject(err);
      else resolve(parts);
    };
    const timer = setTimeout(() => done(new BodyTimeout(`request body made no progress for ${idleMs}ms (${size} bytes received)`)), idleMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return done(new RangeError(`request body exceeds ${limit} bytes`));
      parts.push(chunk);
      timer.refresh();
    };
    const onEnd = () => done();
    const onClose = () => done(new Error('client closed the request'));
    body.on('data', onData).on('end', onEnd).on('error', done).on('close', onClose);
  });
}

/** Serves one exchange; returns the status sent to the client (0 if the client left). */
export async function proxyExchange(x: Exchange, d: ProxyDeps): Promise<number> {
  const c = d.config;
  const started = performance.now();
  let chunks: Buffer[];
  try {
    chunks = await readBody(x.body, c.maxRequestBodySize, c.requestBodyTimeout);
  } catch (err) {
    // The rest of the body is never read: answer, then close the connection.
    const status = err instanceof RangeError ? 413 : err instanceof BodyTimeout ? 408 : 0;
    if (status === 0) return 0;
    writeLocalReply(x.res, status, (err as Error).message, { connection: 'close' });
    x.res.once('finish', () => x.res.socket?.destroy());
    return status;
  }
  const original = { headers: toHeaders({ ':method': x.method, ':path': x.url, ':authority': x.headers.host ?? 'localhost', ':scheme': 'http' }, x.headers), chunks };
  const asked = await askEppReplicas(x, d, original.headers, chunks, started);
  if ('relayed' in asked) return asked.relayed;
  if ('failed' in asked) {
    const err = asked.failed;
    if (x.signal.aborted) return 0;
    const stage = err instanceof EppUnavailable ? err.stage : 'connect';
    d.metrics.eppFailures.inc({ stage });
    x.logger.warn({ err, stage }, 'endpoint picker failed');
    if (!c.failureModeAllow) {
      writeLocalReply(x.res, 500, `ext_proc error: endpoint picker unavailable (${(err as Error).message})`);
      return 500;
    }
    const fallback = d.nextFallback();
    if (!fallback) {
      writeLocalReply(x.res, 503, 'no healthy upstream: endpoint picker unavailable and no --fallback-endpoints configured');
      return 503;
    }
    d.metrics.failOpen.inc();
    // Without the EPP nobody vouches for the client's routing headers: they go, as the EPP would have removed them.
    const headers = new Map(original.headers);
    for (const h of ROUTING_HEADERS) headers.delete(h);
    return forward(x, d, headers, Buffer.concat(original.chunks), [fallback], undefined);
  }
  const { session, headers, destination, body } = asked;
  if (destination.length === 0) {
    session.close();
    writeLocalReply(x.res, 503, 'no healthy upstream: the endpoint picker named no destination');
    return 503;
  }
  return forward(x, d, headers, body, destination, session);
}

type Routed = { session: ExtProcSession; headers: Headers; destination: string[]; body: Buffer };
/** A route, an immediate response to relay, or a reply already written (an invalid header mutation: 500). */
type EppAnswer = Routed | { immediate: NonNullable<ProcessingResponse['immediate_response']>; session: ExtProcSession; stopWatching: () => void } | { answered: number };

/** An immediate response of a follower under leader election: another replica may be the leader. */
function isNotLeader(r: NonNullable<ProcessingResponse['immediate_response']>): boolean {
  if (envoyStatusNumber(r.status?.code) !== 503) return false;
  const h: Headers = new Map();
  try {
    applyMutation(h, r.headers);
  } catch (err) {
    if (err instanceof InvalidHeaderMutation) return false;
    throw err;
  }
  return h.get('x-llm-d-request-dropped-reason')?.[0] === NOT_LEADER_REASON;
}

/**
 * The request phase, asked of the EPP replicas in turn: the first answer that is not a follower's wins (a route, or an
 * immediate response relayed to the client). When every replica is unavailable or a follower, the rounds repeat with
 * backoff until --epp-retry-timeout; then the last failure is returned (or, if every replica answered as a follower,
 * that answer is relayed: there is no leader).
 */
async function askEppReplicas(x: Exchange, d: ProxyDeps, original: Headers, chunks: Buffer[], started: number): Promise<Routed | { relayed: number } | { failed: unknown }> {
  const deadline = started + d.config.eppRetryTimeout;
  let backoff = 50;
  let lastFailure: unknown;
  let lastFollower: NonNullable<ProcessingResponse['immediate_response']> | undefined;
  for (;;) {
    for (const i of d.epps.order()) {
      if (x.signal.aborted) return { failed: new Error('client gone') };
      if (lastFailure !== undefined || lastFollower) d.metrics.eppRetries.inc({ reason: lastFollower ? 'not_leader' : 'unavailable' });
      let answer: EppAnswer;
      try {
        answer = await askEpp(x, d, d.epps.open(i), new Map([...original].map(([k, v]) => [k, [...v]])), chunks, started);
      } catch (err) {
        if (x.signal.aborted) return { failed: err };
        lastFailure = err;
        lastFollower = undefined;
        if (d.epps.addresses.length > 1) x.logger.debug({ epp: d.epps.addresses[i], err: (err as Error).message }, 'EPP replica unavailable; asking the next');
        continue;
      }
      if ('answered' in answer) {
        d.epps.answered(i);
        return { relayed: answer.answered };
      }
      if ('immediate' in answer && isNotLeader(answer.immediate)) {
        answer.stopWatching();
        answer.session.close();
        lastFollower = answer.immediate;
        lastFailure = undefined;
        continue;
      }
      d.epps.answered(i);
      if ('immediate' in answer) {
        answer.stopWatching();
        answer.session.close();
        return { relayed: relayImmediate(x.res, answer.immediate) };
      }
      return answer;
    }
    if (performance.now() + backoff > deadline) break;
    await pause(backoff, x.signal);
    backoff = Math.min(1000, backoff * 2);
  }
  if (lastFollower && lastFailure === undefined) return { relayed: relayImmediate(x.res, lastFollower) };
  return { failed: lastFailure };
}

/** Waits `ms`, or less if the client leaves. */
function pause(ms: number, signal: StopSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * One replica's request phase: headers and body out; the route and the (possibly rewritten) body, or an immediate
 * response. Throws EppUnavailable. A routed session stays cancelled by the client's leaving for the rest of the exchange.
 */
async function askEpp(x: Exchange, d: ProxyDeps, s: ExtProcSession, headers: Headers, chunks: Buffer[], started: number): Promise<EppAnswer> {
  const c = d.config;
  const onAbort = () => s.cancel();
  const stopWatching = () => x.signal.removeEventListener('abort', onAbort);
  x.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const hasBody = chunks.length > 0;
    s.send({
      request_headers: { headers: headerMap(headers), end_of_stream: !hasBody },
      protocol_config: {
        request_body_mode: 'FULL_DUPLEX_STREAMED',
        response_body_mode: c.responseBodyMode === 'streamed' ? 'FULL_DUPLEX_STREAMED' : 'NONE',
      },
    } as never);
    chunks.forEach((chunk, i) => s.send({ request_body: { body: chunk, end_of_stream: i === chunks.length - 1 } }));
    const first = await s.next('request headers');
    d.metrics.eppDecision.observe((performance.now() - started) / 1000);
    if (first.immediate_response) return { immediate: first.immediate_response, session: s, stopWatching };
    const common = commonOf(first);
    try {
      d.metrics.rejectedHeaderMutations.inc(applyMutation(headers, common?.header_mutation));
    } catch (err) {
      if (!(err instanceof InvalidHeaderMutation)) throw err;
      // Envoy closes the ext_proc stream and answers 500, failure_mode_allow or not.
      stopWatching();
      s.cancel();
      x.logger.warn({ err }, 'endpoint picker sent an invalid header mutation');
      writeLocalReply(x.res, 500, `ext_proc error: invalid header mutation (${err.message})`);
      return { answered: 500 };
    }
    const destination = destinations(first.dynamic_metadata ? structToJson(first.dynamic_metadata) : undefined, headers);
    // The EPP re-emits the request body (possibly rewritten) as streamed chunks.
    const body: Buffer[] = [];
    if (hasBody) {
      for (;;) {
        const r = await s.next('request body');
        if (r.immediate_response) return { immediate: r.immediate_response, session: s, stopWatching };
        const mutation = r.request_body?.response?.body_mutation as { streamed_response?: { body?: Buffer; end_of_stream?: boolean } } | undefined;
        if (mutation?.streamed_response) {
          if (mutation.streamed_response.body) body.push(Buffer.from(mutation.streamed_response.body));
          if (mutation.streamed_response.end_of_stream) break;
        } else break;
      }
    }
    return { session: s, headers, destination, body: hasBody ? Buffer.concat(body) : Buffer.alloc(0) };
  } catch (err) {
    stopWatching();
    s.cancel();
    throw err;
  }
}

/** Sends the request upstream (trying destinations in order on connect failure) and relays the answer. */
async function forward(x: Exchange, d: ProxyDeps, headers: Headers, body: Buffer, destinations: string[], session: ExtProcSession | undefined): Promise<number> {
  const c = d.config;
  const out: Record<string, string | string[]> = {};
  // Pseudo-headers are never headers: :path is the request's path, the others are not sent (HTTP/1.1 upstream).
  for (const [k, v] of headers) if (!HOP_BY_HOP.has(k) && !k.startsWith(':')) out[k] = v.length === 1 ? v[0]! : v;
  let leg: UpstreamLeg | undefined;
  let lastErr: unknown;
  for (const dest of destinations) {
    try {
      leg = await UpstreamLeg.open({
        agent: d.agent,
        origin: `http://${dest}`,
        method: x.method,
        path: headers.get(':path')?.[0] ?? x.url,
        headers: out,
        body: body.length > 0 || (x.method !== 'GET' && x.method !== 'HEAD') ? body : undefined,
        clientSignal: x.signal,
        firstByteTimeoutMs: c.upstreamFirstByteTimeout,
        idleTimeoutMs: c.upstreamIdleTimeout,
        label: `upstream ${dest}`,
      });
      break;
    } catch (err) {
      lastErr = err;
      if (err instanceof LegStopped || x.signal.aborted) break;
      if (!connectErrorCode(err)) break;
      x.logger.warn({ destination: dest, code: connectErrorCode(err) }, 'upstream connect failed; trying the next destination');
    }
  }
  if (!leg) {
    session?.cancel();
    if (x.signal.aborted) return 0;
    if (lastErr instanceof LegStopped && lastErr.reason === 'first_byte_timeout') {
      writeLocalReply(x.res, 504, 'upstream request timeout');
      return 504;
    }
    writeLocalReply(x.res, 503, `upstream connect error or disconnect/reset before headers. reset reason: ${connectErrorCode(lastErr) ?? (lastErr as Error)?.message}`);
    return 503;
  }
  d.metrics.upstreamTtfb.observe((performance.now() - leg.sentAt) / 1000);
  const respHeaders: Headers = new Map([[':status', [String(leg.status)]]]);
  for (const [k, v] of Object.entries(leg.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) respHeaders.set(k, Array.isArray(v) ? v : [String(v)]);
  let eppLive = session !== undefined;
  if (session && eppLive) {
    try {
      session.send({ response_headers: { headers: headerMap(respHeaders), end_of_stream: false } });
      const r = await session.next('response headers');
      if (r.immediate_response) {
        leg.stop(new LegStopped('peer_failed', 'EPP answered the response with an immediate response'));
        session.close();
        return relayImmediate(x.res, r.immediate_response);
      }
      d.metrics.rejectedHeaderMutations.inc(applyMutation(respHeaders, commonOf(r)?.header_mutation));
    } catch (err) {
      if (err instanceof InvalidHeaderMutation) {
        // As on the request: Envoy answers 500 whatever failure_mode_allow says.
        session.cancel();
        leg.stop(new LegStopped('peer_failed', 'EPP sent an invalid header mutation'));
        x.logger.warn({ err }, 'endpoint picker sent an invalid header mutation');
        writeLocalReply(x.res, 500, `ext_proc error: invalid header mutation (${err.message})`);
        return 500;
      }
      eppLive = false;
      session.cancel();
      d.metrics.eppFailures.inc({ stage: 'response headers' });
      if (!c.failureModeAllow) {
        leg.stop(new LegStopped('peer_failed', 'EPP failed'));
        writeLocalReply(x.res, 500, `ext_proc error: endpoint picker failed on the response (${(err as Error).message})`);
        return 500;
      }
    }
  }
  // The EPP may have set :status (Envoy applies it); it is the status line, never a header.
  const status = Number(respHeaders.get(':status')?.[0] ?? leg.status);
  respHeaders.delete(':status');
  const h: Record<string, string | string[]> = {};
  for (const [k, v] of respHeaders) h[k] = v.length === 1 ? v[0]! : v;
  x.res.writeHead(status, h);
  const streamToEpp = eppLive && session !== undefined && c.responseBodyMode === 'streamed';
  try {
    if (!streamToEpp) {
      session?.close();
      for (let chunk = await leg.read(); chunk !== null; chunk = await leg.read()) await write(x.res, chunk);
      x.res.end();
      return status;
    }
    await relayThroughEpp(x, d, leg, session!);
    return status;
  } catch (err) {
    session?.cancel();
    if (!x.res.destroyed) x.res.destroy();
    if (!(err instanceof LegStopped && err.reason === 'client_gone')) x.logger.warn({ err }, 'response relay failed');
    return x.signal.aborted ? 0 : status;
  }
}

async function write(res: ServerResponse, chunk: Buffer): Promise<void> {
  if (chunk.length === 0 || res.destroyed) return;
  if (!res.write(chunk)) await drainOrClose(res);
}

/**
 * Streams the upstream answer through the EPP: every chunk goes to the EPP, whose streamed chunks go to the client.
 * Chunks the EPP has not returned yet are kept. If the EPP fails: fail-closed stops at once, upstream leg and client
 * response (never terminated, so the client sees the failure; Envoy resets the stream); fail-open writes the kept
 * chunks first, then streams the rest itself, so nothing is lost or reordered (an SSE client stops reading at [DONE]).
 */
async function relayThroughEpp(x: Exchange, d: ProxyDeps, leg: UpstreamLeg, session: ExtProcSession): Promise<void> {
  const pending: Buffer[] = [];
  let upstreamDone = false;
  let eppFailed: Error | undefined;
  let takingOver: Promise<void> | undefined;
  /** Fail-open after an EPP failure: the chunks it kept go out first (once; every later write waits for them). */
  const takeOver = () =>
    (takingOver ??= (async () => {
      d.metrics.failOpen.inc();
      for (const p of pending.splice(0)) await write(x.res, p);
    })());
  const reader = (async () => {
    for (;;) {
      const r = await session.next('response body');
      const m = r.response_body?.response?.body_mutation as { streamed_response?: { body?: Buffer; end_of_stream?: boolean } } | undefined;
      const chunk = m?.streamed_response?.body ? Buffer.from(m.streamed_response.body) : Buffer.alloc(0);
      // Forget what the EPP has returned; what it returns is what the client gets.
      let n = chunk.length;
      while (n > 0 && pending.length > 0) {
        const head = pending[0]!;
        if (head.length <= n) {
          n -= head.length;
          pending.shift();
        } else {
          pending[0] = head.subarray(n);
          n = 0;
        }
      }
      await write(x.res, chunk);
      if (m?.streamed_response?.end_of_stream || (!m?.streamed_response && upstreamDone)) return;
    }
  })().catch(async (err: Error) => {
    eppFailed = err;
    d.metrics.eppFailures.inc({ stage: 'response body' });
    // Fail-closed: nothing more reaches the client; the relay below ends on the stopped leg.
    if (!d.config.failureModeAllow) leg.stop(new LegStopped('peer_failed', `EPP failed on the response body: ${err.message}`));
    else await takeOver();
  });
  for (let chunk = await leg.read(); chunk !== null; chunk = await leg.read()) {
    if (eppFailed) {
      await takeOver();
      await write(x.res, chunk);
      continue;
    }
    pending.push(chunk);
    session.send({ response_body: { body: chunk, end_of_stream: false } });
  }
  upstreamDone = true;
  if (!eppFailed) session.send({ response_body: { body: Buffer.alloc(0), end_of_stream: true } });
  await reader;
  if (eppFailed) {
    if (!d.config.failureModeAllow) throw eppFailed;
    await takeOver();
  } else {
    session.close();
  }
  x.res.end();
}

