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
 * The EPP may end the exchange with an immediate response at any time after routing (llm-d-router's flow-control
 * eviction answers 429 so): the upstream request is stopped, and the client gets that answer if its response has not
 * started, else its response is cut, as Envoy resets the stream.
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
import {
  envoyStatusNumber,
  structToJson,
  type CommonResponse,
  type HeaderValue,
  type ProcessingResponse,
} from '../common/envoy/ext-proc.js';
import {
  Cancellation,
  HOP_BY_HOP_HEADERS,
  LegStopped,
  UpstreamLeg,
  connectErrorCode,
  drainOrClose,
  type StopSignal,
} from '../common/index.js';
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
function toHeaders(pseudo: Record<string, string>, headers: IncomingHttpHeaders): Headers {
  const out: Headers = new Map(Object.entries(pseudo).map(([name, value]) => [name, [value]]));
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined) out.set(name, Array.isArray(value) ? [...value] : [value]);
  // The gateway answered the expectation itself (100 Continue) and has the body: like Envoy, it passes the header
  // neither to the EPP nor upstream (undici refuses to send it).
  out.delete('expect');
  return out;
}

function headerMap(headerMultiMap: Headers): { headers: HeaderValue[] } {
  const headers: HeaderValue[] = [];
  for (const [key, values] of headerMultiMap) for (const v of values) headers.push({ key, raw_value: Buffer.from(v) });
  return { headers };
}

function commonOf(result: ProcessingResponse): CommonResponse | undefined {
  return (
    result.request_headers?.response ??
    result.request_body?.response ??
    result.response_headers?.response ??
    result.response_body?.response
  );
}

/** Destinations from the envoy.lb dynamic metadata, else the x-gateway-destination-endpoint header. */
function destinations(meta: Record<string, unknown> | undefined, headerMultiMap: Headers): string[] {
  const lb = meta?.['envoy.lb'] as Record<string, unknown> | undefined;
  const fromMeta =
    typeof lb?.['x-gateway-destination-endpoint'] === 'string' ? lb['x-gateway-destination-endpoint'] : undefined;
  const value = fromMeta ?? headerMultiMap.get('x-gateway-destination-endpoint')?.[0] ?? '';
  return value
    .split(',')
    .map((text) => text.trim())
    .filter(Boolean);
}

function writeLocalReply(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) {
    if (!res.destroyed) res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function relayImmediate(res: ServerResponse, response: NonNullable<ProcessingResponse['immediate_response']>): number {
  const status = envoyStatusNumber(response.status?.code);
  const h: Headers = new Map();
  try {
    applyMutation(h, response.headers);
  } catch (err) {
    // Envoy logs a failed immediate-response mutation and sends the response without it.
    if (!(err instanceof InvalidHeaderMutation)) throw err;
    h.clear();
  }
  const body = response.body ? Buffer.from(response.body) : Buffer.alloc(0);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of h) headers[k] = v.length === 1 ? v[0] : v;
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
    const timer = setTimeout(
      () => done(new BodyTimeout(`request body made no progress for ${idleMs}ms (${size} bytes received)`)),
      idleMs,
    );
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        done(new RangeError(`request body exceeds ${limit} bytes`));
        return;
      }
      parts.push(chunk);
      timer.refresh();
    };
    const onEnd = () => done();
    const onClose = () => done(new Error('client closed the request'));
    body.on('data', onData).on('end', onEnd).on('error', done).on('close', onClose);
  });
}

