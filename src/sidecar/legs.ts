/**
 * The upstream legs' requests: the headers both legs share, the prefill leg with its deadline, size bound and retry
 * policy (sent by prefill-client.ts, timed here), and the decode leg to the local vLLM with its deadlines.
 */
import { traceparentOf } from '../common/index.js';
import type { LegRequest } from '../common/upstream-leg.js';
import type { DecodeContext, PdContext } from './pd-context.js';
import { sendPrefill, type PrefillOutcome, type PrefillRequest } from './prefill-client.js';
import { forwardHeaders } from './upstream.js';

/** `scheme://host:port` of this request's prefiller. */
export function prefillOrigin(ctx: PdContext): string {
  return `${ctx.agents.scheme('prefiller')}://${ctx.target.hostPort}`;
}

/**
 * Headers for a leg with a JSON body: the client's, cleaned, built once per request and shared by its legs (undici
 * does not change them). Legs to another server drop the client's Host; the decode leg keeps it, as a reverse proxy
 * does.
 */
export function legHeaders(ctx: DecodeContext, dropHost = true): Record<string, string | string[]> {
  let headers = ctx.forwardedHeaders;
  if (!headers) {
    headers = forwardHeaders(ctx.headers, {
      requestId: ctx.requestId,
      dropHost: true,
      clientAddress: ctx.clientAddress,
      traceparent: ctx.traceparent,
    });
    headers['content-type'] = 'application/json';
    ctx.forwardedHeaders = headers;
  }
  const host = ctx.headers.host;
  return dropHost || host === undefined ? headers : { ...headers, host };
}

/**
 * The prefill leg to this request's prefiller with the configured deadline, size bound and retry policy; `overrides`
 * changes what a connector needs otherwise (SGLang: no retries, its own abort signal).
 */
export function prefillRequest(
  ctx: PdContext,
  body: string,
  expect: PrefillRequest['expect'],
  overrides: Partial<PrefillRequest> = {},
): PrefillRequest {
  const config = ctx.config;
  return {
    agent: ctx.agents.prefill,
    origin: prefillOrigin(ctx),
    path: ctx.url,
    headers: legHeaders(ctx),
    body,
    clientSignal: ctx.signal,
    timeoutMs: config.prefillTimeout,
    maxResponseBytes: config.maxPrefillResponseSize,
    maxJsonDepth: config.maxJsonDepth,
    maxRetries: config.prefillMaxRetries,
    backoffMs: config.prefillRetryBackoff,
    retryTransportErrors: config.prefillFailurePolicy !== 'fail',
    expect,
    onRetry: (reason, attempt) => {
      ctx.metrics.prefillRetries.inc({ connector: config.kvConnector, reason });
      ctx.log.logger.info({ prefiller: ctx.target.hostPort, attempt, previous: reason }, 'retrying prefill request');
    },
    ...overrides,
  };
}

/** Sends the prefill leg and records how long it took and how it ended (pd_router_sidecar_prefill_duration_seconds). */
export async function timedPrefill(ctx: PdContext, request: PrefillRequest): Promise<PrefillOutcome> {
  const span = ctx.trace?.startPrefill(ctx.requestId, ctx.target.hostPort);
  if (span) request = { ...request, headers: { ...request.headers, traceparent: traceparentOf(span) } };
  const sent = performance.now();
  const outcome = await sendPrefill(request);
  if (span) ctx.trace!.endPrefill(span, outcome);
  ctx.timings.prefillMs = performance.now() - sent;
  ctx.metrics.prefillDuration.observe(
    { connector: ctx.config.kvConnector, outcome: outcome.kind },
    ctx.timings.prefillMs / 1000,
  );
  return outcome;
}

/** The decode leg to the local vLLM with the configured deadlines. */
export function decodeRequest(
  ctx: DecodeContext,
  body: LegRequest['body'],
  overrides: Partial<LegRequest> = {},
): LegRequest {
  return {
    agent: ctx.agents.decode,
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
