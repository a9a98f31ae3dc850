/**
 * What a connector gets for one request, and the decode step every connector ends with: send the decode leg to the
 * local vLLM and relay its answer, mapping failures to llm-d's statuses (503 "decode node is not ready" when vLLM
 * refuses the connection, 502 otherwise, 504 for our deadlines).
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { ApiType, Target } from '../../common/index.js';
import { relayToClient } from '../client-relay.js';
import { DECODER_NOT_READY, writeJsonError } from '../errors.js';
import type { Mode, Outcome, SidecarMetrics } from '../metrics.js';
import type { SidecarConfig } from '../options.js';
import { sendPrefill, type PrefillOutcome, type PrefillRequest } from '../prefill-client.js';
import { forwardHeaders, type UpstreamAgents } from '../upstream.js';
import { LegStopped, UpstreamLeg, connectErrorCode, type LegRequest, type StopSignal } from '../../common/upstream-leg.js';

export type JsonObject = Record<string, unknown>;

export interface RequestTimings {
  start: number;
  /** Time spent waiting on the prefill leg. */
  prefillMs: number;
  /** Time from sending the decode leg to its first byte. */
  decodeTtfbMs: number;
}

export interface PdContext {
  requestId: string;
  /** W3C trace context shared by both legs (the client's, or one made for this request). */
  traceparent: string;
  api: ApiType;
  method: string;
  /** Path and query, forwarded unchanged to both legs. */
  url: string;
  headers: IncomingHttpHeaders;
  clientAddress: string;
  body: JsonObject;
  rawBody: Buffer;
  res: ServerResponse;
  /** Stopped when the client disconnects. */
  signal: StopSignal;
  target: Target;
  decoderOrigin: string;
  agents: UpstreamAgents;
  config: SidecarConfig;
  metrics: SidecarMetrics;
  logger: Logger;
  timings: RequestTimings;
  /** The upstream legs' headers, built once per request by legHeaders(). */
  forwardedHeaders?: Record<string, string | string[]>;
}

export interface Connector {
  readonly name: SidecarConfig['kvConnector'];
  /** Serves the request end to end (the answer is written to ctx.res); returns its outcome for metrics. */
  handle(ctx: PdContext): Promise<Outcome>;
}

export function prefillOrigin(ctx: PdContext): string {
  return `${ctx.agents.scheme('prefiller')}://${ctx.target.hostPort}`;
}

/**
 * Headers for a leg with a JSON body: the client's, cleaned, built once per request and shared by its legs (undici
 * does not change them). Legs to another server drop the client's Host; the decode leg keeps it, as a reverse proxy
 * does.
 */
export function legHeaders(ctx: PdContext, dropHost = true): Record<string, string | string[]> {
  let h = ctx.forwardedHeaders;
  if (!h) {
    h = forwardHeaders(ctx.headers, { requestId: ctx.requestId, dropHost: true, clientAddress: ctx.clientAddress, traceparent: ctx.traceparent });
    h['content-type'] = 'application/json';
    ctx.forwardedHeaders = h;
  }
  const host = ctx.headers.host;
  return dropHost || host === undefined ? h : { ...h, host };
}

/**
 * The prefill leg to this request's prefiller with the configured deadline, size bound and retry policy; `overrides`
 * changes what a connector needs otherwise (SGLang: no retries, its own abort signal).
 */
export function prefillRequest(ctx: PdContext, body: string, expect: PrefillRequest['expect'], overrides: Partial<PrefillRequest> = {}): PrefillRequest {
  const c = ctx.config;
  return {
    agent: ctx.agents.prefill as Dispatcher,
    origin: prefillOrigin(ctx),
    path: ctx.url,
    headers: legHeaders(ctx),
    body,
    clientSignal: ctx.signal,
    timeoutMs: c.prefillTimeout,
    maxResponseBytes: c.maxPrefillResponseSize,
    maxJsonDepth: c.maxJsonDepth,
    maxRetries: c.prefillMaxRetries,
    backoffMs: c.prefillRetryBackoff,
    retryTransportErrors: c.prefillFailurePolicy !== 'fail',
    expect,
    onRetry: (reason, attempt) => {
      ctx.metrics.prefillRetries.inc({ connector: c.kvConnector, reason });
      ctx.logger.info({ prefiller: ctx.target.hostPort, attempt, previous: reason }, 'retrying prefill request');
    },
    ...overrides,
  };
}

/** Sends the prefill leg and records how long it took and how it ended (pd_router_sidecar_prefill_duration_seconds). */
export async function timedPrefill(ctx: PdContext, req: PrefillRequest): Promise<PrefillOutcome> {
  const sent = performance.now();
  const r = await sendPrefill(req);
  ctx.timings.prefillMs = performance.now() - sent;
  ctx.metrics.prefillDuration.observe({ connector: ctx.config.kvConnector, outcome: r.kind }, ctx.timings.prefillMs / 1000);
  return r;
}

