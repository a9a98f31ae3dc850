/**
 * What one request carries through the sidecar's pipeline, and what a connector is. The path of an inference request:
 *
 *   server.ts        the HTTP surface (node:http): inference POSTs go to pd-handler.ts, the rest to its own routes
 *   pd-handler.ts    reads the routing headers, checks the prefill target, reads the body, builds the PdContext
 *   encode-stage.ts  E/PD (--ec-connector): the encoder legs for the multimodal items, before the connector
 *   connectors/      one file per --kv-connector: the order and the bodies of the two legs
 *   legs.ts          builds the legs' requests (headers, deadlines, retries) and times the prefill
 *   prefill-fallback.ts  --prefill-failure-policy after a failed prefill
 *   decode.ts        sends the decode leg and relays its answer (client-relay.ts) to the client
 *   chunked-decode.ts  --decode-chunk-size: the decode leg as several bounded requests, stitched into one answer
 *   local-decode.ts  requests without a prefill that the sidecar rewrites (a P2P pull, chunked decode)
 *   failures.ts      every failure's status and body, in one place
 *   passthrough.ts   requests without a prefill (local) and every other route: sent on unchanged
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ApiType, Target } from '../common/index.js';
import type { StopSignal } from '../common/upstream-leg.js';
import type { Outcome, SidecarMetrics } from './metrics.js';
import type { SidecarConfig } from './options.js';
import type { PdTrace } from './pd-trace.js';
import type { UpstreamAgents } from './upstream.js';
import type { JsonObject } from '../common/json.js';

/** Where an inference request's time went, for the latency split observed at its first byte (decode.ts). */
export interface RequestTimings {
  start: number;
  /** Time spent waiting on the prefill leg. */
  prefillMs: number;
  /** Time from sending the decode leg to its first byte. */
  decodeTtfbMs: number;
}

/**
 * What relaying an answer from the local vLLM needs: the narrow context every path that answers through decode.ts has,
 * P/D requests and requests passed through unchanged alike.
 */
export interface RelayContext {
  readonly requestId: string;
  readonly res: ServerResponse;
  /** Stopped when the client disconnects. */
  readonly signal: StopSignal;
  readonly config: SidecarConfig;
  readonly metrics: SidecarMetrics;
  /**
   * The request's log; its `logger` (a child logger with the request id) is made on first use. A holder rather than a
   * getter in the context literal: V8 gives every object literal with an accessor its own hidden class, kept in the
   * old generation, which kept each request's context alive through scavenges until a full collection.
   */
  readonly log: { readonly logger: Logger };
  readonly timings: RequestTimings;
  /** The prefill target, named in failure logs; absent on paths without one. */
  readonly target?: Target;
}

/** An inference request with a parsed body, served by the local decoder (a P/D request, or a local one the sidecar rewrites). */
export interface DecodeContext extends RelayContext {
  /** W3C trace context shared by both legs (the client's, or one made for this request). */
  readonly traceparent: string;
  readonly api: ApiType;
  readonly method: string;
  /** Path and query, forwarded unchanged to both legs. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly clientAddress: string;
  /** The client's body without its KV transfer fields. */
  readonly body: JsonObject;
  /** The bytes of `body`: the client's own when nothing was removed. */
  readonly rawBody: Buffer;
  readonly decoderOrigin: string;
  readonly agents: UpstreamAgents;
  /** The upstream legs' headers, built once per request by legHeaders() (legs.ts). */
  forwardedHeaders?: Record<string, string | string[]>;
  /** The validated x-kv-cache-source-host-port: a peer to pull cached prefix from (kv-peer.ts). */
  readonly kvCacheSource?: Target;
  /** This rank's own endpoint (POD_IP:port), normalized; a KV cache source equal to it is not pulled from. */
  readonly selfHostPort?: string;
  /** The request's spans, when tracing is on (pd-trace.ts). */
  readonly trace?: PdTrace;
}

/** One P/D request: the client's request, its cleaned body, the chosen prefiller and the local decoder. */
export interface PdContext extends DecodeContext {
  readonly target: Target;
}

/** Whether the request has a prefill target (a P/D request), else it is served locally. */
export function isPdContext(ctx: DecodeContext): ctx is PdContext {
  return ctx.target !== undefined;
}

/** A P/D protocol (--kv-connector): how the two legs of a request are sent and answered. */
export interface Connector {
  readonly name: SidecarConfig['kvConnector'];
  /** Serves the request end to end (the answer is written to ctx.res); returns its outcome for metrics. */
  handle(ctx: PdContext): Promise<Outcome>;
}
