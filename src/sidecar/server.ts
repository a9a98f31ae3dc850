/**
 * The sidecar's HTTP surface for one data-parallel rank. P/D routes read the routing headers and hand the request to
 * the connector; every other method and path is relayed to the local vLLM unchanged (its body read whole within the
 * body bounds, as on every path, then sent on without the client's KV transfer fields; the answer streamed).
 *
 * The five inference routes are the hot path: their POSTs go straight from Node's HTTP server to the P/D handler,
 * before fastify's routing, hooks and per-request objects (about a tenth of the sidecar's CPU per request). Fastify
 * serves everything else (health, readiness, metrics, passthrough), and the inference routes too while the server
 * is closing, so they get its 503 like every other route.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import { INFERENCE_PATHS, fastifyBaseOptions, renderMetrics, requestIdOf, type ApiType } from '../common/index.js';
import { answerInternalError } from './failures.js';
import { passThrough } from './passthrough.js';
import { handlePd } from './pd-handler.js';
import { expectContinue, settleUnreadBody } from './request-body.js';
import { RequestLog, track, type SidecarRank } from './tracking.js';

export type { SidecarRank } from './tracking.js';

/**
 * Last resort for a fast-path request whose handler threw outside its own error handling (fastify did this for routes
 * before): log it, answer 500 if nothing was sent, else cut the connection so the client sees the failure.
 */
function answerUnexpected(rank: SidecarRank, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  rank.logger.error({ err, reqId: requestIdOf(req), path: req.url }, 'inference request handler failed');
  answerInternalError(res, err);
}

/**
 * The sidecar's fastify instances, without fastify's JSON-schema compilers: no route here has a schema, and the default
 * compilers load ajv, ajv-formats, fast-uri and fast-json-stringify when the instance is built (~100 modules, half of
 * what fastify loads; ~4 MB of the sidecar's memory). A schema added later fails loudly instead of going unchecked.
 */
export const SIDECAR_FASTIFY_OPTIONS = {
  schemaController: {
    compilersFactory: {
      buildValidator: noSchemaCompilers,
      buildSerializer: noSchemaCompilers,
    },
  },
};
function noSchemaCompilers(): never {
  throw new Error('the sidecar compiles no JSON schemas (SIDECAR_FASTIFY_OPTIONS)');
}

/** The five inference routes by path, for the fast path. */
const INFERENCE_ROUTES: ReadonlyMap<string, ApiType> = new Map(Object.entries(INFERENCE_PATHS));

/**
 * The HTTP(S) server for a rank: POSTs to the inference routes go to the P/D handler directly, everything else to
 * fastify's handler. Set up as fastify sets up its own server (keep-alive and request timeouts from its options).
 */
function serverWithFastPath(
  rank: SidecarRank,
  https: { key: string; cert: string } | undefined,
  isClosing: () => boolean,
) {
  return (
    fastifyHandler: RequestListener,
    opts: {
      keepAliveTimeout?: number;
      requestTimeout?: number;
      connectionTimeout?: number;
      maxRequestsPerSocket?: number;
    },
  ): Server => {
    const onRequest: RequestListener = (req, res) => {
      settleUnreadBody(req, res, rank.config.maxRequestBodySize, rank.config.requestBodyTimeout);
      if (req.method === 'POST' && !isClosing()) {
        const url = req.url ?? '';
        const q = url.indexOf('?');
        const path = q < 0 ? url : url.slice(0, q);
        const api = INFERENCE_ROUTES.get(path);
        if (api !== undefined) {
          handlePd(rank, api, path, req, res).catch((err: unknown) => answerUnexpected(rank, req, res, err));
          return;
        }
      }
      fastifyHandler(req, res);
    };
    // eslint-disable-next-line no-restricted-syntax -- fastify's serverFactory type wants an http.Server; an https.Server serves every call fastify makes
    const server = https ? (createHttpsServer(https, onRequest) as unknown as Server) : createServer(onRequest);
    // Expect: 100-continue: "100 Continue" goes out when the body is first read (request-body.ts), not before every
    // such request as Node does by default, so a request refused first gets its final status without an upload.
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      expectContinue(req);
      server.emit('request', req, res);
    });
    if (opts.keepAliveTimeout !== undefined) server.keepAliveTimeout = opts.keepAliveTimeout;
    if (opts.requestTimeout !== undefined) server.requestTimeout = opts.requestTimeout;
    if (opts.connectionTimeout !== undefined) server.setTimeout(opts.connectionTimeout);
    if (opts.maxRequestsPerSocket !== undefined && opts.maxRequestsPerSocket > 0)
      server.maxRequestsPerSocket = opts.maxRequestsPerSocket;
    return server;
  };
}

export function buildSidecarServer(rank: SidecarRank, https?: { key: string; cert: string }): FastifyInstance {
  let closing = false;
  // eslint-disable-next-line no-restricted-syntax -- the options add serverFactory, which fastify's overloads do not type together with an https server
  const app = Fastify({
    ...fastifyBaseOptions({ logger: rank.logger, bodyLimit: rank.config.maxRequestBodySize }),
    ...SIDECAR_FASTIFY_OPTIONS,
    serverFactory: serverWithFastPath(rank, https, () => closing),
    // Not used to create the server (the factory does), but fastify names the scheme in its listen log from it.
    ...(https ? { https } : {}),
  } as ReturnType<typeof fastifyBaseOptions>) as unknown as FastifyInstance;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.removeAllContentTypeParsers();
  // Bodies stay streams: every path reads them itself, within its bounds (request-body.ts).
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.get('/health', async (_req, reply) => reply.code(200).send());
  app.get('/ready', async (_req, reply) => {
    const decoder = await checkDecoder(rank);
    const allowlist = rank.guard.ready();
    const ok = decoder === 'ok' && allowlist;
    return reply.code(ok ? 200 : 503).send({
      status: ok ? 'ready' : 'not ready',
      decoder,
      ssrfAllowlist: rank.guard.mode === 'off' ? 'off' : allowlist ? 'synced' : 'not synced',
    });
  });
  app.get('/sidecar/metrics', async (_req, reply) => {
    const { contentType, body } = await renderMetrics([rank.metrics.registry]);
    return reply.header('content-type', contentType).send(body);
  });
  // Reached through fastify only while closing (fastify answers 503 first) or through app.inject().
  for (const [path, api] of INFERENCE_ROUTES) {
    app.post(path, (request, reply) => {
      reply.hijack();
      return handlePd(rank, api, path, request.raw, reply.raw);
    });
  }
  const passthrough = async (request: FastifyRequest, reply: FastifyReply) => {
    reply.hijack();
    const log = new RequestLog(rank.logger, request.id);
    const t = track(rank, reply.raw, 'none', log, 'passthrough');
    t.done('other', await passThrough(rank, request.raw, t, log, rank.decoderOrigin, 'passthrough'));
  };
  app.all('/*', passthrough);
  app.all('/', passthrough);
  return app;
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
