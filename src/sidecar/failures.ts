/**
 * Every failure the sidecar answers, and the status and body it becomes: the one place that decides them.
 *
 * | failure                                                      | status | body                                 |
 * | ------------------------------------------------------------ | ------ | ------------------------------------ |
 * | x-data-parallel-host-port names no rank                      | 400    | none                                 |
 * | x-prefiller-host-port is not `host:port`                     | 400    | JSON, BadRequestError                |
 * | x-encoder-hosts-ports has an entry that is not `host:port`   | 400    | JSON, BadRequestError                |
 * | an encoder answered an error, a malformed or oversized body  | 502    | JSON, BadGateway, naming the encoder |
 * | an encoder could not be reached                              | 502    | JSON, BadGateway, naming the encoder |
 * | the encode deadline passed                                   | 504    | JSON, GatewayTimeout, naming it      |
 * | the prefill target is outside the SSRF allowlist             | 403    | text                                 |
 * | the body exceeds --max-request-body-size                     | 413    | JSON, RequestTooLarge                |
 * | the body did not arrive within --request-body-timeout        | 408    | JSON, RequestTimeout                 |
 * | the body is not a JSON object, or nests too deep             | 400    | JSON, BadRequestError                |
 * | the prefiller answered an error                              | its    | its own (relayed verbatim)           |
 * | the prefiller could not be reached                           | 502    | JSON, BadGateway                     |
 * | the prefill deadline passed                                  | 504    | JSON, GatewayTimeout                 |
 * | the prefiller answered a redirect or a malformed 2xx         | 502    | JSON, BadGateway                     |
 * | the local vLLM refused the connection                        | 503    | JSON, "The decode node is not ready" |
 * | the decode leg failed otherwise                              | 502    | JSON, BadGateway                     |
 * | a decode deadline passed (first byte, idle; SGLang prefill)  | 504    | JSON                                 |
 * | the Mooncake bootstrap query failed (unreachable, deadline, non-2xx, no engine_id) | 502 | JSON, BadGateway |
 * | a chunked-decode request answered an error                   | its    | its own (relayed verbatim)           |
 * | a chunked-decode answer is not JSON                          | 500    | JSON, InternalServerError            |
 * | a chunked-decode answer exceeds --max-rewrite-body-size      | 502    | JSON, BadGateway                     |
 * | any of these once the answer has started                     | -      | an SSE error event, or a cut connection |
 * | the handler threw                                            | 500    | JSON, InternalServerError            |
 *
 * A client that left gets nothing; it is counted in client_aborts. Messages never carry the prefiller's or the
 * decoder's address (the log line does); an encoder failure names the encoder, as upstream's message does, since a
 * request may fan out to several.
 */
import type { ServerResponse } from 'node:http';
import { LegStopped, connectErrorCode } from '../common/upstream-leg.js';
import { DECODER_NOT_READY, sseErrorEvent, writeJsonError, writeText } from './errors.js';
import type { Outcome, SidecarMetrics } from './metrics.js';
import type { PdContext, RelayContext } from './pd-context.js';
import type { PrefillOutcome } from './prefill-client.js';
import type { EncodeFailure } from './encode-stage.js';
import type { Logger } from 'pino';
import { responseHeaders } from './upstream.js';

/** A request refused on its headers, before its body is read. */
export type Refusal =
  'unknown_data_parallel_rank' | 'invalid_prefill_target' | 'invalid_encoder_target' | 'prefill_target_denied';

const REFUSALS: Readonly<Record<Refusal, { outcome: Outcome; answer: (res: ServerResponse) => void }>> = {
  unknown_data_parallel_rank: { outcome: 'client_error', answer: (res) => res.writeHead(400).end() },
  invalid_prefill_target: {
    outcome: 'client_error',
    answer: (res) => writeJsonError(res, 400, 'invalid x-prefiller-host-port header: expected host:port'),
  },
  invalid_encoder_target: {
    outcome: 'client_error',
    answer: (res) => writeJsonError(res, 400, 'invalid x-encoder-hosts-ports header: expected host:port values'),
  },
  prefill_target_denied: {
    outcome: 'denied',
    answer: (res) => writeText(res, 403, 'Forbidden: prefill target not allowed by SSRF protection'),
  },
};

