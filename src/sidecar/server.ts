/**
 * The sidecar's HTTP surface for one data-parallel rank, on node:http. P/D routes read the routing headers and hand the
 * request to the connector; /health, /ready and /sidecar/metrics are the sidecar's own; every other method and path
 * is relayed to the local vLLM unchanged (its body read whole within the body bounds, as on every path, then sent on
 * without the client's KV transfer fields; the answer streamed).
 *
 * No web framework: fastify served the non-inference routes before, and it and the packages it loads were ~8 MB of
 * the sidecar's memory (issue 20: peak RSS against llm-d-router's Go sidecar). What fastify answered on those routes is
 * kept, byte for byte (status, headers, JSON bodies; test/sidecar/http-surface.test.ts):
 * - 503 with `Connection: close` to every request while the server closes;
 * - 404 for a method fastify does not route (GET, HEAD, TRACE, DELETE, OPTIONS, PATCH, PUT, POST and QUERY are routed);
 * - 400 for a request path with malformed percent-encoding;
 * - 415 for a body-carrying method whose Content-Type is not a valid media type, 400 for QUERY without one;
 * - 400 / 408 / 431 on a client error (unparsable request, request timeout, header overflow), as fastify's handler.
 * Paths are matched as fastify's router matched them: an absolute-form target's origin dropped, the path before `?`
 * or `#`, percent-decoded.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Dispatcher } from 'undici';
import { INFERENCE_PATHS, renderMetrics, requestIdOf, type ApiType, type Logger } from '../common/index.js';
import { answerInternalError } from './failures.js';
import { passThrough } from './passthrough.js';
import { handlePd } from './pd-handler.js';
import { expectContinue, settleUnreadBody } from './request-body.js';
import { RequestLog, track, type SidecarRank } from './tracking.js';

export type { SidecarRank } from './tracking.js';

/** A rank's server: listen once, close once (in-flight requests finish; new ones get 503 meanwhile). */
export interface SidecarServer {
  readonly server: Server;
  readonly log: Logger;
  listen(options: { host: string; port: number }): Promise<void>;
  close(): Promise<void>;
}

/**
 * Last resort for a request whose handler threw outside its own error handling: log it, answer 500 if nothing was
 * sent, else cut the connection so the client sees the failure.
 */
function answerUnexpected(rank: SidecarRank, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  rank.logger.error({ err, reqId: requestIdOf(req), path: req.url }, 'request handler failed');
  answerInternalError(res, err);
}

/** The five inference routes by path, for the fast path. */
const INFERENCE_ROUTES: ReadonlyMap<string, ApiType> = new Map(Object.entries(INFERENCE_PATHS));

/** The sidecar's own routes (GET and HEAD). */
type OwnRoute = 'health' | 'ready' | 'metrics';
const OWN_ROUTES: ReadonlyMap<string, OwnRoute> = new Map<string, OwnRoute>([
  ['/health', 'health'],
  ['/ready', 'ready'],
  ['/sidecar/metrics', 'metrics'],
]);

/** The methods fastify routes, with and without a request body (its defaults). */
const BODYLESS_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'TRACE']);
const BODY_METHODS: ReadonlySet<string> = new Set(['DELETE', 'OPTIONS', 'PATCH', 'PUT', 'POST', 'QUERY']);

/**
 * A request target as fastify's router (find-my-way) reads it for matching: an absolute-form `http(s)://host/` prefix
 * replaced by `/`, the path before the first `?` or `#`, percent-decoded. `path` keeps the query (error messages
 * quote it); `match` is undefined when the percent-encoding is malformed.
 */
