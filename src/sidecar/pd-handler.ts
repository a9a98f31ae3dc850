/**
 * One inference request (a POST to one of the INFERENCE_PATHS): reads the routing headers, picks and checks the
 * prefill target, reads and cleans the body, and hands the request to the connector; without a prefill target the
 * request is served by the local decoder unchanged (passthrough.ts). Works on the raw Node objects: this is the hot
 * path, reached straight from the HTTP server (server.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomInt } from 'node:crypto';
import { hostPort, parseTarget, requestIdOf, type ApiType, type Target } from '../common/index.js';
import {
  DATA_PARALLEL_HOST_PORT,
  ENCODER_HOSTS_PORTS,
  KV_CACHE_SOURCE_HOST_PORT,
  PREFILLER_HOST_PORT,
  PREFILLER_URL,
} from '../common/pd-contract.js';
import { clientTransferFields } from './client-kv-params.js';
import { CONNECTOR_REGISTRY } from './connectors/index.js';
import { answerEncodeFailure, answerInternalError, answerInvalidBody } from './failures.js';
import { encoderTargets, runEncodeStage } from './encode-stage.js';
import { parseJsonObject } from './json-body.js';
import type { Outcome } from './metrics.js';
import { decodeAfterEncode, passThrough } from './passthrough.js';
import { kvCacheSourceOf } from './kv-peer.js';
import { localNeedsRewrite, serveLocalDecode } from './local-decode.js';
import { isPdContext, type DecodeContext } from './pd-context.js';
import { PdTrace } from './pd-trace.js';
import { readOrAnswer, refuseBeforeBody } from './request-body.js';
import { RequestLog, track, type SidecarRank, type Tracked } from './tracking.js';
import { newTraceparent, prefillCandidates } from './upstream.js';

function firstValue(header: string | string[] | undefined): string | undefined {
  return Array.isArray(header) ? header[0] : header;
}

/**
 * Decoder origin for this request: the rank named by the deprecated x-data-parallel-host-port header, if any;
 * undefined when the header names no rank.
 */
function decoderFor(rank: SidecarRank, req: IncomingMessage): string | undefined {
  const named = firstValue(req.headers[DATA_PARALLEL_HOST_PORT])?.trim();
  if (!named || !rank.dataParallelRoutes) return rank.decoderOrigin;
  if (!rank.warnedDataParallelHeader) {
    rank.warnedDataParallelHeader = true;
    rank.logger.warn(
      { header: named },
      'x-data-parallel-host-port is deprecated; use one target port per data-parallel rank (logged once)',
    );
  }
  return rank.dataParallelRoutes.get(named) || undefined;
}

/**
 * The encoders of an E/PD request: none without --ec-connector (the header is then ignored, and stripped from every
 * leg, as upstream), else the x-encoder-hosts-ports entries the SSRF guard allows; 'invalid' for a malformed entry.
 */
function encodersOf(rank: SidecarRank, req: IncomingMessage, path: string, log: RequestLog): Target[] | 'invalid' {
  if (rank.config.ecConnector === '') return [];
  const header = req.headers[ENCODER_HOSTS_PORTS];
  if (header === undefined) return [];
  const targets = encoderTargets(header, rank.guard);
  if (targets.invalid !== undefined) {
    log.logger.warn({ value: targets.invalid.slice(0, 256) }, 'invalid x-encoder-hosts-ports value');
    return 'invalid';
  }
  for (const denied of targets.denied) {
    rank.metrics.ssrfDenied.inc();
    log.logger.warn(
      {
        target: denied,
        clientIP: req.socket.remoteAddress ?? '',
        userAgent: req.headers['user-agent'],
        requestPath: path,
      },
      'SSRF protection: encoder target not in allowlist, removing from list',
    );
  }
  if (targets.allowed.length === 0 && targets.denied.length > 0)
    log.logger.info('SSRF protection: all encoder targets filtered out, falling back to P/D or decoder-only');
  return targets.allowed;
}

/** The prefill target: one of the candidates, checked (a refusal is answered and its outcome returned instead). */
async function prefillTarget(
  rank: SidecarRank,
  candidates: string[],
  req: IncomingMessage,
  tracked: Tracked,
  log: RequestLog,
  path: string,
  trace: PdTrace | undefined,
): Promise<Target | Outcome> {
  const config = rank.config;
  const res = tracked.res;
  const chosen = config.enablePrefillerSampling ? candidates[randomInt(0, candidates.length)] : candidates[0];
  const target = parseTarget(chosen);
  if (!target) {
    // The value (the EPP's, or a client's) goes to the log, not back to the client.
    log.logger.warn({ value: chosen.slice(0, 256) }, 'invalid x-prefiller-host-port value');
    trace?.refused('invalid_prefill_target');
    return refuseBeforeBody(req, res, config, 'invalid_prefill_target');
  }
  if (!rank.guard.allowed(target.host, target.port)) {
    rank.metrics.ssrfDenied.inc();
    trace?.refused('ssrf_protection_denied');
    log.logger.warn(
      {
        target: target.hostPort,
        clientIP: req.socket.remoteAddress ?? '',
        userAgent: req.headers['user-agent'],
        requestPath: path,
        allowlistReady: rank.guard.ready(),
      },
      'SSRF protection: prefill target not in allowlist',
    );
    return refuseBeforeBody(req, res, config, 'prefill_target_denied');
  }
  return target;
}