/** Answers a request refused on its headers; returns its outcome. */
export function answerRefusal(res: ServerResponse, refusal: Refusal): Outcome {
  const { outcome, answer } = REFUSALS[refusal];
  answer(res);
  return outcome;
}

/** Why a request body could not be read (request-body.ts's BodyError). */
export interface BodyFailure {
  readonly kind: 'too_large' | 'timeout' | 'aborted';
  readonly message: string;
}

/** Answers a body that could not be read (nothing, for a client that left); returns its outcome. */
export function answerBodyFailure(metrics: SidecarMetrics, res: ServerResponse, failure: BodyFailure): Outcome {
  switch (failure.kind) {
    case 'aborted':
      metrics.clientAborts.inc({ stage: 'request_body' });
      return 'aborted';
    case 'too_large':
      writeJsonError(res, 413, failure.message, 'RequestTooLarge');
      return 'client_error';
    case 'timeout':
      metrics.timeouts.inc({ stage: 'request_body' });
      writeJsonError(res, 408, failure.message, 'RequestTimeout');
      return 'timeout';
  }
}

/** Answers a body that is not the JSON the request needs. */
export function answerInvalidBody(res: ServerResponse, message: string): Outcome {
  writeJsonError(res, 400, message, 'BadRequestError');
  return 'client_error';
}

/** Answers a handler that threw: 500 when nothing was sent yet, else the connection is cut. */
export function answerInternalError(res: ServerResponse, err: unknown): Outcome {
  writeJsonError(
    res,
    500,
    `internal error: ${(err as Error | undefined)?.message ?? String(err)}`,
    'InternalServerError',
  );
  return 'upstream_error';
}

