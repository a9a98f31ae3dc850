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
  send: (response: ProcessingResponse) => void;
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
  /** The answer's token usage, once parsed (read when the request completes). */
  usage: Usage | undefined;
  private done = false;

  constructor(private readonly settings: ResponseTrackerSettings) {
    this.streaming = settings.streamRequested;
  }

  onHeaders(value: HttpHeaders): void {
    const received = receiveHeaders(value.headers);
    const status = received.values[':status'] ?? received.values['status'];
    if (status !== undefined && status !== '200') this.settings.series.error('ModelServerError');
    if ((received.values['content-type'] ?? '').toLowerCase().includes('text/event-stream')) this.streaming = true;
    if (this.streaming && this.settings.parsesUsage) this.sse = new SseUsageReader();
    const extraHeaders = this.settings.extraHeaders ?? [];
    const extra = extraHeaders.map(([k, value]) => setHeader(k, value));
    // A header the EPP sets replaces the model server's of that name, as upstream's response header map does.
    const replaced = new Set(extraHeaders.map(([k]) => k.toLowerCase()));
    this.settings.send(
      responseHeadersResponse([
        setHeader('x-went-into-resp-headers', 'true'),
        ...echoHeaders(received.values, received.repeated, replaced),
        ...extra,
      ]),
    );
    if (value.end_of_stream) this.finish();
  }

  onBody(httpBody: HttpBody): void {
    if (this.done) return;
    let chunk: Buffer = asBuffer(httpBody.body);
    const now = performance.now();
    if (chunk.length > 0) {
      if (this.firstChunkAt === 0) this.firstChunkAt = now;
      this.lastChunkAt = now;
    }
    this.bytes += chunk.length;
    const eos = httpBody.end_of_stream === true;
    if (this.streaming || this.passthrough) {
      this.sse?.feed(chunk);
      if (this.settings.rewriteModel)
        chunk = rewriteModelName(chunk, this.settings.rewriteModel.from, this.settings.rewriteModel.to);
      for (const m of streamedBody('response_body', chunk, eos)) this.settings.send(m);
    } else {
      if (chunk.length > 0) this.buffered.push(chunk);
      this.bufferedBytes += chunk.length;
      if (this.bufferedBytes > this.settings.maxBufferedBytes) {
        // Too large to hold: pass what we have and the rest through unchanged (no usage for this response).
        this.passthrough = true;
        this.flush(false);
      } else if (eos) {
        const body = Buffer.concat(this.buffered);
        if (this.settings.parsesUsage) this.usage = usageFromJson(body);
        this.buffered = [];
        const out = this.settings.rewriteModel
          ? rewriteModelName(body, this.settings.rewriteModel.from, this.settings.rewriteModel.to)
          : body;
        for (const m of streamedBody('response_body', out, true)) this.settings.send(m);
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
    const out = this.settings.rewriteModel
      ? rewriteModelName(body, this.settings.rewriteModel.from, this.settings.rewriteModel.to)
      : body;
    for (const m of streamedBody('response_body', out, eos)) this.settings.send(m);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    const m = this.settings.series;
    m.responseSize.observe(this.bytes);
    if (this.settings.requestEndAt > 0) {
      const end = performance.now();
      const duration = (end - this.settings.requestEndAt) / 1000;
      m.duration.observe(duration);
      if (this.firstChunkAt > 0) m.ttft(this.streaming, (this.firstChunkAt - this.settings.requestEndAt) / 1000);
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
    this.settings.onComplete();
  }
}