function routingPath(url: string): { path: string; match: string | undefined } {
  const path = url.charCodeAt(0) === 47 ? url : url.replace(/^https?:\/\/.*?\//, '/');
  let end = path.length;
  const query = path.indexOf('?', 1);
  if (query !== -1) end = query;
  const hash = path.indexOf('#', 1);
  if (hash !== -1 && hash < end) end = hash;
  const part = end === path.length ? path : path.slice(0, end);
  if (!part.includes('%', 1)) return { path, match: part };
  let decoded: string;
  try {
    decoded = decodeURIComponent(part);
  } catch {
    return { path, match: undefined };
  }
  // The router keeps %2F, %3F, %23 and %25 encoded: such a path matches none of the sidecar's own routes.
  return { path, match: /%(2f|3f|23|25)/i.test(part) ? part : decoded };
}

/** RFC 9110 token characters, as fastify's content-type check reads them. */
const TYPE_NAME = /^[\w!#$%&'*+.^`|~-]+$/;
const SUBTYPE_NAME = /^[\w!#$%&'*+.^`|~-]+\s*$/;

/** Whether fastify took a Content-Type header value for a media type (`type/subtype`, then any parameters). */
function validContentType(value: string): boolean {
  if (value === '' || value === 'undefined') return false;
  const params = value.indexOf(';');
  const mediaType = (params === -1 ? value : value.slice(0, params)).toLowerCase();
  const slash = mediaType.indexOf('/');
  if (slash === -1) return false;
  return (
    TYPE_NAME.test(mediaType.slice(0, slash).trimStart()) && SUBTYPE_NAME.test(mediaType.slice(slash + 1).trimEnd())
  );
}

/** A JSON answer with fastify's headers (lower-case content-type and content-length). */
function sendJson(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}

/** fastify's error body for its own errors (code, status text, message). */
function sendFastifyError(res: ServerResponse, status: number, code: string, error: string, message: string): void {
  sendJson(res, status, JSON.stringify({ statusCode: status, code, error, message }));
}

/** fastify's answer to a client error on the socket (before any request object exists), and its trace log. */
function answerClientError(logger: Logger, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let status: number;
  let statusText: string;
  let body: string;
  let label: string;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    [status, statusText, label] = [408, 'Request Timeout', 'timeout'];
    body = `{"error":"${statusText}","message":"Client Timeout","statusCode":408}`;
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    [status, statusText, label] = [431, 'Request Header Fields Too Large', 'header_overflow'];
    body = `{"error":"${statusText}","message":"Exceeded maximum allowed HTTP header size","statusCode":431}`;
  } else {
    [status, statusText, label] = [400, 'Bad Request', 'error'];
    body = `{"error":"${statusText}","message":"Client Error","statusCode":400}`;
  }
  logger.trace({ err }, `client ${label}`);
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${statusText}\r\nContent-Length: ${body.length}\r\nContent-Type: application/json\r\n\r\n${body}`,
    );
  socket.destroy(err);
}

/** The addresses a listening server is reached at, as fastify logged them ("Server listening at ..."). */
function listenAddresses(address: AddressInfo, scheme: string): string[] {
  if (address.address.includes(':')) return [`${scheme}://[${address.address}]:${address.port}`];
  const hosts =
    address.address === '0.0.0.0'
      ? Object.values(networkInterfaces())
          .flatMap((list) => (list ?? []).filter((entry) => entry.family === 'IPv4'))
          .sort((entry) => (entry.internal ? -1 : 1))
          .map((entry) => entry.address)
      : [address.address];
  return hosts.map((host) => `${scheme}://${host}:${address.port}`);
}

export function buildSidecarServer(rank: SidecarRank, https?: { key: string; cert: string }): SidecarServer {
  let closing = false;
  const logger = rank.logger;

  const serveOwn = async (route: OwnRoute, res: ServerResponse): Promise<void> => {
    if (route === 'health') {
      res.writeHead(200, { 'content-length': '0' });
      res.end();
    } else if (route === 'ready') {
      const decoder = await checkDecoder(rank);
      const allowlist = rank.guard.ready();
      const ok = decoder === 'ok' && allowlist;
      sendJson(
        res,
        ok ? 200 : 503,
        JSON.stringify({
          status: ok ? 'ready' : 'not ready',
          decoder,
          ssrfAllowlist: rank.guard.mode === 'off' ? 'off' : allowlist ? 'synced' : 'not synced',
        }),
      );
    } else {
      const { contentType, body } = await renderMetrics([rank.metrics.registry]);
      res.writeHead(200, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    }
  };

  const passthrough = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const log = new RequestLog(logger, requestIdOf(req));
    const t = track(rank, res, 'none', log, 'passthrough');
    t.done('other', await passThrough(rank, req, t, log, rank.decoderOrigin, 'passthrough'));
  };

  /** Everything but an inference POST while open: fastify's routing, checks and answers, then the route. */
  const serveOther = (req: IncomingMessage, res: ServerResponse): Promise<void> | undefined => {
    const method = req.method ?? '';
    const url = req.url ?? '/';
    if (!BODYLESS_METHODS.has(method) && !BODY_METHODS.has(method)) {
      sendJson(
        res,
        404,
        JSON.stringify({ message: `Route ${method}:${url} not found`, error: 'Not Found', statusCode: 404 }),
      );
      return undefined;
    }
    const { path, match } = routingPath(url);
    if (match === undefined) {
      const body = `{"error":"Bad Request","code":"FST_ERR_BAD_URL","message":"'${path}' is not a valid url component","statusCode":400}`;
      res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      res.end(body);
      return undefined;
    }
    if (closing) {
      if (req.httpVersionMajor !== 2) res.setHeader('Connection', 'close');
      res.writeHead(503, { 'Content-Type': 'application/json', 'Content-Length': '80' });
      res.end('{"error":"Service Unavailable","message":"Service Unavailable","statusCode":503}');
      logger
        .child({ reqId: requestIdOf(req) })
        .info({ res: { statusCode: 503 } }, 'request aborted - refusing to accept new requests as server is closing');
      return undefined;
    }
    const own = method === 'GET' || method === 'HEAD' ? OWN_ROUTES.get(match) : undefined;
    if (own !== undefined) return serveOwn(own, res);
    if (BODY_METHODS.has(method)) {
      const contentType = req.headers['content-type'];
      if (method === 'QUERY' && contentType === undefined) {
        sendFastifyError(
          res,
          400,
          'FST_ERR_ROUTE_MISSING_CONTENT_TYPE',
          'Bad Request',
          "Method 'QUERY' must provide a 'Content-Type' header.",
        );
        return undefined;
      }
      if (contentType !== undefined && !validContentType(contentType)) {
        sendFastifyError(
          res,
          415,
          'FST_ERR_CTP_INVALID_MEDIA_TYPE',
          'Unsupported Media Type',
          'Unsupported Media Type',
        );
        return undefined;
      }
    }
    return passthrough(req, res);
  };

  const onRequest: RequestListener = (req, res) => {
    settleUnreadBody(req, res, rank.config.maxRequestBodySize, rank.config.requestBodyTimeout);
    if (req.method === 'POST' && !closing) {
      const url = req.url ?? '';
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      const api = INFERENCE_ROUTES.get(path);
      if (api !== undefined) {
        handlePd(rank, api, path, req, res).catch((err: unknown) => answerUnexpected(rank, req, res, err));
        return;
      }
    }
    serveOther(req, res)?.catch((err: unknown) => answerUnexpected(rank, req, res, err));
  };

  // eslint-disable-next-line no-restricted-syntax -- an https.Server is an http.Server for everything done with it here
  const server = https ? (createHttpsServer(https, onRequest) as unknown as Server) : createServer(onRequest);
  // Expect: 100-continue: "100 Continue" goes out when the body is first read (request-body.ts), not before every
  // such request as Node does by default, so a request refused first gets its final status without an upload.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    expectContinue(req);
    server.emit('request', req, res);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(logger, err, socket));
  // LLM requests can stream for minutes; timeouts are per stage inside the handlers, not per socket.
  server.keepAliveTimeout = 300_000;
  server.requestTimeout = 0;
  server.setTimeout(0);

  return {
    server,
    log: logger,
    listen: ({ host, port }) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          for (const address of listenAddresses(server.address() as AddressInfo, https ? 'https' : 'http'))
            logger.info(`Server listening at ${address}`);
          resolve();
        });
      }),
    close: async () => {
      closing = true;
      server.closeIdleConnections();
      if (!server.listening) return;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function checkDecoder(rank: SidecarRank): Promise<string> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), rank.config.readinessTimeout);
  try {
    const res = await (rank.agents.decode as Dispatcher).request({
      origin: rank.decoderOrigin,
      path: '/health',
      method: 'GET',
      signal: ac.signal,
    });
    await res.body.dump();
    return res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`;
  } catch (err) {
    return ac.signal.aborted
      ? `no answer within ${rank.config.readinessTimeout}ms`
      : `unreachable (${(err as { code?: string }).code ?? (err as Error).message})`;
  } finally {
    clearTimeout(timer);
  }
}