/** Maps a leg failure to the outcome and, when nothing was sent yet, writes the error answer. */
export function answerLegFailure(
  ctx: RelayContext,
  err: unknown,
  stage: 'decode' | 'prefill',
  headersSent: boolean,
): Outcome {
  if (err instanceof LegStopped) {
    if (err.reason === 'client_gone') {
      ctx.metrics.clientAborts.inc({ stage });
      return 'aborted';
    }
    if (err.reason === 'first_byte_timeout' || err.reason === 'idle_timeout' || err.reason === 'prefill_timeout') {
      ctx.metrics.timeouts.inc({
        stage:
          err.reason === 'first_byte_timeout'
            ? `${stage}_first_byte`
            : err.reason === 'idle_timeout'
              ? `${stage}_idle`
              : 'prefill',
      });
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
    if (stage === 'decode' && code === 'ECONNREFUSED')
      writeJsonError(ctx.res, 503, DECODER_NOT_READY, 'ServiceUnavailable');
    // The error's own text can name an internal address: it goes to the log below, the client gets the code.
    else
      writeJsonError(
        ctx.res,
        502,
        `${stage} failed: the ${stage === 'decode' ? 'model server' : 'prefiller'} connection failed (${code ?? 'unexpected error'})`,
        'BadGateway',
      );
  }
  ctx.log.logger.warn({ err, stage, code, prefiller: ctx.target?.hostPort }, `${stage} leg failed`);
  return 'upstream_error';
}

/** The SSE error event that ends a stream whose relay failed after it started (its status can no longer change). */
export function streamFailureEvent(error: unknown): string {
  const stopped = error instanceof LegStopped ? error : undefined;
  return sseErrorEvent(
    stopped?.reason === 'idle_timeout' ? 504 : 502,
    stopped?.message ?? `upstream failed: ${(error as Error).message}`,
  );
}

/** Answers a prefill that did not succeed (no fallback): counts a client that left, else relays or maps the failure. */
export function answerPrefillFailure(ctx: PdContext, failure: Exclude<PrefillOutcome, { kind: 'ok' }>): Outcome {
  const res = ctx.res;
  switch (failure.kind) {
    case 'aborted':
      ctx.metrics.clientAborts.inc({ stage: 'prefill' });
      return 'aborted';
    case 'http_error': {
      // Relayed verbatim, as upstream: the client sees the prefiller's own status and error.
      const headers = responseHeaders(failure.headers, true);
      headers['content-length'] = String(failure.body.length);
      res.writeHead(failure.status, headers);
      res.end(failure.body);
      ctx.log.logger.warn(
        { prefiller: ctx.target.hostPort, status: failure.status, attempts: failure.attempts },
        'prefill request failed',
      );
      return failure.status >= 500 ? 'upstream_error' : 'client_error';
    }
    case 'connect_error':
      writeJsonError(res, 502, failure.message, 'BadGateway');
      ctx.log.logger.warn(
        { prefiller: ctx.target.hostPort, code: failure.code, detail: failure.detail, attempts: failure.attempts },
        'prefiller unreachable',
      );
      return 'upstream_error';
    case 'timeout':
      ctx.metrics.timeouts.inc({ stage: 'prefill' });
      writeJsonError(res, 504, failure.message, 'GatewayTimeout');
      ctx.log.logger.warn({ prefiller: ctx.target.hostPort, attempts: failure.attempts }, failure.message);
      return 'timeout';
    case 'bad_response':
      writeJsonError(res, 502, failure.message, 'BadGateway');
      ctx.log.logger.warn({ prefiller: ctx.target.hostPort }, failure.message);
      return 'upstream_error';
  }
}

/** Answers a Mooncake bootstrap query that failed (upstream: 502 whatever the cause). */
export function answerBootstrapFailure(
  ctx: PdContext,
  failure: { message: string; timeout: boolean; detail?: string },
): Outcome {
  if (ctx.signal.aborted) {
    ctx.metrics.clientAborts.inc({ stage: 'prefill' });
    return 'aborted';
  }
  if (failure.timeout) ctx.metrics.timeouts.inc({ stage: 'mooncake_bootstrap' });
  writeJsonError(ctx.res, 502, failure.message, 'BadGateway');
  ctx.log.logger.warn({ prefiller: ctx.target.hostPort, detail: failure.detail }, failure.message);
  return 'upstream_error';
}

/** Why one request of a chunked decode failed. */
export type ChunkFailure =
  | { kind: 'http_error'; status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }
  | { kind: 'bad_answer'; status: 500 | 502; message: string }
  | { kind: 'leg'; error: unknown };

/**
 * Answers a chunk of a chunked decode that failed. Before the answer started: the chunk's own error relayed verbatim
 * (upstream), 500 for an answer that is not JSON (upstream), 502 for one beyond the buffer bound, or the leg failure's
 * status. Once a stream has started: an SSE error event with that status, then [DONE] (upstream writes the error body
 * raw into the stream and never ends it with [DONE]).
 */
export function answerChunkFailure(ctx: RelayContext, failure: ChunkFailure, streamStarted: boolean): Outcome {
  const res = ctx.res;
  if (failure.kind === 'leg') {
    const outcome = answerLegFailure(ctx, failure.error, 'decode', streamStarted);
    if (streamStarted && outcome !== 'aborted' && !res.destroyed) res.end(streamFailureEvent(failure.error));
    return outcome;
  }
  const status = failure.status;
  ctx.log.logger.warn(
    { status, kind: failure.kind, message: failure.kind === 'bad_answer' ? failure.message : undefined },
    'chunked decode: a chunk failed',
  );
  if (streamStarted) {
    if (!res.destroyed) {
      const message =
        failure.kind === 'bad_answer'
          ? failure.message
          : `decode chunk failed with status ${status}: ${failure.body.toString('utf8', 0, 500)}`;
      res.end(sseErrorEvent(status, message));
    }
  } else if (failure.kind === 'http_error') {
    const headers = responseHeaders(failure.headers, true);
    headers['content-length'] = String(failure.body.length);
    res.writeHead(status, headers);
    res.end(failure.body);
  } else writeJsonError(res, status, failure.message, status === 500 ? 'InternalServerError' : 'BadGateway');
  return status >= 500 ? 'upstream_error' : 'client_error';
}

/** Answers an encode stage that failed (encode-stage.ts): its 502 or 504, or nothing for a client that left. */
export function answerEncodeFailure(
  metrics: SidecarMetrics,
  res: ServerResponse,
  logger: Logger,
  failure: EncodeFailure,
): Outcome {
  if (failure.kind === 'aborted') {
    metrics.clientAborts.inc({ stage: 'encode' });
    return 'aborted';
  }
  if (failure.kind === 'timeout') metrics.timeouts.inc({ stage: 'encode' });
  writeJsonError(res, failure.status, failure.message);
  logger.warn(failure.message);
  return failure.kind;
}