/** Serves one exchange; returns the status sent to the client (0 if the client left). */
export async function proxyExchange(exchange: Exchange, proxyDeps: ProxyDeps): Promise<number> {
  const c = proxyDeps.config;
  const started = performance.now();
  let chunks: Buffer[];
  try {
    chunks = await readBody(exchange.body, c.maxRequestBodySize, c.requestBodyTimeout);
  } catch (err) {
    // The rest of the body is never read: answer, then close the connection.
    const status = err instanceof RangeError ? 413 : err instanceof BodyTimeout ? 408 : 0;
    if (status === 0) return 0;
    writeLocalReply(exchange.res, status, (err as Error).message, { connection: 'close' });
    exchange.res.once('finish', () => exchange.res.socket?.destroy());
    return status;
  }
  const original = {
    headers: toHeaders(
      {
        ':method': exchange.method,
        ':path': exchange.url,
        ':authority': exchange.headers.host ?? 'localhost',
        ':scheme': 'http',
      },
      exchange.headers,
    ),
    chunks,
  };
  const asked = await askEppReplicas(exchange, proxyDeps, original.headers, chunks, started);
  if ('relayed' in asked) return asked.relayed;
  if ('failed' in asked) {
    const err = asked.failed;
    if (exchange.signal.aborted) return 0;
    const stage = err instanceof EppUnavailable ? err.stage : 'connect';
    proxyDeps.metrics.eppFailures.inc({ stage });
    exchange.logger.warn({ err, stage }, 'endpoint picker failed');
    if (!c.failureModeAllow) {
      writeLocalReply(exchange.res, 500, `ext_proc error: endpoint picker unavailable (${(err as Error).message})`);
      return 500;
    }
    const fallback = proxyDeps.nextFallback();
    if (!fallback) {
      writeLocalReply(
        exchange.res,
        503,
        'no healthy upstream: endpoint picker unavailable and no --fallback-endpoints configured',
      );
      return 503;
    }
    proxyDeps.metrics.failOpen.inc();
    // Without the EPP nobody vouches for the client's routing headers: they go, as the EPP would have removed them.
    const headers = new Map(original.headers);
    for (const h of ROUTING_HEADERS) headers.delete(h);
    return forward(exchange, proxyDeps, headers, Buffer.concat(original.chunks), [fallback], undefined);
  }
  const { session, headers, destination, body } = asked;
  if (destination.length === 0) {
    session.close();
    writeLocalReply(exchange.res, 503, 'no healthy upstream: the endpoint picker named no destination');
    return 503;
  }
  return forward(exchange, proxyDeps, headers, body, destination, session);
}

type Routed = { session: ExtProcSession; headers: Headers; destination: string[]; body: Buffer };
/** A route, an immediate response to relay, or a reply already written (an invalid header mutation: 500). */
type EppAnswer =
  | Routed
  | {
      immediate: NonNullable<ProcessingResponse['immediate_response']>;
      session: ExtProcSession;
      stopWatching: () => void;
    }
  | { answered: number };