export interface DecodeStep {
  body: Buffer | string;
  mode: Mode;
  /** The prefiller's cached tokens to write into the answer's usage (NIXL); undefined: relay unchanged. */
  rewriteCached?: number;
  /** Stops the decode leg from outside with its LegStopped reason (e.g. the concurrent SGLang prefill failed). */
  peerSignal?: StopSignal;
  /** Chunks to put back in front of the answer (a probe read them). */
  leg?: UpstreamLeg;
  prefix?: Buffer[];
}

/** Maps a leg failure to the outcome and, when nothing was sent yet, writes the error answer. */
export function answerLegFailure(ctx: PdContext, err: unknown, stage: 'decode' | 'prefill', headersSent: boolean): Outcome {
  if (err instanceof LegStopped) {
    if (err.reason === 'client_gone') {
      ctx.metrics.clientAborts.inc({ stage });
      return 'aborted';
    }
    if (err.reason === 'first_byte_timeout' || err.reason === 'idle_timeout' || err.reason === 'prefill_timeout') {
      ctx.metrics.timeouts.inc({ stage: err.reason === 'first_byte_timeout' ? `${stage}_first_byte` : err.reason === 'idle_timeout' ? `${stage}_idle` : 'prefill' });
      if (!headersSent) writeJsonError(ctx.res, 504, err.message);
      return 'timeout';
    }
    if (!headersSent) writeJsonError(ctx.res, 502, err.message);
    return 'upstream_error';
  }
  if (ctx.signal.aborted) {
    ctx.metrics.clientAborts.inc({ stage });
    return 'aborted';
  }
  const code = connectErrorCode(err);
  if (!headersSent) {
    if (stage === 'decode' && code === 'ECONNREFUSED') writeJsonError(ctx.res, 503, DECODER_NOT_READY, 'ServiceUnavailable');
    // The error's own text can name an internal address: it goes to the log below, the client gets the code.
    else writeJsonError(ctx.res, 502, `${stage} failed: the ${stage === 'decode' ? 'model server' : 'prefiller'} connection failed (${code ?? 'unexpected error'})`, 'BadGateway');
  }
  ctx.logger.warn({ err, stage, code, prefiller: ctx.target?.hostPort }, `${stage} leg failed`);
  return 'upstream_error';
}

/** The decode leg to the local vLLM with the configured deadlines. */
export function decodeRequest(ctx: PdContext, body: LegRequest['body'], overrides: Partial<LegRequest> = {}): LegRequest {
  return {
    agent: ctx.agents.decode as Dispatcher,
    origin: ctx.decoderOrigin,
    method: ctx.method,
    path: ctx.url,
    headers: legHeaders(ctx, false),
    body,
    clientSignal: ctx.signal,
    firstByteTimeoutMs: ctx.config.decodeFirstByteTimeout,
    idleTimeoutMs: ctx.config.decodeIdleTimeout,
    label: 'decode',
    ...overrides,
  };
}

/** Sends the decode leg (unless one is given) and relays its answer to the client. */
export async function runDecode(ctx: PdContext, step: DecodeStep): Promise<Outcome> {
  const c = ctx.config;
  let leg = step.leg;
  if (!leg) {
    try {
      leg = await UpstreamLeg.open(decodeRequest(ctx, step.body, { peerSignal: step.peerSignal }));
    } catch (err) {
      return answerLegFailure(ctx, err, 'decode', false);
    }
  }
  const opened = leg;
  const outcome = await relayToClient(opened, {
    res: ctx.res,
    rewriteCached: step.rewriteCached,
    maxRewriteBody: c.maxRewriteBodySize,
    prefix: step.prefix,
    metrics: ctx.metrics,
    logger: () => ctx.logger,
    // Latency is an inference request's: passthrough answers (vLLM's /metrics, /v1/models) are not timed.
    onFirstClientByte: step.mode === 'passthrough' ? undefined : () => observeFirstByte(ctx, step.mode, opened),
  });
  if (outcome.kind === 'done') return opened.status >= 500 ? 'upstream_error' : opened.status >= 400 ? 'client_error' : 'success';
  return answerLegFailure(ctx, outcome.error, 'decode', outcome.headersSent);
}

/** The latency split of an inference request at its first byte to the client (TTFT, decode TTFB, the sidecar's share). */
function observeFirstByte(ctx: PdContext, mode: Mode, leg: UpstreamLeg): void {
  const now = performance.now();
  const t = ctx.timings;
  t.decodeTtfbMs = (leg.firstByteAt || now) - leg.sentAt;
  ctx.metrics.decodeTtfb.observe({ mode }, t.decodeTtfbMs / 1000);
  ctx.metrics.ttft.observe({ mode }, (now - t.start) / 1000);
  ctx.metrics.overhead.observe({ mode }, Math.max(0, now - t.start - t.prefillMs - t.decodeTtfbMs) / 1000);
}
