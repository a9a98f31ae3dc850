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
import { randomInt } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { Cancellation, INFERENCE_PATHS, fastifyBaseOptions, parseTarget, renderMetrics, requestIdOf, type ApiType } from '../common/index.js';
import { CONNECTOR_REGISTRY, type PdContext } from './connectors/index.js';
import { answerLegFailure, runDecode } from './connectors/context.js';
import { writeJsonError, writeText } from './errors.js';
import { parseJsonObject } from './json-body.js';
import { clientTransferFields } from './client-kv-params.js';
import { BodyError, closeAfterAnswer, drainBody, expectContinue, hasBody, readBody, settleUnreadBody } from './request-body.js';
import type { Outcome, SidecarMetrics } from './metrics.js';
import type { SidecarConfig } from './options.js';
import type { TargetGuard } from './ssrf-guard.js';
import { forwardHeaders, newTraceparent, prefillCandidates, type UpstreamAgents } from './upstream.js';
import { UpstreamLeg } from '../common/upstream-leg.js';
import { DATA_PARALLEL_HOST_PORT, PREFILLER_HOST_PORT, PREFILLER_URL } from '../common/pd-contract.js';

export interface SidecarRank {
  rank: number;
  config: SidecarConfig;
  /** http(s)://host:port of this rank's vLLM. */
  decoderOrigin: string;
  /** Rank 0 only: `POD_IP:port+r` -> rank r's decoder origin (deprecated x-data-parallel-host-port). */
  dataParallelRoutes?: ReadonlyMap<string, string>;
  agents: UpstreamAgents;
  metrics: SidecarMetrics;
  guard: TargetGuard;
  logger: Logger;
  /** The deprecation of x-data-parallel-host-port has been logged (once per rank). */
  warnedDataParallelHeader?: boolean;
}

interface Tracked {
  res: ServerResponse;
  /** Stopped when the client disconnects before its answer is complete. */
  signal: Cancellation;
  start: number;
  done: (path: string, outcome: Outcome) => void;
}

/**
 * Ties a stop signal to the client connection and counts the request once it ends. Only inference requests count as
 * requests (in flight, by outcome, and in the latency histograms); passthrough traffic (the EPP scrapes vLLM's
 * /metrics through the sidecar every 50 ms) has its own counter, or it would outnumber the requests it measures.
 */
function track(r: SidecarRank, res: ServerResponse, connector: string, log: RequestLog, kind: 'inference' | 'passthrough'): Tracked {
  const signal = new Cancellation();
  res.once('close', () => {
    if (!res.writableFinished) signal.abort();
  });
  const inference = kind === 'inference';
  if (inference) r.metrics.inflight.inc();
  let counted = false;
  const start = performance.now();
  return {
    res,
    signal,
    start,
    done: (path, outcome) => {
      if (counted) return;
      counted = true;
      if (inference) {
        r.metrics.inflight.dec();
        r.metrics.requests.inc({ path, connector, outcome });
      } else r.metrics.passthroughRequests.inc({ outcome });
      if (log.debug) log.logger.debug({ path, outcome, ms: Math.round(performance.now() - start) }, 'request done');
    },
  };
}

/**
 * The request's logger, a child carrying its id, made on first use: most requests log nothing, and a pino child per
 * request is a cost the hot path does not need.
 */
class RequestLog {
  private child?: Logger;
  readonly debug: boolean;

  constructor(
    private readonly base: Logger,
    readonly requestId: string,
  ) {
    this.debug = base.isLevelEnabled('debug');
  }

  get logger(): Logger {
    return (this.child ??= this.base.child({ reqId: this.requestId }));
  }
}

function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? '';
}

