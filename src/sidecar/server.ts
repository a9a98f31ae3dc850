/**
 * The sidecar's HTTP surface for one data-parallel rank. P/D routes read the routing headers and hand the request to
 * the connector; every other method and path is relayed to the local vLLM unchanged (streamed both ways).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomInt } from 'node:crypto';
import type { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { INFERENCE_PATHS, fastifyBaseOptions, renderMetrics, type ApiType } from '../common/index.js';
import { CONNECTOR_REGISTRY, type PdContext } from './connectors/index.js';
import { answerLegFailure, runDecode } from './connectors/context.js';
import { LegStopped, writeJsonError, writeText } from './errors.js';
import type { Outcome, SidecarMetrics } from './metrics.js';
import type { SidecarConfig } from './options.js';
import type { TargetGuard } from './ssrf-guard.js';
import { forwardHeaders, newTraceparent, parseTarget, prefillCandidates, type UpstreamAgents } from './upstream.js';
import { UpstreamLeg } from '../common/upstream-leg.js';

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

class BodyTooLarge extends Error {}

/** Reads a request body up to `limit` bytes within `timeoutMs`. */
function readBody(stream: Readable, limit: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => finish(new LegStopped('first_byte_timeout', `request body not received within ${timeoutMs}ms`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', finish);
      if (err) {
        stream.resume();
        reject(err);
      } else resolve(Buffer.concat(parts, size));
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) return finish(new BodyTooLarge(`request body exceeds ${limit} bytes`));
      parts.push(c);
    };
    const onEnd = () => finish();
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', finish);
  });
}

interface Tracked {
  res: ServerResponse;
  signal: AbortSignal;
  start: number;
  done: (path: string, outcome: Outcome) => void;
}

/** Hijacks the reply, ties an abort signal to the client connection and counts the request once it ends. */
function track(r: SidecarRank, request: FastifyRequest, reply: FastifyReply, connector: string): Tracked {
  reply.hijack();
  const res = reply.raw;
  const ac = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  r.metrics.inflight.inc();
  let counted = false;
  const start = performance.now();
  const debug = (request.log as Logger).isLevelEnabled('debug');
  return {
    res,
    signal: ac.signal,
    start,
    done: (path, outcome) => {
      if (counted) return;
      counted = true;
      r.metrics.inflight.dec();
      r.metrics.requests.inc({ path, connector, outcome });
      if (debug) request.log.debug({ path, outcome, ms: Math.round(performance.now() - start) }, 'request done');
    },
  };
}

function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? '';
}

/** Decoder origin for this request: the rank named by the deprecated x-data-parallel-host-port header, if any. */
function decoderFor(r: SidecarRank, request: FastifyRequest): { origin?: string; unknownRank?: string } {
  const h = request.headers['x-data-parallel-host-port'];
  const v = (Array.isArray(h) ? h[0] : h)?.trim();
  if (!v || !r.dataParallelRoutes) return { origin: r.decoderOrigin };
  if (!r.warnedDataParallelHeader) {
    r.warnedDataParallelHeader = true;
    r.logger.warn({ header: v }, 'x-data-parallel-host-port is deprecated; use one target port per data-parallel rank (logged once)');
  }
  const origin = r.dataParallelRoutes.get(v);
  return origin ? { origin } : { unknownRank: v };
}

