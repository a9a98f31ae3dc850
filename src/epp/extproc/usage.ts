/**
 * Token usage from model-server responses, as llm-d's OpenAI parser reads it: non-streaming JSON
 * `usage.{prompt_tokens|input_tokens, completion_tokens|output_tokens, prompt_tokens_details|input_tokens_details
 * .cached_tokens}`; SSE: a `data: {...}` line carrying `usage` (or a Responses API `response.completed` event),
 * `data: [DONE]` skipped. Upstream keeps the first such line; pd-router keeps the last, because with vLLM's
 * `continuous_usage_stats` every chunk carries the running totals and only the last one is the request's.
 */
import { StringDecoder } from 'node:string_decoder';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens?: number;
}

function toInt(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Math.trunc(Number(value));
  return undefined;
}

export function usageOf(entry: unknown): Usage | undefined {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return undefined;
  const o = entry as Record<string, unknown>;
  const details = (o.prompt_tokens_details ?? o.input_tokens_details) as Record<string, unknown> | undefined;
  const cached = details && typeof details === 'object' ? toInt(details.cached_tokens) : undefined;
  return {
    promptTokens: toInt(o.prompt_tokens) ?? toInt(o.input_tokens) ?? 0,
    completionTokens: toInt(o.completion_tokens) ?? toInt(o.output_tokens) ?? 0,
    ...(cached !== undefined ? { cachedTokens: cached } : {}),
  };
}

/** Usage of a complete non-streaming JSON response, if any. */
export function usageFromJson(body: Buffer): Usage | undefined {
  try {
    return usageOf((JSON.parse(body.toString('utf8')) as Record<string, unknown>)?.usage);
  } catch {
    return undefined;
  }
}

/** Usage of one SSE `data:` payload, if it carries one. */
export function usageFromSseData(data: string): Usage | undefined {
  if (data === '[DONE]' || !data.includes('"usage"')) return undefined;
  try {
    const o = JSON.parse(data) as Record<string, any>;
    if (o?.usage) return usageOf(o.usage);
    if (o?.type === 'response.completed' && o.response?.usage) return usageOf(o.response.usage);
  } catch {
    /* not JSON */
  }
  return undefined;
}

/** Incremental SSE reader: feeds chunks, keeps a bounded partial line, records the last usage and the event count. */
export class SseUsageReader {
  private partial = '';
  // Keeps multi-byte characters split across chunks intact.
  private readonly decoder = new StringDecoder('utf8');
  usage: Usage | undefined;
  events = 0;

  constructor(private readonly maxLineBytes = 1024 * 1024) {}

  feed(chunk: Buffer): void {
    const text = this.partial + this.decoder.write(chunk);
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > this.maxLineBytes) this.partial = '';
    for (const raw of lines) this.line(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
  }

  end(): void {
    this.partial += this.decoder.end();
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }

  private line(line: string): void {
    if (!line.startsWith('data:')) return;
    const data = line.slice(5).trimStart();
    if (data === '[DONE]') return;
    this.events++;
    const u = usageFromSseData(data);
    if (u) this.usage = u;
  }
}

/** Rewrites `"model":"<from>"` (with or without a space after the colon) to `<to>`, as llm-d's rewriteModelName. */
export function rewriteModelName(body: Buffer, from: string, to: string): Buffer {
  if (from === to) return body;
  const text = body.toString('utf8');
  const f = JSON.stringify(from);
  const t = JSON.stringify(to);
  const out = text.split(`"model":${f}`).join(`"model":${t}`).split(`"model": ${f}`).join(`"model": ${t}`);
  return out === text ? body : Buffer.from(out, 'utf8');
}