function firstHeader(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/** Decoder origin for this request: the rank named by the deprecated x-data-parallel-host-port header, if any. */
function decoderFor(r: SidecarRank, req: IncomingMessage): { origin?: string; unknownRank?: string } {
  const v = firstHeader(req.headers[DATA_PARALLEL_HOST_PORT])?.trim();
  if (!v || !r.dataParallelRoutes) return { origin: r.decoderOrigin };
  if (!r.warnedDataParallelHeader) {
    r.warnedDataParallelHeader = true;
    r.logger.warn({ header: v }, 'x-data-parallel-host-port is deprecated; use one target port per data-parallel rank (logged once)');
  }
  const origin = r.dataParallelRoutes.get(v);
  return origin ? { origin } : { unknownRank: v };
}

/** One inference request (POST to one of the INFERENCE_PATHS, `path` without its query) on the raw Node objects. */
async function handlePd(r: SidecarRank, api: ApiType, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const c = r.config;
  const log = new RequestLog(r.logger, requestIdOf(req));
  const t = track(r, res, c.kvConnector, log, 'inference');
  const dp = decoderFor(r, req);
  if (dp.unknownRank !== undefined) {
    await answerBeforeBody(r, req, res, () => res.writeHead(400).end());
    return t.done(path, 'client_error');
  }
  const decoderOrigin = dp.origin!;
  const candidates = prefillCandidates(req.headers[PREFILLER_HOST_PORT] ?? req.headers[PREFILLER_URL]);
  if (candidates.length === 0) {
    // Local prefill: the body goes to the decoder byte for byte (without the client's KV transfer fields, if any).
    r.metrics.modes.inc({ connector: c.kvConnector, mode: 'local' });
    const outcome = await relayRaw(r, req, t, log, decoderOrigin, 'local');
    return t.done(path, outcome);
  }
  const chosen = c.enablePrefillerSampling ? candidates[randomInt(0, candidates.length)]! : candidates[0]!;
  const target = parseTarget(chosen);
  if (!target) {
    // The value (the EPP's, or a client's) goes to the log, not back to the client.
    log.logger.warn({ value: chosen.slice(0, 256) }, 'invalid x-prefiller-host-port value');
    await answerBeforeBody(r, req, res, () => writeJsonError(res, 400, 'invalid x-prefiller-host-port header: expected host:port'));
    return t.done(path, 'client_error');
  }
  if (!r.guard.allowed(target.host, target.port)) {
    r.metrics.ssrfDenied.inc();
    log.logger.warn(
      { target: target.hostPort, clientIP: clientAddress(req), userAgent: req.headers['user-agent'], requestPath: path, allowlistReady: r.guard.ready() },
      'SSRF protection: prefill target not in allowlist',
    );
    await answerBeforeBody(r, req, res, () => writeText(res, 403, 'Forbidden: prefill target not allowed by SSRF protection'));
    return t.done(path, 'denied');
  }
  const read = await readOrAnswer(r, req, res);
  if (typeof read === 'string') return t.done(path, read);
  const parsed = parseJsonObject(read, c.maxJsonDepth);
  if ('error' in parsed) {
    writeJsonError(res, 400, parsed.error, 'BadRequestError');
    return t.done(path, 'client_error');
  }
  let body = parsed.value;
  let rawBody = read;
  // The client's own transfer fields never reach a model server; every leg is built from the body without them.
  const stripped = clientTransferFields(c.kvConnector).strip(body);
  if (stripped) {
    body = stripped;
    rawBody = Buffer.from(JSON.stringify(stripped));
    log.logger.info({ fields: clientTransferFields(c.kvConnector).fields }, 'removed the client\'s KV transfer fields from the request body');
  }
  const incomingTrace = req.headers.traceparent;
  const ctx: PdContext = {
    requestId: log.requestId,
    traceparent: typeof incomingTrace === 'string' ? incomingTrace : newTraceparent(),
    api,
    method: 'POST',
    url: req.url ?? path,
    headers: req.headers,
    clientAddress: clientAddress(req),
    body,
    rawBody,
    res,
    signal: t.signal,
    target,
    decoderOrigin,
    agents: r.agents,
    config: c,
    metrics: r.metrics,
    get logger() {
      return log.logger;
    },
    timings: { start: t.start, prefillMs: 0, decodeTtfbMs: 0 },
  };
  let outcome: Outcome;
  try {
    outcome = await CONNECTOR_REGISTRY[c.kvConnector].handle(ctx);
  } catch (err) {
    log.logger.error({ err }, 'P/D handler failed');
    writeJsonError(res, 500, `internal error: ${(err as Error).message}`, 'InternalServerError');
    outcome = 'upstream_error';
  }
  t.done(path, outcome);
}

/**
 * Answers a request refused before its body was read: the body is drained first (within its bounds) so the
 * connection can be reused, or the connection is closed after the answer.
 */
async function answerBeforeBody(r: SidecarRank, req: IncomingMessage, res: ServerResponse, answer: () => void): Promise<void> {
  const drained = await drainBody(req, r.config.maxRequestBodySize, r.config.requestBodyTimeout);
  if (!drained) closeAfterAnswer(req, res);
  answer();
}

/** Reads the request body within its bounds; when it cannot, answers (413, 408) and returns the outcome instead. */
async function readOrAnswer(r: SidecarRank, req: IncomingMessage, res: ServerResponse): Promise<Buffer | Outcome> {
  try {
    return await readBody(req, res, r.config.maxRequestBodySize, r.config.requestBodyTimeout);
  } catch (err) {
    if (!(err instanceof BodyError)) throw err;
    if (err.kind === 'aborted') {
      r.metrics.clientAborts.inc({ stage: 'request_body' });
      return 'aborted';
    }
    // The rest of the upload is not read: the connection closes after the answer.
    closeAfterAnswer(req, res);
    if (err.kind === 'too_large') {
      writeJsonError(res, 413, err.message, 'RequestTooLarge');
      return 'client_error';
    }
    r.metrics.timeouts.inc({ stage: 'request_body' });
    writeJsonError(res, 408, err.message, 'RequestTimeout');
    return 'timeout';
  }
}

/** Sends the request to the decoder as it came (its body read whole first) and relays the answer unchanged. */
async function relayRaw(r: SidecarRank, req: IncomingMessage, t: Tracked, log: RequestLog, origin: string, mode: 'local' | 'passthrough'): Promise<Outcome> {
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const ctx = {
    requestId: log.requestId,
    method,
    url,
    headers: req.headers,
    clientAddress: clientAddress(req),
    res: t.res,
    signal: t.signal,
    decoderOrigin: origin,
    agents: r.agents,
    config: r.config,
    metrics: r.metrics,
    get logger() {
      return log.logger;
    },
    timings: { start: t.start, prefillMs: 0, decodeTtfbMs: 0 },
  } as unknown as PdContext;
  let body: Buffer | undefined;
  if (hasBody(req)) {
    const read = await readOrAnswer(r, req, t.res);
    if (typeof read === 'string') return read;
    // Byte for byte, unless the client's KV transfer fields had to be removed.
    const kept = clientTransferFields(r.config.kvConnector).stripRaw(read, r.config.maxJsonDepth);
    if ('error' in kept) {
      writeJsonError(t.res, 400, kept.error, 'BadRequestError');
      return 'client_error';
    }
    if (kept.removed) log.logger.info({ mode }, 'removed the client\'s KV transfer fields from the request body');
    body = kept.bytes;
  }
  let leg: UpstreamLeg;
  try {
    leg = await UpstreamLeg.open({
      agent: r.agents.decode as Dispatcher,
      origin,
      method,
      path: url,
      headers: forwardHeaders(req.headers, { requestId: log.requestId, dropHost: false, clientAddress: ctx.clientAddress }),
      body,
      clientSignal: t.signal,
      firstByteTimeoutMs: r.config.decodeFirstByteTimeout,
      idleTimeoutMs: r.config.decodeIdleTimeout,
      label: 'decode',
    });
  } catch (err) {
    return answerLegFailure(ctx, err, 'decode', false);
  }
  return runDecode(ctx, { body: '', mode, leg });
}

/**
 * Last resort for a fast-path request whose handler threw outside its own error handling (fastify did this for routes
 * before): log it, answer 500 if nothing was sent, else cut the connection so the client sees the failure.
 */
function answerUnexpected(r: SidecarRank, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  r.logger.error({ err, reqId: requestIdOf(req), path: req.url }, 'inference request handler failed');
  if (!res.headersSent && !res.destroyed) writeJsonError(res, 500, `internal error: ${(err as Error)?.message ?? String(err)}`, 'InternalServerError');
  else if (!res.writableEnded) res.destroy();
}

/** The five inference routes by path, for the fast path. */
const INFERENCE_ROUTES: ReadonlyMap<string, ApiType> = new Map(Object.entries(INFERENCE_PATHS));

/**
 * The HTTP(S) server for a rank: POSTs to the inference routes go to the P/D handler directly, everything else to
 * fastify's handler. Set up as fastify sets up its own server (keep-alive and request timeouts from its options).
 */
function serverWithFastPath(r: SidecarRank, https: { key: string; cert: string } | undefined, isClosing: () => boolean) {
  return (
    fastifyHandler: RequestListener,
    opts: { keepAliveTimeout?: number; requestTimeout?: number; connectionTimeout?: number; maxRequestsPerSocket?: number },
  ): Server => {
    const onRequest: RequestListener = (req, res) => {
      settleUnreadBody(req, res, r.config.maxRequestBodySize, r.config.requestBodyTimeout);
      if (req.method === 'POST' && !isClosing()) {
        const url = req.url ?? '';
        const q = url.indexOf('?');
        const path = q < 0 ? url : url.slice(0, q);
        const api = INFERENCE_ROUTES.get(path);
        if (api !== undefined) {
          handlePd(r, api, path, req, res).catch((err: unknown) => answerUnexpected(r, req, res, err));
          return;
        }
      }
      fastifyHandler(req, res);
    };
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
    if (opts.maxRequestsPerSocket !== undefined && opts.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = opts.maxRequestsPerSocket;
    return server;
  };
}

export function buildSidecarServer(r: SidecarRank, https?: { key: string; cert: string }): FastifyInstance {
  let closing = false;
  const app = Fastify({
    ...fastifyBaseOptions({ logger: r.logger, bodyLimit: r.config.maxRequestBodySize }),
    serverFactory: serverWithFastPath(r, https, () => closing),
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
    const decoder = await checkDecoder(r);
    const allowlist = r.guard.ready();
    const ok = decoder === 'ok' && allowlist;
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', decoder, ssrfAllowlist: r.guard.mode === 'off' ? 'off' : allowlist ? 'synced' : 'not synced' });
  });
  app.get('/sidecar/metrics', async (_req, reply) => {
    const { contentType, body } = await renderMetrics([r.metrics.registry]);
    return reply.header('content-type', contentType).send(body);
  });
  // Reached through fastify only while closing (fastify answers 503 first) or through app.inject().
  for (const [path, api] of INFERENCE_ROUTES) {
    app.post(path, (request, reply) => {
      reply.hijack();
      return handlePd(r, api, path, request.raw, reply.raw);
    });
  }
  const passthrough = async (request: FastifyRequest, reply: FastifyReply) => {
    reply.hijack();
    const log = new RequestLog(r.logger, String(request.id));
    const t = track(r, reply.raw, 'none', log, 'passthrough');
    t.done('other', await relayRaw(r, request.raw, t, log, r.decoderOrigin, 'passthrough'));
  };
  app.all('/*', passthrough);
  app.all('/', passthrough);
  return app;
}
async function checkDecoder(r: SidecarRank): Promise<string> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), r.config.readinessTimeout);
  try {
    const res = await (r.agents.decode as Dispatcher).request({ origin: r.decoderOrigin, path: '/health', method: 'GET', signal: ac.signal });
    await res.body.dump();
    return res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`;
  } catch (err) {
    return ac.signal.aborted ? `no answer within ${r.config.readinessTimeout}ms` : `unreachable (${(err as { code?: string }).code ?? (err as Error).message})`;
  } finally {
    clearTimeout(timer);
  }
}

