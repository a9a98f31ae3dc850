/**
 * Requests sent to the local vLLM as they came: an inference request without a prefill target (local prefill), and
 * every route that is not an inference route (health, /metrics, /v1/models, ...). The body is read whole within its
 * bounds, as on every path, and sent on byte for byte unless the client's KV transfer fields had to be removed; the
 * answer is relayed unchanged (decode.ts). The path has its own narrow context, {@link RelayContext}: it has no
 * prefiller and no parsed body.
 */
import type { IncomingMessage } from 'node:http';
import { UpstreamLeg, type LegRequest } from '../common/upstream-leg.js';
import { clientTransferFields } from './client-kv-params.js';
import { relayDecode } from './decode.js';
import { answerInvalidBody, answerLegFailure } from './failures.js';
import type { Outcome } from './metrics.js';
import type { RelayContext } from './pd-context.js';
import { hasBody, readOrAnswer } from './request-body.js';
import type { RequestLog, SidecarRank, Tracked } from './tracking.js';
import { forwardHeaders } from './upstream.js';

/** Sends the request to `origin` as it came (its body read whole first) and relays the answer unchanged. */
export async function passThrough(
  rank: SidecarRank,
  req: IncomingMessage,
  tracked: Tracked,
  log: RequestLog,
  origin: string,
  mode: 'local' | 'passthrough',
): Promise<Outcome> {
  const config = rank.config;
  const ctx = relayContext(rank, tracked, log);
  let body: Buffer | undefined;
  if (hasBody(req)) {
    const read = await readOrAnswer(req, tracked.res, config, rank.metrics);
    if (typeof read === 'string') return read;
    // Byte for byte, unless the client's KV transfer fields had to be removed.
    const kept = clientTransferFields(config.kvConnector).stripRaw(read, config.maxJsonDepth);
    if ('error' in kept) return answerInvalidBody(tracked.res, kept.error);
    if (kept.removed) log.logger.info({ mode }, "removed the client's KV transfer fields from the request body");
    body = kept.bytes;
  }
  const headers = forwardHeaders(req.headers, {
    requestId: log.requestId,
    dropHost: false,
    clientAddress: req.socket.remoteAddress ?? '',
  });
  return sendToDecoder(rank, ctx, { origin, method: req.method ?? 'GET', path: req.url ?? '/', headers, body }, mode);
}

/**
 * E/D (an encode stage, no prefiller): the body the encode stage left (with cache_hit_threshold 0 and, for ec-nixl,
 * ec_transfer_params) goes to the local decoder, and its answer is relayed unchanged.
 */
export async function decodeAfterEncode(
  rank: SidecarRank,
  req: IncomingMessage,
  tracked: Tracked,
  log: RequestLog,
  origin: string,
  body: Buffer,
): Promise<Outcome> {
  const config = rank.config;
  const ctx = relayContext(rank, tracked, log);
  rank.metrics.modes.inc({ connector: config.kvConnector, mode: 'local' });
  const headers = forwardHeaders(req.headers, {
    requestId: log.requestId,
    dropHost: false,
    clientAddress: req.socket.remoteAddress ?? '',
  });
  headers['content-type'] = 'application/json';
  return sendToDecoder(rank, ctx, { origin, method: 'POST', path: req.url ?? '/', headers, body }, 'local');
}

/** Sends one request to the local decoder, bounded by the decode deadlines, and relays its answer unchanged. */
async function sendToDecoder(
  rank: SidecarRank,
  ctx: RelayContext,
  request: Pick<LegRequest, 'origin' | 'method' | 'path' | 'headers' | 'body'>,
  mode: 'local' | 'passthrough',
): Promise<Outcome> {
  let leg: UpstreamLeg;
  try {
    leg = await UpstreamLeg.open({
      ...request,
      agent: rank.agents.decode,
      clientSignal: ctx.signal,
      firstByteTimeoutMs: rank.config.decodeFirstByteTimeout,
      idleTimeoutMs: rank.config.decodeIdleTimeout,
      label: 'decode',
    });
  } catch (err) {
    return answerLegFailure(ctx, err, 'decode', false);
  }
  return relayDecode(ctx, leg, { mode });
}

/** What relaying a local decoder's answer needs of the request: no body, no prefill. */
function relayContext(rank: SidecarRank, tracked: Tracked, log: RequestLog): RelayContext {
  return {
    requestId: log.requestId,
    res: tracked.res,
    signal: tracked.signal,
    config: rank.config,
    metrics: rank.metrics,
    log,
    timings: { start: tracked.start, prefillMs: 0, decodeTtfbMs: 0 },
  };
}
