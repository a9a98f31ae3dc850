/**
 * One ext_proc stream = one HTTP request through Envoy, in FULL_DUPLEX_STREAMED body mode:
 *
 * - request headers: stored (lower-cased), `x-request-id` generated when missing, the client's routing headers
 *   dropped. No reply yet, unless the request has no body (then a random endpoint is chosen at once, as upstream).
 * - request body: buffered up to the size bound (beyond it: 413) within the process-wide buffer budget (beyond it:
 *   503 rejected-saturated); a body that stops arriving for the body timeout gets 408; at end of stream the request is parsed and
 *   scheduled, and the reply is one headers response (route-cache clear, destination, Content-Length, echoed and
 *   plugin-added headers, removal of unset routing headers, `envoy.lb` metadata) then the body in ≤ 62000-byte chunks.
 *   Trailers instead of a body end-of-stream finish the body the same way.
 * - response headers/body/trailers: headers echoed with `x-went-into-resp-headers`; SSE bodies echoed chunk by chunk,
 *   others buffered to the end (bounded) and re-chunked; usage parsed for the token metrics.
 * Failures become immediate responses (InferenceError) or, for bugs, an INTERNAL stream error.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  asBuffer,
  valueToJson,
  type HttpBody,
  type HttpHeaders,
  type Metadata,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../common/envoy/ext-proc.js';
import type { ParsedRequest, RequestDirector, ScheduledRequest } from '../director.js';
import type { DisaggDecisionRecord } from '../framework/types.js';

/** The response header carrying the P/D decision, when the request asks for it. */
export const DECISION_HEADER = 'x-pd-router-decision';
/** The request header that asks for the decision header. */
export const DEBUG_REQUEST_HEADER = 'x-pd-router-debug';

/** `prefill-decode; reason=remote-faster; localMs=812.5; remoteMs=310.2; ...` (scalar details only). */
export function formatDecision(record: DisaggDecisionRecord): string {
  const parts = [record.type, `reason=${record.reason}`];
  for (const [k, v] of Object.entries(record.detail ?? {})) {
    if (typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && /^[\w.:/[\]-]+$/.test(v)))
      parts.push(`${k}=${v}`);
  }
  return parts.join('; ');
}
import { InferenceError } from '../framework/errors.js';
import { EvictedError } from '../flowcontrol/eviction.js';
import type { FlowControlGate, FlowRequest, FlowTicket } from '../flowcontrol/gate.js';
import { sloTtftMs } from '../flowcontrol/policies.js';
import { DEFAULT_FAIRNESS_ID, type EppMetrics, type RequestSeries } from '../metrics.js';
import {
  DESTINATION_ENDPOINT,
  FAIRNESS_ID_HEADERS,
  REQUEST_ID_HEADER,
  ROUTING_HEADERS,
  SUBSET_HINT_KEY,
  SUBSET_HINT_NAMESPACE,
} from '../../common/pd-contract.js';
import type { Tracing } from '../../common/tracing/index.js';
import { firstHeader } from '../routing-headers.js';
import { echoHeaders, receiveHeaders, type ReceivedHeaders } from './header-map.js';
import { immediateResponse, requestHeadersResponse, setHeader, streamedBody } from './messages.js';
import type { RequestBufferBudget } from './request-buffer-budget.js';
import { EppRequestTrace } from './request-trace.js';
import { ResponseTracker } from './response-tracker.js';

/** What a routed request's forwarded body is replaced with: the bytes were sent. */
const EMPTY_BODY = Buffer.alloc(0);

export interface StreamSettings {
  maxRequestBodyBytes: number;
  maxResponseBodyBytes: number;
  /** A stream with no message for this long is ended with DEADLINE_EXCEEDED; 0 disables. */
  idleTimeoutMs: number;
  /** A request body with no new chunk for this long (from the headers on) gets 408; 0 disables. */
  requestBodyTimeoutMs: number;
  /** Request body bytes all streams together may hold. */
  budget: RequestBufferBudget;
  /** When to add the x-pd-router-decision response header. */
  decisionHeader?: 'off' | 'on-request' | 'always';
}

