/**
 * Server-sent events, parsed as they arrive, and the per-request metrics computed from them: TTFT is the time of the
 * first chunk carrying output text, ITL the gaps between consecutive chunks carrying output text, and the output length
 * the usage chunk's completion_tokens when the server sends one (stream_options.include_usage), else the number of
 * content chunks. A JSON `error` object in a data frame, or an `event: error` frame, marks the request failed.
 */
import { isObject } from '../common/json.js';

export interface SseEvent {
  event?: string;
  data: string;
}

/** Incremental SSE parser (WHATWG event-stream rules for data/event fields, any line ending, comments ignored). */
export class SseParser {
  private buf = '';
  private data: string[] = [];
  private hasData = false;
  private eventName: string | undefined;

  push(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    this.buf += text;
    let start = 0;
    const s = this.buf;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 13) {
        if (i + 1 >= s.length) break; // a CR at the end may be the first half of CRLF: wait for more
        this.line(s.slice(start, i), out);
        if (s.charCodeAt(i + 1) === 10) i++;
      } else {
        this.line(s.slice(start, i), out);
      }
      start = i + 1;
    }
    this.buf = s.slice(start);
    return out;
  }

  /** End of stream: a final event without its blank line is still delivered (lenient, as most clients are). */
  end(): SseEvent[] {
    const out: SseEvent[] = [];
    if (this.buf.length > 0) this.line(this.buf.replace(/\r$/, ''), out);
    this.buf = '';
    this.line('', out);
    return out;
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.hasData) out.push(this.eventName !== undefined ? { event: this.eventName, data: this.data.join('\n') } : { data: this.data.join('\n') });
      this.data = [];
      this.hasData = false;
      this.eventName = undefined;
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') {
      this.data.push(value);
      this.hasData = true;
    } else if (field === 'event') {
      this.eventName = value;
    }
  }
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface StreamMetricsResult {
  ttftMs?: number;
  itlMs: number[];
  outputTokens: number;
  usage?: Usage;
  /** Chunks that carried output text. */
  contentChunks: number;
  /** `data: [DONE]` was received. */
  done: boolean;
  /** The server reported an error in the stream. */
  error?: string;
}

/** Output text of one chat or completions chunk choice (reasoning text counts: it is generated tokens too). */
function choiceText(choice: unknown): string {
  if (!isObject(choice)) return '';
  let out = '';
  if (typeof choice.text === 'string') out += choice.text;
  const delta = choice.delta;
  if (isObject(delta)) {
    if (typeof delta.content === 'string') out += delta.content;
    if (typeof delta.reasoning_content === 'string') out += delta.reasoning_content;
    else if (typeof delta.reasoning === 'string') out += delta.reasoning;
  }
  return out;
}

function errorText(err: unknown): string {
  if (typeof err === 'string') return err;
  if (isObject(err) && typeof err.message === 'string') return err.message;
  return JSON.stringify(err);
}

/** Accumulates one response stream's metrics; times are in the caller's unit and origin. */
export class StreamMetrics {
  private readonly parser = new SseParser();
  private firstAt: number | undefined;
  private lastAt: number | undefined;
  private readonly itl: number[] = [];
  private chunks = 0;
  private usage: Usage | undefined;
  private done = false;
  private error: string | undefined;

  constructor(private readonly startMs: number) {}

  /** Raw response bytes (as text) received at `atMs`. */
  push(atMs: number, text: string): void {
    for (const ev of this.parser.push(text)) this.onEvent(atMs, ev);
  }

  /** End of the body at `atMs`. */
  end(atMs: number): void {
    for (const ev of this.parser.end()) this.onEvent(atMs, ev);
  }

  onEvent(atMs: number, ev: SseEvent): void {
    const data = ev.data.trim();
    if (ev.event === 'error') {
      this.error ??= data.length > 0 ? data : 'error event';
      return;
    }
    if (data === '[DONE]') {
      this.done = true;
      return;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      return; // not JSON: ignored, as OpenAI clients do with keep-alive noise
    }
    if (!isObject(obj)) return;
    if (obj.error !== undefined && obj.error !== null) {
      this.error ??= errorText(obj.error);
      return;
    }
    if (Array.isArray(obj.choices)) {
      let text = '';
      for (const c of obj.choices) text += choiceText(c);
      if (text.length > 0) {
        this.chunks++;
        if (this.firstAt === undefined) this.firstAt = atMs;
        else this.itl.push(atMs - this.lastAt!);
        this.lastAt = atMs;
      }
    }
    const u = obj.usage;
    if (isObject(u) && typeof u.completion_tokens === 'number') {
      this.usage = { prompt_tokens: typeof u.prompt_tokens === 'number' ? u.prompt_tokens : 0, completion_tokens: u.completion_tokens };
    }
  }

  result(): StreamMetricsResult {
    const r: StreamMetricsResult = {
      itlMs: this.itl,
      outputTokens: this.usage?.completion_tokens ?? this.chunks,
      contentChunks: this.chunks,
      done: this.done,
    };
    if (this.firstAt !== undefined) r.ttftMs = this.firstAt - this.startMs;
    if (this.usage) r.usage = this.usage;
    if (this.error !== undefined) r.error = this.error;
    return r;
  }
}

/**
 * Pure: per-request metrics from a recorded SSE timeline (ms timestamps of each received chunk with its text). A chunk's
 * text is either raw event-stream bytes (`data: {...}\n\n`, possibly several events or part of one) or one bare event
 * payload (`{...}` or `[DONE]`). Adds the end-to-end time (to the last chunk) and TPOT.
 */
export function metricsFromSseTimeline(
  startMs: number,
  chunks: Array<{ atMs: number; data: string }>,
): StreamMetricsResult & {
  /** Last chunk's time − startMs. */
  e2eMs: number;
  /** (e2e − ttft) / (outputTokens − 1), when there are at least 2 output tokens. */
  tpotMs?: number;
} {
  const m = new StreamMetrics(startMs);
  let lastAt = startMs;
  for (const c of chunks) {
    const t = c.data.trimStart();
    if ((t.startsWith('{') || t.startsWith('[DONE]')) && !/^(data|event):/m.test(c.data)) m.onEvent(c.atMs, { data: c.data });
    else m.push(c.atMs, c.data);
    lastAt = c.atMs;
  }
  m.end(lastAt);
  const r = m.result();
  const e2eMs = lastAt - startMs;
  return r.ttftMs !== undefined && r.outputTokens > 1 ? { ...r, e2eMs, tpotMs: (e2eMs - r.ttftMs) / (r.outputTokens - 1) } : { ...r, e2eMs };
}