/** Serves one inference request (`path` without its query) and counts it. */
export async function handlePd(
  rank: SidecarRank,
  api: ApiType,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const log = new RequestLog(rank.logger, requestIdOf(req));
  const tracked = track(rank, res, rank.config.kvConnector, log, 'inference');
  const trace = rank.tracing?.enabled
    ? new PdTrace(rank.tracing, req, path, api, rank.config.kvConnector, tracked.start)
    : undefined;
  const outcome = await servePd(rank, api, path, req, tracked, log, trace);
  trace?.finish(outcome);
  tracked.done(path, outcome);
}

async function servePd(
  rank: SidecarRank,
  api: ApiType,
  path: string,
  req: IncomingMessage,
  tracked: Tracked,
  log: RequestLog,
  trace: PdTrace | undefined,
): Promise<Outcome> {
  const config = rank.config;
  const res = tracked.res;
  const decoderOrigin = decoderFor(rank, req);
  if (decoderOrigin === undefined) return refuseBeforeBody(req, res, config, 'unknown_data_parallel_rank');
  const candidates = prefillCandidates(req.headers[PREFILLER_HOST_PORT] ?? req.headers[PREFILLER_URL]);
  const kvCacheSource = kvCacheSourceOf(
    firstValue(req.headers[KV_CACHE_SOURCE_HOST_PORT]),
    config,
    rank.guard,
    () => log.logger,
  );
  const encoders = encodersOf(rank, req, path, log);
  if (encoders === 'invalid') return refuseBeforeBody(req, res, config, 'invalid_encoder_target');
  const localRewrite = localNeedsRewrite({ config, api, kvCacheSource });
  if (candidates.length === 0 && encoders.length === 0 && !localRewrite) {
    // Local prefill: the body goes to the decoder byte for byte (without the client's KV transfer fields, if any).
    rank.metrics.modes.inc({ connector: config.kvConnector, mode: 'local' });
    if (trace) {
      trace.local();
      // The decoder sees the request span as its parent, as upstream's otelhttp transport injects it.
      req.headers.traceparent = trace.traceparent;
    }
    return passThrough(rank, req, tracked, log, decoderOrigin, 'local');
  }
  const target =
    candidates.length > 0 ? await prefillTarget(rank, candidates, req, tracked, log, path, trace) : undefined;
  if (typeof target === 'string') return target;
  if (target) trace?.disaggregated(target.hostPort, candidates.length);
  const read = await readOrAnswer(req, res, config, rank.metrics);
  if (typeof read === 'string') return read;
  const parsed = parseJsonObject(read, config.maxJsonDepth);
  if ('error' in parsed) return answerInvalidBody(res, parsed.error);
  let body = parsed.value;
  let rawBody = read;
  // The client's own transfer fields never reach a model server; every leg is built from the body without them.
  const transferFields = clientTransferFields(config.kvConnector);
  const stripped = transferFields.strip(body);
  if (stripped) {
    body = stripped;
    rawBody = Buffer.from(JSON.stringify(stripped));
    log.logger.info({ fields: transferFields.fields }, "removed the client's KV transfer fields from the request body");
  }
  const incomingTrace = req.headers.traceparent;
  const traceparent = trace ? trace.traceparent : typeof incomingTrace === 'string' ? incomingTrace : newTraceparent();
  if (encoders.length > 0) {
    const encoded = await runEncodeStage({
      config,
      agents: rank.agents,
      logger: log.logger,
      requestId: log.requestId,
      traceparent,
      body,
      encoders,
      clientSignal: tracked.signal,
    });
    if ('failure' in encoded) return answerEncodeFailure(rank.metrics, res, log.logger, encoded.failure);
    body = encoded.body;
    rawBody = Buffer.from(JSON.stringify(body));
    // E/D (an encode stage, no prefiller): straight to the decoder, unless the local decode itself rewrites.
    if (!target && !localRewrite) return decodeAfterEncode(rank, req, tracked, log, decoderOrigin, rawBody);
  }
  const ctx: DecodeContext = {
    requestId: log.requestId,
    traceparent,
    trace,
    api,
    method: 'POST',
    url: req.url ?? path,
    headers: req.headers,
    clientAddress: req.socket.remoteAddress ?? '',
    body,
    rawBody,
    res,
    signal: tracked.signal,
    target,
    decoderOrigin: decoderOrigin,
    agents: rank.agents,
    kvCacheSource,
    selfHostPort: config.podIp && rank.port ? parseTarget(hostPort(config.podIp, rank.port))?.hostPort : undefined,
    config,
    metrics: rank.metrics,
    log,
    timings: { start: tracked.start, prefillMs: 0, decodeTtfbMs: 0 },
  };
  try {
    if (!isPdContext(ctx)) return await serveLocalDecode(ctx);
    return await CONNECTOR_REGISTRY[config.kvConnector].handle(ctx);
  } catch (err) {
    log.logger.error({ err }, 'P/D handler failed');
    return answerInternalError(res, err);
  }
}