export interface StreamDependencies {
  director: RequestDirector;
  metrics: EppMetrics;
  logger: Logger;
  settings: StreamSettings;
  /** Called when the stream is over (for drain accounting). */
  onClose?: () => void;
  /** Refuses requests this replica must not route (a follower under leader election); checked before any decision. */
  admission?: () => InferenceError | undefined;
  /** Flow control, when the flowControl feature gate is on: every parsed request passes it before scheduling. */
  gate?: FlowControlGate;
  /** OpenTelemetry tracing (--tracing); absent or off: no span is built. */
  tracing?: Tracing;
}

type Duplex = grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

export class ExtProcStream {
  private headers: ReceivedHeaders = { values: Object.create(null) as Record<string, string>, repeated: new Set() };
  private requestId = '';
  private chunks: Buffer[] = [];
  private bodyBytes = 0;
  /** Bytes of `chunks` taken from the budget. */
  private held = 0;
  private bodyTimer: NodeJS.Timeout | undefined;
  private requestDone = false;
  private subset: string[] | undefined;
  private parsed: ParsedRequest | undefined;
  private scheduled: ScheduledRequest | undefined;
  /** Aborted when the stream closes while an asynchronous producer holds the decision. */
  private scheduling: AbortController | undefined;
  /** Set while the request waits in a flow-control queue. */
  private ticket: FlowTicket | undefined;
  /** Set once flow control let the request through (its capacity is released on completion). */
  private admitted: FlowRequest | undefined;
  /** Ends flow control's tracking of the scheduled request as an eviction victim (enableEviction). */
  private untrack: (() => void) | undefined;
  private response: ResponseTracker | undefined;
  /** The request's metric series, once it has a model (resolved once, used for every measurement). */
  private series: RequestSeries | undefined;
  private closed = false;
  /** The request's spans, when tracing is on. */
  private trace: EppRequestTrace | undefined;
  private idle: NodeJS.Timeout | undefined;
  private readonly openedAt = performance.now();
  /** Wall-clock receipt of the request (its ext_proc stream opening), for flow control's SLO deadlines. */
  private readonly receivedAt = Date.now();
  private requestEndAt = 0;

  constructor(
    private readonly call: Duplex,
    private readonly deps: StreamDependencies,
  ) {
    deps.metrics.streamOpened();
    call.on('data', (message: ProcessingRequest) => this.onMessage(message));
    call.on('end', () => {
      this.close('OK');
      call.end();
    });
    call.on('cancelled', () => this.close('CANCELLED'));
    call.on('error', () => this.close('ERROR'));
    this.touch();
  }

  private touch(): void {
    if (this.deps.settings.idleTimeoutMs <= 0 || this.closed) return;
    // One timer per stream, restarted on every message.
    if (this.idle) {
      this.idle.refresh();
      return;
    }
    this.idle = setTimeout(() => {
      this.deps.logger.warn(
        { reqId: this.requestId, idleTimeoutMs: this.deps.settings.idleTimeoutMs },
        'ext_proc stream idle too long; ending it',
      );
      this.fail(grpc.status.DEADLINE_EXCEEDED, 'ext_proc stream idle timeout');
    }, this.deps.settings.idleTimeoutMs);
    this.idle.unref();
  }

  /** (Re)starts the wait for the next request body chunk. */
  private awaitBody(): void {
    const ms = this.deps.settings.requestBodyTimeoutMs;
    if (ms <= 0 || this.closed || this.requestDone) return;
    if (this.bodyTimer) {
      this.bodyTimer.refresh();
      return;
    }
    this.bodyTimer = setTimeout(() => {
      if (this.closed || this.requestDone) return;
      this.deps.logger.warn(
        { reqId: this.requestId, requestBodyTimeoutMs: ms, bodyBytes: this.bodyBytes },
        'request body stalled; answering 408',
      );
      this.reject(
        new InferenceError(
          'RequestTimeout',
          `request body made no progress for ${ms}ms (${this.bodyBytes} bytes received)`,
        ),
      );
    }, ms);
    this.bodyTimer.unref();
  }

  /** Drops the buffered body and gives its bytes back to the budget. */
  private releaseBody(): void {
    clearTimeout(this.bodyTimer);
    this.chunks = [];
    this.deps.settings.budget.give(this.held);
    this.held = 0;
  }

  private send(response: ProcessingResponse): void {
    if (!this.closed) this.call.write(response);
  }

