/**
 * The step every connector ends with: send the decode leg to the local vLLM and relay its answer to the client
 * (client-relay.ts), observing the latency split at the first byte. Requests passed through unchanged
 * (passthrough.ts) relay their answer through here too, with the narrower {@link RelayContext}.
 */
import { traceparentOf } from '../common/index.js';
import { UpstreamLeg, type LegRequest, type StopSignal } from '../common/upstream-leg.js';
import { relayToClient } from './client-relay.js';
import { answerLegFailure } from './failures.js';
import { decodeRequest, legHeaders } from './legs.js';
import type { Mode, Outcome } from './metrics.js';
import type { DecodeContext, RelayContext } from './pd-context.js';

/** How a decode answer is relayed. */
export interface RelayStep {
  mode: Mode;
  /** The prefiller's cached tokens to write into the answer's usage (NIXL); undefined: relay unchanged. */
  rewriteCached?: number;
  /** Chunks to put back in front of the answer (a probe read them). */
  prefix?: Buffer[];
}

/** A decode leg to send, and how to relay its answer. */
export interface DecodeStep extends RelayStep {
  body: Buffer | string;
  /** Stops the decode leg from outside with its LegStopped reason (e.g. the concurrent SGLang prefill failed). */
  peerSignal?: StopSignal;
}

/** Sends the decode leg and relays its answer to the client. */
export async function runDecode(ctx: DecodeContext, step: DecodeStep): Promise<Outcome> {
  const span = ctx.trace?.startDecode(ctx.requestId, ctx.decoderOrigin, ctx.body.stream === true);
  const outcome = await sendDecode(ctx, step, span && { ...legHeaders(ctx, false), traceparent: traceparentOf(span) });
  if (span) ctx.trace!.endDecode(span, outcome);
  return outcome;
}

async function sendDecode(ctx: DecodeContext, step: DecodeStep, headers?: LegRequest['headers']): Promise<Outcome> {
  let leg: UpstreamLeg;
  try {
    leg = await UpstreamLeg.open(
      decodeRequest(
        ctx,
        step.body,
        headers ? { peerSignal: step.peerSignal, headers } : { peerSignal: step.peerSignal },
      ),
    );
  } catch (err) {
    return answerLegFailure(ctx, err, 'decode', false);
  }
  return relayDecode(ctx, leg, step);
}

/** Relays the answer of an opened decode leg to the client; the outcome follows its status, or how it failed. */
export async function relayDecode(ctx: RelayContext, leg: UpstreamLeg, step: RelayStep): Promise<Outcome> {
  const outcome = await relayToClient(leg, {
    res: ctx.res,
    rewriteCached: step.rewriteCached,
    maxRewriteBody: ctx.config.maxRewriteBodySize,
    prefix: step.prefix,
    metrics: ctx.metrics,
    logger: () => ctx.log.logger,
    // Latency is an inference request's: passthrough answers (vLLM's /metrics, /v1/models) are not timed.
    onFirstClientByte: step.mode === 'passthrough' ? undefined : () => observeFirstByte(ctx, step.mode, leg),
  });
  if (outcome.kind === 'done')
    return leg.status >= 500 ? 'upstream_error' : leg.status >= 400 ? 'client_error' : 'success';
  return answerLegFailure(ctx, outcome.error, 'decode', outcome.headersSent);
}

/** The latency split of an inference request at its first byte to the client (TTFT, decode TTFB, the sidecar's share). */
export function observeFirstByte(ctx: RelayContext, mode: Mode, leg: UpstreamLeg): void {
  const now = performance.now();
  const timings = ctx.timings;
  timings.decodeTtfbMs = (leg.firstByteAt || now) - leg.sentAt;
  ctx.metrics.decodeTtfb.observe({ mode }, timings.decodeTtfbMs / 1000);
  ctx.metrics.ttft.observe({ mode }, (now - timings.start) / 1000);
  ctx.metrics.overhead.observe(
    { mode },
    Math.max(0, now - timings.start - timings.prefillMs - timings.decodeTtfbMs) / 1000,
  );
}