/** An immediate response of a follower under leader election: another replica may be the leader. */
function isNotLeader(response: NonNullable<ProcessingResponse['immediate_response']>): boolean {
  if (envoyStatusNumber(response.status?.code) !== 503) return false;
  const h: Headers = new Map();
  try {
    applyMutation(h, response.headers);
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
async function askEppReplicas(
  exchange: Exchange,
  proxyDeps: ProxyDeps,
  original: Headers,
  chunks: Buffer[],
  started: number,
): Promise<Routed | { relayed: number } | { failed: unknown }> {
  const deadline = started + proxyDeps.config.eppRetryTimeout;
  let backoff = 50;
  let lastFailure: unknown;
  let lastFollower: NonNullable<ProcessingResponse['immediate_response']> | undefined;
  for (;;) {
    for (const i of proxyDeps.epps.order()) {
      if (exchange.signal.aborted) return { failed: new Error('client gone') };
      if (lastFailure !== undefined || lastFollower)
        proxyDeps.metrics.eppRetries.inc({ reason: lastFollower ? 'not_leader' : 'unavailable' });
      let answer: EppAnswer;
      try {
        answer = await askEpp(
          exchange,
          proxyDeps,
          proxyDeps.epps.open(i),
          new Map([...original].map(([name, values]) => [name, [...values]])),
          chunks,
          started,
        );
      } catch (err) {
        if (exchange.signal.aborted) return { failed: err };
        lastFailure = err;
        lastFollower = undefined;
        if (proxyDeps.epps.addresses.length > 1)
          exchange.logger.debug(
            { epp: proxyDeps.epps.addresses[i], err: (err as Error).message },
            'EPP replica unavailable; asking the next',
          );
        continue;
      }
      if ('answered' in answer) {
        proxyDeps.epps.answered(i);
        return { relayed: answer.answered };
      }
      if ('immediate' in answer && isNotLeader(answer.immediate)) {
        answer.stopWatching();
        answer.session.close();
        lastFollower = answer.immediate;
        lastFailure = undefined;
        continue;
      }
      proxyDeps.epps.answered(i);
      if ('immediate' in answer) {
        answer.stopWatching();
        answer.session.close();
        return { relayed: relayImmediate(exchange.res, answer.immediate) };
      }
      return answer;
    }
    if (performance.now() + backoff > deadline) break;
    await pause(backoff, exchange.signal);
    backoff = Math.min(1000, backoff * 2);
  }
  if (lastFollower && lastFailure === undefined) return { relayed: relayImmediate(exchange.res, lastFollower) };
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
async function askEpp(
  exchange: Exchange,
  proxyDeps: ProxyDeps,
  extProcSession: ExtProcSession,
  headers: Headers,
  chunks: Buffer[],
  started: number,
): Promise<EppAnswer> {
  const c = proxyDeps.config;
  const onAbort = () => extProcSession.cancel();
  const stopWatching = () => exchange.signal.removeEventListener('abort', onAbort);
  exchange.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const hasBody = chunks.length > 0;
    extProcSession.send({
      request_headers: { headers: headerMap(headers), end_of_stream: !hasBody },
      protocol_config: {
        request_body_mode: 'FULL_DUPLEX_STREAMED',
        response_body_mode: c.responseBodyMode === 'streamed' ? 'FULL_DUPLEX_STREAMED' : 'NONE',
      },
    } as never);
    chunks.forEach((chunk, i) =>
      extProcSession.send({ request_body: { body: chunk, end_of_stream: i === chunks.length - 1 } }),
    );
    const first = await extProcSession.next('request headers');
    proxyDeps.metrics.eppDecision.observe((performance.now() - started) / 1000);
    if (first.immediate_response) return { immediate: first.immediate_response, session: extProcSession, stopWatching };
    const common = commonOf(first);
    try {
      proxyDeps.metrics.rejectedHeaderMutations.inc(applyMutation(headers, common?.header_mutation));
    } catch (err) {
      if (!(err instanceof InvalidHeaderMutation)) throw err;
      // Envoy closes the ext_proc stream and answers 500, failure_mode_allow or not.
      stopWatching();
      extProcSession.cancel();
      exchange.logger.warn({ err }, 'endpoint picker sent an invalid header mutation');
      writeLocalReply(exchange.res, 500, `ext_proc error: invalid header mutation (${err.message})`);
      return { answered: 500 };
    }
    const destination = destinations(
      first.dynamic_metadata ? structToJson(first.dynamic_metadata) : undefined,
      headers,
    );
    // The EPP re-emits the request body (possibly rewritten) as streamed chunks.
    const body: Buffer[] = [];
    if (hasBody) {
      for (;;) {
        const r = await extProcSession.next('request body');
        if (r.immediate_response) return { immediate: r.immediate_response, session: extProcSession, stopWatching };
        const mutation = r.request_body?.response?.body_mutation as
          { streamed_response?: { body?: Buffer; end_of_stream?: boolean } } | undefined;
        if (mutation?.streamed_response) {
          if (mutation.streamed_response.body) body.push(Buffer.from(mutation.streamed_response.body));
          if (mutation.streamed_response.end_of_stream) break;
        } else break;
      }
    }
    return { session: extProcSession, headers, destination, body: hasBody ? Buffer.concat(body) : Buffer.alloc(0) };
  } catch (err) {
    stopWatching();
    extProcSession.cancel();
    throw err;
  }
}

/** Sends the request upstream (trying destinations in order on connect failure) and relays the answer. */
async function forward(
  exchange: Exchange,
  proxyDeps: ProxyDeps,
  headers: Headers,
  body: Buffer,
  destinations: string[],
  session: ExtProcSession | undefined,
): Promise<number> {
  const c = proxyDeps.config;
  const out: Record<string, string | string[]> = {};
  // Pseudo-headers are never headers: :path is the request's path, the others are not sent (HTTP/1.1 upstream).
  for (const [k, v] of headers) if (!HOP_BY_HOP.has(k) && !k.startsWith(':')) out[k] = v.length === 1 ? v[0] : v;
  let leg: UpstreamLeg | undefined;
  let lastErr: unknown;
  // The EPP ending the exchange on its own (an eviction) stops the upstream request, opening or open.
  const endedByEpp = new Cancellation();
  session?.watchUnsolicited(() => {
    const stop = new LegStopped('peer_failed', 'the EPP ended the exchange with an immediate response');
    endedByEpp.abort(stop);
    leg?.stop(stop);
  });
  for (const dest of destinations) {
    try {
      leg = await UpstreamLeg.open({
        agent: proxyDeps.agent,
        origin: `http://${dest}`,
        method: exchange.method,
        path: headers.get(':path')?.[0] ?? exchange.url,
        headers: out,
        body: body.length > 0 || (exchange.method !== 'GET' && exchange.method !== 'HEAD') ? body : undefined,
        clientSignal: exchange.signal,
        peerSignal: endedByEpp,
        firstByteTimeoutMs: c.upstreamFirstByteTimeout,
        idleTimeoutMs: c.upstreamIdleTimeout,
        label: `upstream ${dest}`,
      });
      break;
    } catch (err) {
      lastErr = err;
      if (err instanceof LegStopped || exchange.signal.aborted) break;
      if (!connectErrorCode(err)) break;
      exchange.logger.warn(
        { destination: dest, code: connectErrorCode(err) },
        'upstream connect failed; trying the next destination',
      );
    }
  }
  if (!leg) {
    if (endedByEpp.aborted && session && !exchange.signal.aborted) {
      const answer = await session.next('immediate response').catch(() => undefined);
      session.close();
      if (answer?.immediate_response) return relayImmediate(exchange.res, answer.immediate_response);
    }
    session?.cancel();
    if (exchange.signal.aborted) return 0;
    if (lastErr instanceof LegStopped && lastErr.reason === 'first_byte_timeout') {
      writeLocalReply(exchange.res, 504, 'upstream request timeout');
      return 504;
    }
    writeLocalReply(
      exchange.res,
      503,
      `upstream connect error or disconnect/reset before headers. reset reason: ${connectErrorCode(lastErr) ?? (lastErr as Error)?.message}`,
    );
    return 503;
  }
  proxyDeps.metrics.upstreamTtfb.observe((performance.now() - leg.sentAt) / 1000);
  const respHeaders: Headers = new Map([[':status', [String(leg.status)]]]);
  for (const [name, value] of Object.entries(leg.headers))
    if (value !== undefined && !HOP_BY_HOP.has(name)) respHeaders.set(name, Array.isArray(value) ? value : [value]);
  let eppLive = session !== undefined;
  if (session && eppLive) {
    try {
      session.send({ response_headers: { headers: headerMap(respHeaders), end_of_stream: false } });
      const r = await session.next('response headers');
      if (r.immediate_response) {
        leg.stop(new LegStopped('peer_failed', 'EPP answered the response with an immediate response'));
        session.close();
        return relayImmediate(exchange.res, r.immediate_response);
      }
      proxyDeps.metrics.rejectedHeaderMutations.inc(applyMutation(respHeaders, commonOf(r)?.header_mutation));
    } catch (err) {
      if (err instanceof InvalidHeaderMutation) {
        // As on the request: Envoy answers 500 whatever failure_mode_allow says.
        session.cancel();
        leg.stop(new LegStopped('peer_failed', 'EPP sent an invalid header mutation'));
        exchange.logger.warn({ err }, 'endpoint picker sent an invalid header mutation');
        writeLocalReply(exchange.res, 500, `ext_proc error: invalid header mutation (${err.message})`);
        return 500;
      }
      eppLive = false;
      session.cancel();
      proxyDeps.metrics.eppFailures.inc({ stage: 'response headers' });
      if (!c.failureModeAllow) {
        leg.stop(new LegStopped('peer_failed', 'EPP failed'));
        writeLocalReply(
          exchange.res,
          500,
          `ext_proc error: endpoint picker failed on the response (${(err as Error).message})`,
        );
        return 500;
      }
    }
  }
  // The EPP may have set :status (Envoy applies it); it is the status line, never a header.
  const status = Number(respHeaders.get(':status')?.[0] ?? leg.status);
  respHeaders.delete(':status');
  const h: Record<string, string | string[]> = {};
  for (const [k, v] of respHeaders) h[k] = v.length === 1 ? v[0] : v;
  exchange.res.writeHead(status, h);
  const streamToEpp = eppLive && session !== undefined && c.responseBodyMode === 'streamed';
  try {
    if (!streamToEpp) {
      session?.close();
      for (let chunk = await leg.read(); chunk !== null; chunk = await leg.read()) await write(exchange.res, chunk);
      exchange.res.end();
      return status;
    }
    await relayThroughEpp(exchange, proxyDeps, leg, session);
    return status;
  } catch (err) {
    session?.cancel();
    if (!exchange.res.destroyed) exchange.res.destroy();
    if (!(err instanceof LegStopped && err.reason === 'client_gone'))
      exchange.logger.warn({ err }, 'response relay failed');
    return exchange.signal.aborted ? 0 : status;
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
async function relayThroughEpp(
  exchange: Exchange,
  proxyDeps: ProxyDeps,
  leg: UpstreamLeg,
  session: ExtProcSession,
): Promise<void> {
  const pending: Buffer[] = [];
  let upstreamDone = false;
  let eppFailed: Error | undefined;
  let takingOver: Promise<void> | undefined;
  /** Fail-open after an EPP failure: the chunks it kept go out first (once; every later write waits for them). */
  const takeOver = () =>
    (takingOver ??= (async () => {
      proxyDeps.metrics.failOpen.inc();
      for (const p of pending.splice(0)) await write(exchange.res, p);
    })());
  const reader = (async () => {
    for (;;) {
      const r = await session.next('response body');
      if (r.immediate_response) {
        // The response has started: it is cut (Envoy resets the stream), whatever failure_mode_allow says.
        leg.stop(new LegStopped('peer_failed', 'the EPP ended the exchange with an immediate response'));
        return;
      }
      const m = r.response_body?.response?.body_mutation as
        { streamed_response?: { body?: Buffer; end_of_stream?: boolean } } | undefined;
      const chunk = m?.streamed_response?.body ? Buffer.from(m.streamed_response.body) : Buffer.alloc(0);
      // Forget what the EPP has returned; what it returns is what the client gets.
      let n = chunk.length;
      while (n > 0 && pending.length > 0) {
        const head = pending[0];
        if (head.length <= n) {
          n -= head.length;
          pending.shift();
        } else {
          pending[0] = head.subarray(n);
          n = 0;
        }
      }
      await write(exchange.res, chunk);
      if (m?.streamed_response?.end_of_stream || (!m?.streamed_response && upstreamDone)) return;
    }
  })().catch(async (err: unknown) => {
    eppFailed = err instanceof Error ? err : new Error(String(err));
    proxyDeps.metrics.eppFailures.inc({ stage: 'response body' });
    // Fail-closed: nothing more reaches the client; the relay below ends on the stopped leg.
    if (!proxyDeps.config.failureModeAllow)
      leg.stop(new LegStopped('peer_failed', `EPP failed on the response body: ${eppFailed.message}`));
    else await takeOver();
  });
  for (let chunk = await leg.read(); chunk !== null; chunk = await leg.read()) {
    if (eppFailed) {
      await takeOver();
      await write(exchange.res, chunk);
      continue;
    }
    pending.push(chunk);
    session.send({ response_body: { body: chunk, end_of_stream: false } });
  }
  upstreamDone = true;
  if (!eppFailed) session.send({ response_body: { body: Buffer.alloc(0), end_of_stream: true } });
  await reader;
  if (eppFailed) {
    if (!proxyDeps.config.failureModeAllow) throw eppFailed;
    await takeOver();
  } else {
    session.close();
  }
  exchange.res.end();
}