  private fail(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.close(grpc.status[code] ?? 'ERROR');
    this.call.emit('error', { code, details });
  }

  private onMessage(match: ProcessingRequest): void {
    if (this.closed) return;
    this.touch();
    try {
      this.captureMetadata(match.metadata_context);
      switch (match.request) {
        case 'request_headers': {
          this.onRequestHeaders(match.request_headers!);
          return;
        }
        case 'request_body': {
          this.onRequestBody(match.request_body!);
          return;
        }
        case 'request_trailers':
          // With asynchronous scheduling the trailers are answered once the request is routed, keeping Envoy's order.
          if (!this.requestDone && this.parsed === undefined) {
            this.finishRequest(false, () => {
              this.send({ request_trailers: {} });
            });
            return;
          }
          {
            this.send({ request_trailers: {} });
            return;
          }
        case 'response_headers': {
          this.tracker().onHeaders(match.response_headers!);
          return;
        }
        case 'response_body': {
          this.tracker().onBody(match.response_body!);
          return;
        }
        case 'response_trailers':
          this.tracker().onTrailers();
          {
            this.send({ response_trailers: {} });
            return;
          }
        default:
          return;
      }
    } catch (err) {
      if (err instanceof InferenceError) {
        this.reject(err);
        return;
      }
      this.deps.logger.error({ err, reqId: this.requestId }, 'ext_proc stream failed');
      this.fail(grpc.status.INTERNAL, (err as Error).message);
    }
  }

  private captureMetadata(md: Metadata | null | undefined): void {
    const hint = md?.filter_metadata?.[SUBSET_HINT_NAMESPACE];
    if (!hint?.fields || !(SUBSET_HINT_KEY in hint.fields)) return;
    const list = valueToJson(hint.fields[SUBSET_HINT_KEY]);
    this.subset = Array.isArray(list) ? list.filter((value): value is string => typeof value === 'string') : [];
  }

  private onRequestHeaders(value: HttpHeaders): void {
    this.headers = receiveHeaders(value.headers);
    const values = this.headers.values;
    // A client never chooses the route: its routing headers are dropped here and removed from the request in the reply.
    for (const name of ROUTING_HEADERS) delete values[name];
    if (!values[REQUEST_ID_HEADER]) values[REQUEST_ID_HEADER] = randomUUID();
    this.requestId = values[REQUEST_ID_HEADER];
    if (this.deps.tracing?.enabled) this.trace = new EppRequestTrace(this.deps.tracing, values, this.requestId);
    this.admit();
    if (value.end_of_stream) this.routeHeaderOnly();
    else this.awaitBody();
  }

  /** Throws the admission's refusal; checked at the headers and again right before the decision. */
  private admit(): void {
    const refusal = this.deps.admission?.();
    if (refusal) {
      this.requestDone = true;
      this.releaseBody();
      throw refusal;
    }
  }

  /** A request without a body gets a random endpoint and no scheduling (llm-d `fallbackToRandomEndpoint`). */
  private routeHeaderOnly(): void {
    this.requestDone = true;
    const e = this.deps.director.randomEndpoint();
    if (!e) throw new InferenceError('Internal', 'no pods available in datastore');
    const set = [
      setHeader(DESTINATION_ENDPOINT, e.hostPort),
      ...echoHeaders(this.headers.values, this.headers.repeated),
    ];
    this.send(requestHeadersResponse(set, this.removals(), e.hostPort));
  }

