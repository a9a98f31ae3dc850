/**
 * The response half of an ext_proc stream: echoes headers with `x-went-into-resp-headers: true`; streams SSE bodies
 * through chunk by chunk and buffers other bodies to the end (re-chunked at 62000 bytes, as llm-d does), falling
 * back to streaming when a body outgrows the buffer bound; rewrites the model name back after a model rewrite; and
 * records the request's latency, sizes and token usage when the response ends.
 */
import { asBuffer, type HttpBody, type HttpHeaders, type ProcessingResponse } from '../../common/envoy/ext-proc.js';
import type { RequestSeries } from '../metrics.js';
import { echoHeaders, receiveHeaders } from './header-map.js';
import { responseHeadersResponse, setHeader, streamedBody } from './messages.js';
import { SseUsageReader, rewriteModelName, usageFromJson, type Usage } from './usage.js';

export interface ResponseTrackerSettings {
  send: (m: ProcessingResponse) => void;
  /** The request's metrics (every enabled family). */
  series: RequestSeries;
  streamRequested: boolean;
  parsesUsage: boolean;
  maxBufferedBytes: number;
  /** performance.now() at the request body's end of stream (0 if the request was never scheduled). */
  requestEndAt: number;
  rewriteModel?: { from: string; to: string };
  /** Headers added to the response (ResponseReceived plugins, the opt-in decision header). */
  extraHeaders?: Array<[string, string]>;
  onComplete: () => void;
}

export class ResponseTracker {
  private streaming = false;
  private passthrough = false;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private bytes = 0;
  private firstChunkAt = 0;
  private lastChunkAt = 0;
  private sse: SseUsageReader | undefined;
  private usage: Usage | undefined;
  private done = false;

  constructor(private readonly s: ResponseTrackerSettings) {
    this.streaming = s.streamRequested;
  }

  onHeaders(h: HttpHeaders): void {
    const received = receiveHeaders(h.headers);
    const status = received.values[':status'] ?? received.values['status'];
    if (status !== undefined && status !== '200') this.s.series.error('ModelServerError');
    if ((received.values['content-type'] ?? '').toLowerCase().includes('text/event-stream')) this.streaming = true;
    if (this.streaming && this.s.parsesUsage) this.sse = new SseUsageReader();
    const extraHeaders = this.s.extraHeaders ?? [];
    const extra = extraHeaders.map(([k, v]) => setHeader(k, v));
    // A header the EPP sets replaces the model server's of that name, as upstream's response header map does.
    const replaced = new Set(extraHeaders.map(([k]) => k.toLowerCase()));
    this.s.send(responseHeadersResponse([setHeader('x-went-into-resp-headers', 'true'), ...echoHeaders(received.values, received.repeated, replaced), ...extra]));
    if (h.end_of_stream) this.finish();
  }

  onBody(b: HttpBody): void {
    if (this.done) return;
    let chunk: Buffer = asBuffer(b.body);
    const now = performance.now();
    if (chunk.length > 0) {
      if (this.firstChunkAt === 0) this.firstChunkAt = now;
      this.lastChunkAt = now;
    }
    this.bytes += chunk.length;
    const eos = b.end_of_stream === true;
    if (this.streaming || this.passthrough) {
      this.sse?.feed(chunk);
      if (this.s.rewriteModel) chunk = rewriteModelName(chunk, this.s.rewriteModel.from, this.s.rewriteModel.to);
      for (const m of streamedBody('response_body', chunk, eos)) this.s.send(m);
    } else {
      if (chunk.length > 0) this.buffered.push(chunk);
      this.bufferedBytes += chunk.length;
      if (this.bufferedBytes > this.s.maxBufferedBytes) {
        // Too large to hold: pass what we have and the rest through unchanged (no usage for this response).
        this.passthrough = true;
        this.flush(false);
      } else if (eos) {
        const body = Buffer.concat(this.buffered);
        if (this.s.parsesUsage) this.usage = usageFromJson(body);
        this.buffered = [];
        const out = this.s.rewriteModel ? rewriteModelName(body, this.s.rewriteModel.from, this.s.rewriteModel.to) : body;
        for (const m of streamedBody('response_body', out, true)) this.s.send(m);
      }
    }
    if (eos) this.finish();
  }

  /** Trailers end the response: whatever is still buffered goes out (no end of stream: the trailers carry it). */
  onTrailers(): void {
    if (this.done) return;
    if (this.buffered.length > 0) this.flush(false);
    this.finish();
  }

  private flush(eos: boolean): void {
    const body = Buffer.concat(this.buffered);
    this.buffered = [];
    this.bufferedBytes = 0;
    const out = this.s.rewriteModel ? rewriteModelName(body, this.s.rewriteModel.from, this.s.rewriteModel.to) : body;
    for (const m of streamedBody('response_body', out, eos)) this.s.send(m);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    const m = this.s.series;
    m.responseSize.observe(this.bytes);
    if (this.s.requestEndAt > 0) {
      const end = performance.now();
      const duration = (end - this.s.requestEndAt) / 1000;
      m.duration.observe(duration);
      if (this.firstChunkAt > 0) m.ttft(this.streaming, (this.firstChunkAt - this.s.requestEndAt) / 1000);
      if (this.sse) {
        this.sse.end();
        this.usage ??= this.sse.usage;
      }
      const u = this.usage;
      if (u) {
        m.usage(u.promptTokens, u.completionTokens, u.cachedTokens);
        if (u.completionTokens > 0) m.ntpot.observe(duration / u.completionTokens);
        if (this.streaming && u.completionTokens > 1 && this.lastChunkAt > this.firstChunkAt) {
          m.tpot((this.lastChunkAt - this.firstChunkAt) / 1000 / (u.completionTokens - 1));
        }
      }
    }
    this.s.onComplete();
  }
}