async function handlePd(r: SidecarRank, api: ApiType, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const c = r.config;
  const path = request.routeOptions.url ?? request.url;
  const t = track(r, request, reply, c.kvConnector);
  const res = t.res;
  const logger = request.log as Logger;
  const requestId = String(request.id);
  const dp = decoderFor(r, request);
  if (dp.unknownRank !== undefined) {
    res.writeHead(400).end();
    return t.done(path, 'client_error');
  }
  const decoderOrigin = dp.origin!;
  const candidates = prefillCandidates(request.headers['x-prefiller-host-port'] ?? request.headers['x-prefiller-url']);
  if (candidates.length === 0) {
    // Local prefill: the body goes to the decoder byte for byte.
    r.metrics.modes.inc({ connector: c.kvConnector, mode: 'local' });
    const outcome = await relayRaw(r, request, t, decoderOrigin, 'local');
    return t.done(path, outcome);
  }
  const chosen = c.enablePrefillerSampling ? candidates[randomInt(0, candidates.length)]! : candidates[0]!;
  const target = parseTarget(chosen);
  if (!target) {
    const drained = await drain(request, c.maxRequestBodySize, c.requestBodyTimeout);
    writeJsonError(res, 400, `invalid x-prefiller-host-port value ${JSON.stringify(chosen)}: expected host:port`);
    if (!drained) closeAfterAnswer(request, res);
    return t.done(path, 'client_error');
  }
  if (!r.guard.allowed(target.host, target.port)) {
    r.metrics.ssrfDenied.inc();
    logger.warn(
      { target: target.hostPort, clientIP: clientAddress(request.raw), userAgent: request.headers['user-agent'], requestPath: path, allowlistReady: r.guard.ready() },
      'SSRF protection: prefill target not in allowlist',
    );
    const drained = await drain(request, c.maxRequestBodySize, c.requestBodyTimeout);
    writeText(res, 403, 'Forbidden: prefill target not allowed by SSRF protection');
    if (!drained) closeAfterAnswer(request, res);
    return t.done(path, 'denied');
  }
  let rawBody: Buffer;
  try {
    rawBody = await readBody(request.body as Readable, c.maxRequestBodySize, c.requestBodyTimeout);
  } catch (err) {
    if (err instanceof BodyTooLarge) {
      writeJsonError(res, 413, err.message, 'RequestTooLarge');
      // The rest of the upload is not read: close the connection after answering.
      closeAfterAnswer(request, res);
      return t.done(path, 'client_error');
    }
    if (err instanceof LegStopped) {
      r.metrics.timeouts.inc({ stage: 'request_body' });
      writeJsonError(res, 408, err.message, 'RequestTimeout');
      return t.done(path, 'timeout');
    }
    r.metrics.clientAborts.inc({ stage: 'request_body' });
    return t.done(path, 'aborted');
  }
  let body: unknown;
  try {
    body = JSON.parse(rawBody.toString('utf8'));
  } catch (err) {
    writeJsonError(res, 400, `invalid JSON: ${(err as Error).message}`, 'BadRequestError');
    return t.done(path, 'client_error');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    writeJsonError(res, 400, 'invalid JSON: the request body must be a JSON object', 'BadRequestError');
    return t.done(path, 'client_error');
  }
  const incomingTrace = request.headers.traceparent;
  const ctx: PdContext = {
    requestId,
    traceparent: typeof incomingTrace === 'string' ? incomingTrace : newTraceparent(),
    api,
    method: request.method,
    url: request.url,
    headers: request.headers,
    clientAddress: clientAddress(request.raw),
    body: body as Record<string, unknown>,
    rawBody,
    res,
    signal: t.signal,
    target,
    decoderOrigin,
    agents: r.agents,
    config: c,
    metrics: r.metrics,
    logger,
    timings: { start: t.start, prefillMs: 0, decodeTtfbMs: 0 },
  };
  let outcome: Outcome;
  try {
    outcome = await CONNECTOR_REGISTRY[c.kvConnector].handle(ctx);
  } catch (err) {
    logger.error({ err }, 'P/D handler failed');
    writeJsonError(res, 500, `internal error: ${(err as Error).message}`, 'InternalServerError');
    outcome = 'upstream_error';
  }
  t.done(path, outcome);
}

/**
 * Consumes an unread request body so the connection can be reused, within the body bounds: true when it was read to
 * its end; false when it was larger than `limit` bytes, slower than `timeoutMs`, or failed (the caller then closes
 * the connection after answering).
 */
function drain(request: FastifyRequest, limit: number, timeoutMs: number): Promise<boolean> {
  const s = request.body as Readable | undefined;
  if (!s || typeof s.resume !== 'function' || s.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    let size = 0;
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', onFail);
      s.off('close', onFail);
      if (!ok) s.pause();
      resolve(ok);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) finish(false);
    };
    const onEnd = () => finish(true);
    const onFail = () => finish(false);
    const timer = setTimeout(onFail, timeoutMs);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onFail);
    s.once('close', onFail);
  });
}

/** Closes the client connection once the answer is sent (the rest of its upload is not read). */
function closeAfterAnswer(request: FastifyRequest, res: ServerResponse): void {
  if (res.writableFinished) request.raw.socket.destroy();
  else res.once('finish', () => request.raw.socket.destroy());
}

/** Streams the request to the decoder as it came and relays the answer unchanged. */
async function relayRaw(r: SidecarRank, request: FastifyRequest, t: Tracked, origin: string, mode: 'local' | 'passthrough'): Promise<Outcome> {
  const ctx = {
    requestId: String(request.id),
    method: request.method,
    url: request.url,
    headers: request.headers,
    clientAddress: clientAddress(request.raw),
    res: t.res,
    signal: t.signal,
    decoderOrigin: origin,
    agents: r.agents,
    config: r.config,
    metrics: r.metrics,
    logger: request.log as Logger,
    timings: { start: t.start, prefillMs: 0, decodeTtfbMs: 0 },
  } as unknown as PdContext;
  const body = request.body as Readable | undefined;
  const hasBody = body !== undefined && typeof (body as Readable).pipe === 'function';
  let leg: UpstreamLeg;
  try {
    leg = await UpstreamLeg.open({
      agent: r.agents.decode as Dispatcher,
      origin,
      method: request.method,
      path: request.url,
      headers: forwardHeaders(request.headers, { requestId: String(request.id), dropHost: false, clientAddress: clientAddress(request.raw) }),
      body: hasBody ? body : undefined,
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

export function buildSidecarServer(r: SidecarRank, https?: { key: string; cert: string }): FastifyInstance {
  const app = Fastify({
    ...fastifyBaseOptions({ logger: r.logger, bodyLimit: r.config.maxRequestBodySize }),
    ...(https ? { https } : {}),
  } as ReturnType<typeof fastifyBaseOptions>);
  app.removeAllContentTypeParsers();
  // Bodies stay streams: passthrough pipes them, the P/D handler reads them with its own bound.
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
  for (const [path, api] of Object.entries(INFERENCE_PATHS)) {
    app.post(path, (request, reply) => handlePd(r, api, request, reply));
  }
  const passthrough = async (request: FastifyRequest, reply: FastifyReply) => {
    const t = track(r, request, reply, 'none');
    r.metrics.modes.inc({ connector: r.config.kvConnector, mode: 'passthrough' });
    t.done('other', await relayRaw(r, request, t, r.decoderOrigin, 'passthrough'));
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

