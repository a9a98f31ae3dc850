/**
 * One inference request (a POST to one of the INFERENCE_PATHS): reads the routing headers, picks and checks the
 * prefill target, reads and cleans the body, and hands the request to the connector; without a prefill target the
 * request is served by the local decoder unchanged (passthrough.ts). Works on the raw Node objects: this is the hot
 * path, reached before fastify (server.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomInt } from 'node:crypto';
import { parseTarget, requestIdOf, type ApiType } from '../common/index.js';
import { DATA_PARALLEL_HOST_PORT, PREFILLER_HOST_PORT, PREFILLER_URL } from '../common/pd-contract.js';
import { clientTransferFields } from './client-kv-params.js';
import { CONNECTOR_REGISTRY } from './connectors/index.js';
import { answerInternalError, answerInvalidBody } from './failures.js';
import { parseJsonObject } from './json-body.js';
import type { Outcome } from './metrics.js';
import { passThrough } from './passthrough.js';
import type { PdContext } from './pd-context.js';
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
  if (candidates.length === 0) {
    // Local prefill: the body goes to the decoder byte for byte (without the client's KV transfer fields, if any).
    rank.metrics.modes.inc({ connector: config.kvConnector, mode: 'local' });
    if (trace) {
      trace.local();
      // The decoder sees the request span as its parent, as upstream's otelhttp transport injects it.
      req.headers.traceparent = trace.traceparent;
    }
    return passThrough(rank, req, tracked, log, decoderOrigin, 'local');
  }
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
  trace?.disaggregated(target.hostPort, candidates.length);
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
  const ctx: PdContext = {
    requestId: log.requestId,
    traceparent: trace ? trace.traceparent : typeof incomingTrace === 'string' ? incomingTrace : newTraceparent(),
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
    config,
    metrics: rank.metrics,
    get logger() {
      return log.logger;
    },
    timings: { start: tracked.start, prefillMs: 0, decodeTtfbMs: 0 },
  };
  try {
    return await CONNECTOR_REGISTRY[config.kvConnector].handle(ctx);
  } catch (err) {
    log.logger.error({ err }, 'P/D handler failed');
    return answerInternalError(res, err);
  }
}
