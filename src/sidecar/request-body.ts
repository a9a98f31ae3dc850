/**
 * The client's request body, on every path (P/D, local, passthrough): read whole within --max-request-body-size and
 * --request-body-timeout before any upstream leg opens, so a stalled upload is a 408 and an oversized one a 413 from
 * the sidecar, and an upstream that fails cannot leave the client's upload half read.
 *
 * A body the sidecar does not read (an answer given before it) is drained within the same bounds, or its connection
 * is closed: an unread upload left on a keep-alive connection blocks the next request on it.
 *
 * `Expect: 100-continue`: the client sends the body only after "100 Continue". The sidecar sends it when it first reads
 * the body (as Go's server does), so a request refused first (a declared Content-Length over the limit: 413; an
 * invalid or forbidden prefill target: 400, 403) gets its final status without an upload, and its connection is
 * closed, since the client may send the body anyway.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { answerBodyFailure, answerRefusal, type Refusal } from './failures.js';
import type { Outcome, SidecarMetrics } from './metrics.js';
import type { SidecarConfig } from './options.js';

/** The body bounds (--max-request-body-size, --request-body-timeout). */
type BodyLimits = Pick<SidecarConfig, 'maxRequestBodySize' | 'requestBodyTimeout'>;

/** Why a request body could not be read. */
export class BodyError extends Error {
  constructor(
    readonly kind: 'too_large' | 'timeout' | 'aborted',
    message: string,
  ) {
    super(message);
  }
}

/** Requests waiting for "100 Continue" before sending their body. */
const awaitingContinue = new WeakSet<IncomingMessage>();

/** Marks a request that sent `Expect: 100-continue`; "100 Continue" goes out when its body is first read. */
export function expectContinue(req: IncomingMessage): void {
  awaitingContinue.add(req);
}

function sendContinue(req: IncomingMessage, res: ServerResponse): void {
  if (!awaitingContinue.delete(req)) return;
  if (!res.headersSent && !res.destroyed) res.writeContinue();
}

/** The declared Content-Length, or undefined (chunked, absent or malformed: Node's parser rejects the latter). */
export function declaredLength(req: IncomingMessage): number | undefined {
  const v = req.headers['content-length'];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Whether the request carries a body (HTTP/1.1: a non-zero Content-Length or a Transfer-Encoding). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
}

function tooLarge(limit: number): BodyError {
  return new BodyError('too_large', `request body exceeds ${limit} bytes (--max-request-body-size)`);
}

/**
 * Reads the whole request body, at most `limit` bytes within `timeoutMs`. A declared length over the limit fails
 * before anything is read (and before "100 Continue"). On failure the rest of the upload is discarded as it arrives;
 * the caller answers and closes the connection ({@link closeAfterAnswer}).
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limit: number, timeoutMs: number): Promise<Buffer> {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limit) return Promise.reject(tooLarge(limit));
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  sendContinue(req, res);
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(
      () => finish(new BodyError('timeout', `request body not received within ${timeoutMs}ms (--request-body-timeout)`)),
      timeoutMs,
    );
    const finish = (err?: Error) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('close', onClose);
      if (err) {
        req.resume();
        reject(err);
      } else resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return finish(tooLarge(limit));
      parts.push(chunk);
    };
    const onEnd = () => finish();
    const onAbort = () => finish(new BodyError('aborted', 'client disconnected while sending the request body'));
    // 'close' before 'end': the connection went away mid-upload.
    const onClose = () => {
      if (!req.readableEnded) onAbort();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onClose);
  });
}

/**
 * Consumes an unread request body so the connection can be reused, within the body bounds: true when it was read to
 * its end; false when it was larger than `limit` bytes, slower than `timeoutMs`, failed, or was never asked for
 * (Expect: 100-continue). On false the caller closes the connection after answering.
 */
export function drainBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<boolean> {
  if (req.readableEnded || !hasBody(req)) return Promise.resolve(true);
  if (awaitingContinue.has(req)) return Promise.resolve(false);
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limit) return Promise.resolve(false);
  return new Promise((resolve) => {
    let size = 0;
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('close', onFail);
      if (!ok) req.pause();
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) finish(false);
    };
    const onEnd = () => finish(true);
    const onFail = () => finish(false);
    const timer = setTimeout(onFail, timeoutMs);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onFail);
    req.once('close', onFail);
    req.resume();
  });
}

/**
 * Closes the client connection once the answer is sent (the rest of its upload is not read): the answer says
 * `Connection: close` when it has not started yet, and the socket is closed when it is finished.
 */
export function closeAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  if (!res.headersSent && !res.destroyed) res.setHeader('connection', 'close');
  if (res.writableFinished) req.socket.destroy();
  else res.once('finish', () => req.socket.destroy());
}

/**
 * The safety net for every answer: a request whose body was not read to its end when its answer finished is drained
 * within the bounds, or its connection closed, so the next request on it is never stuck behind the unread upload.
 */
export function settleUnreadBody(req: IncomingMessage, res: ServerResponse, limit: number, timeoutMs: number): void {
  res.once('finish', () => {
    if (req.complete || req.destroyed) return;
    void drainBody(req, limit, timeoutMs).then((drained) => {
      if (!drained) req.socket.destroy();
    });
  });
}

/** Reads the request body within its bounds; when it cannot, answers (413, 408) and returns the outcome instead. */
export async function readOrAnswer(req: IncomingMessage, res: ServerResponse, limits: BodyLimits, metrics: SidecarMetrics): Promise<Buffer | Outcome> {
  try {
    return await readBody(req, res, limits.maxRequestBodySize, limits.requestBodyTimeout);
  } catch (err) {
    if (!(err instanceof BodyError)) throw err;
    // The rest of the upload is not read: the connection closes after the answer.
    if (err.kind !== 'aborted') closeAfterAnswer(req, res);
    return answerBodyFailure(metrics, res, err);
  }
}

/**
 * Answers a request refused before its body was read: the body is drained first (within its bounds) so the
 * connection can be reused, or the connection is closed after the answer.
 */
export async function refuseBeforeBody(req: IncomingMessage, res: ServerResponse, limits: BodyLimits, refusal: Refusal): Promise<Outcome> {
  const drained = await drainBody(req, limits.maxRequestBodySize, limits.requestBodyTimeout);
  if (!drained) closeAfterAnswer(req, res);
  return answerRefusal(res, refusal);
}