  private onRequestBody(httpBody: HttpBody): void {
    if (this.requestDone) return;
    const chunk = asBuffer(httpBody.body);
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.deps.settings.maxRequestBodyBytes) {
      this.requestDone = true;
      this.releaseBody();
      throw new InferenceError(
        'PayloadTooLarge',
        `request body exceeds the limit of ${this.deps.settings.maxRequestBodyBytes} bytes`,
        'rejected-too-large',
      );
    }
    if (chunk.length > 0) {
      const budget = this.deps.settings.budget;
      if (!budget.take(chunk.length)) {
        this.requestDone = true;
        this.releaseBody();
        throw new InferenceError(
          'ServiceUnavailable',
          `request body buffers are full (${budget.inUse} of ${budget.limit} bytes held by requests in flight)`,
          'rejected-saturated',
        );
      }
      this.held += chunk.length;
      this.chunks.push(chunk);
    }
    if (httpBody.end_of_stream) this.finishRequest(true);
    else this.awaitBody();
  }

  private finishRequest(endOfStream: boolean, then?: () => void): void {
    this.requestDone = true;
    const start = performance.now();
    this.requestEndAt = start;
    this.admit();
    const body = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.releaseBody();
    const director = this.deps.director;
    this.parsed = director.parse(this.requestId, this.headers.values, body);
    const request = this.parsed.request;
    const fairnessId = firstHeader(request.headers, FAIRNESS_ID_HEADERS) ?? DEFAULT_FAIRNESS_ID;
    this.series = this.deps.metrics.request(request.model, request.targetModel, fairnessId, request.priority);
    const gate = this.deps.gate;
    if (gate) {
      const flowRequest: FlowRequest = {
        id: this.requestId,
        fairnessId,
        priority: request.priority,
        bytes: body.length,
        tokens: request.tokenCount,
        model: request.model,
        targetModel: request.targetModel,
        receivedAt: this.receivedAt,
        sloTtftMs: sloTtftMs(request.headers),
      };
      this.ticket = gate.admit(flowRequest, (err) => this.leaveQueue(flowRequest, err, endOfStream, body.length, then));
      if (this.ticket) return;
      this.admitted = flowRequest;
    }
    this.schedule(endOfStream, body.length, start, then);
  }

  /** Flow control dispatched the request (schedule it now, if this replica may still route) or shed it (answer with its error). */
  private leaveQueue(
    flowRequest: FlowRequest,
    err: InferenceError | undefined,
    endOfStream: boolean,
    bodyBytes: number,
    then?: () => void,
  ): void {
    this.ticket = undefined;
    if (err) {
      this.reject(err);
      return;
    }
    this.admitted = flowRequest;
    if (this.closed) return this.deps.gate?.release(flowRequest);
    try {
      this.admit();
      this.schedule(endOfStream, bodyBytes, performance.now(), then);
    } catch (e) {
      if (e instanceof InferenceError) {
        this.reject(e);
        return;
      }
      this.deps.logger.error({ err: e, reqId: this.requestId }, 'ext_proc stream failed');
      this.fail(grpc.status.INTERNAL, (e as Error).message);
    }
  }

  /** Schedules the parsed request (at once, or when an asynchronous producer decides) and routes it. */
  private schedule(endOfStream: boolean, bodyBytes: number, start: number, then?: () => void): void {
    const director = this.deps.director;
    const request = this.parsed!.request;
    if (!director.waits) {
      this.route((this.scheduled = director.schedule(request, this.subset)), bodyBytes, endOfStream, start);
      then?.();
      return;
    }
    // A request preparer (tokenizer) or an asynchronous producer (burst window) holds the decision; the stream may end
    // meanwhile.
    this.scheduling = new AbortController();
    director.scheduleAsync(request, this.subset, this.scheduling.signal).then(
      (scheduled) => {
        this.scheduling = undefined;
        if (this.closed) {
          director.complete(scheduled);
          return;
        }
        this.route((this.scheduled = scheduled), bodyBytes, endOfStream, start);
        then?.();
      },
      (err: unknown) => {
        this.scheduling = undefined;
        if (this.closed) return;
        if (err instanceof InferenceError) {
          this.reject(err);
          return;
        }
        this.deps.logger.error({ err, reqId: this.requestId }, 'ext_proc stream failed');
        this.fail(grpc.status.INTERNAL, err instanceof Error ? err.message : String(err));
      },
    );
  }

  /** Sends the routing decision and the body (the request is scheduled). */
  private route(scheduled: ScheduledRequest, bodyBytes: number, endOfStream: boolean, start: number): void {
    const request = this.parsed!.request;
    // Counted once scheduled, as upstream: a rejected request counts only as an error.
    this.series!.accepted(bodyBytes);
    this.series!.running.inc();
    // Tracked until its response ends: flow control may revoke it for a waiting higher priority (enableEviction).
    if (this.admitted && this.deps.gate)
      this.untrack = this.deps.gate.track(this.admitted, () => queueMicrotask(() => this.evicted()));
    const forwarded = this.parsed!.body;
    const set = [setHeader(DESTINATION_ENDPOINT, scheduled.destination)];
    if (forwarded.length > 0) set.push(setHeader('Content-Length', String(forwarded.length)));
    set.push(...echoHeaders(request.headers, this.headers.repeated));
    this.send(requestHeadersResponse(set, this.removals(), scheduled.destination));
    for (const m of streamedBody('request_body', forwarded, endOfStream)) this.send(m);
    this.deps.metrics.requestProcessed((performance.now() - start) / 1000);
    this.trace?.scheduled(start, this.parsed!, scheduled);
    // Sent: the stream may stay open for the whole response; keep none of the body and the prompt meanwhile.
    this.parsed!.body = EMPTY_BODY;
    this.deps.director.settle(scheduled);
    const d = scheduled.ctx.decision;
    if (this.deps.logger.isLevelEnabled('debug')) {
      this.deps.logger.debug(
        {
          reqId: this.requestId,
          model: request.model,
          destination: scheduled.destination,
          decision: d?.type,
          reason: d?.reason,
          tokens: request.tokenCount,
        },
        'request scheduled',
      );
    }
  }

  /** The opt-in debug header with the P/D decision, when enabled for this request. */
  private decisionHeader(): Array<[string, string]> {
    const mode = this.deps.settings.decisionHeader ?? 'off';
    const d = this.scheduled?.ctx.decision;
    if (mode === 'off' || !d) return [];
    if (mode === 'on-request' && !/\bdecision\b/.test(this.headers.values[DEBUG_REQUEST_HEADER] ?? '')) return [];
    return [[DECISION_HEADER, formatDecision(d)]];
  }

  /** Routing headers the EPP did not set: removed so a client's copy can never reach the sidecar. */
  private removals(): string[] {
    const set = this.parsed?.request.headers ?? this.headers.values;
    return ROUTING_HEADERS.filter((host) => host !== DESTINATION_ENDPOINT && set[host] === undefined);
  }

  private tracker(): ResponseTracker {
    if (!this.response) {
      const request = this.parsed?.request;
      this.response = new ResponseTracker({
        send: (response) => this.send(response),
        series: this.requestSeries(),
        streamRequested: request?.stream ?? false,
        parsesUsage: this.parsed?.parser.parsesUsage ?? true,
        maxBufferedBytes: this.deps.settings.maxResponseBodyBytes,
        requestEndAt: this.requestEndAt,
        rewriteModel:
          request && request.targetModel !== request.model
            ? { from: request.targetModel, to: request.model }
            : undefined,
        extraHeaders: [
          ...(this.scheduled ? this.deps.director.responseHeaders(this.scheduled) : []),
          ...this.decisionHeader(),
        ],
        onComplete: () => this.complete(),
      });
    }
    return this.response;
  }

  /** The request's series; before the body was parsed (or when it could not be), the one without a model. */
  private requestSeries(): RequestSeries {
    return (this.series ??= this.deps.metrics.request('', ''));
  }

  private reject(err: InferenceError): void {
    this.requestDone = true;
    this.releaseBody();
    this.requestSeries().error(err.code);
    this.trace?.rejected(err);
    this.deps.logger.debug({ reqId: this.requestId, status: err.status, reason: err.message }, 'request rejected');
    this.send(immediateResponse(err));
    this.close('OK');
    this.call.end();
  }

  /** Flow control revoked the request: 429 evicted, unless its response already ended (upstream ignores it then). */
  private evicted(): void {
    if (this.closed || this.completed) return;
    this.deps.logger.info({ reqId: this.requestId }, 'request evicted by flow control');
    this.reject(new EvictedError());
  }

  private completed = false;

  /** The request is over: release what scheduling held (once). */
  private complete(): void {
    if (this.completed) return;
    this.completed = true;
    this.untrack?.();
    if (this.admitted) this.deps.gate?.release(this.admitted, this.response?.usage);
    if (this.scheduled) {
      this.deps.director.complete(this.scheduled);
      this.series!.running.dec();
    }
  }

  private close(code: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ticket?.cancel();
    this.scheduling?.abort();
    clearTimeout(this.idle);
    this.releaseBody();
    this.complete();
    this.deps.metrics.streamClosed(code, (performance.now() - this.openedAt) / 1000);
    this.trace?.end(code);
    this.deps.onClose?.();
  }
}
