/**
 * Replaces the decoder's `cached_tokens` with the prefiller's in decode answers. After a KV transfer the decoder
 * reports almost the whole prompt as cached; clients should see the prefiller's prefix-cache hits (llm-d #916).
 *
 * - SSE: bytes are cut into lines at '\n' however the upstream chunks them (a `data:` line split inside its JSON is
 *   joined first); each complete `data: {json}` line whose object carries `usage` (chat, completions) or
 *   `response.usage` (responses API) is rewritten; everything else passes byte for byte and complete lines are never
 *   held back. A line longer than the bound passes through unrewritten.
 * - JSON: the whole body is rewritten once complete, whatever its size up to the configured bound (upstream rewrote each
 *   32 KiB write separately and silently skipped large bodies).
 */
import { isObject, type JsonObject } from '../common/json.js';

const USAGE_MARKER = Buffer.from('"usage"');
const NULL_USAGE = Buffer.from('"usage":null');

/**
 * Whether `data` may hold a usage object: some `"usage"` in it is not `"usage":null`. Streamed chunks commonly carry
 * `"usage":null` (llm-d-inference-sim on every chunk; vLLM when asked for continuous usage), and parsing and
 * re-serializing each such event for nothing was the largest share of the sidecar's own CPU on a streamed request.
 * A `"usage"` followed by `:null` is a key whose value is null (inside a JSON string a quote is escaped), so nothing
 * is missed; any other form (`"usage": null` with a space, an object) is parsed as before.
 */
export function mayHoldUsage(data: Buffer): boolean {
  for (let at = data.indexOf(USAGE_MARKER); at >= 0; at = data.indexOf(USAGE_MARKER, at + USAGE_MARKER.length)) {
    const end = at + NULL_USAGE.length;
    if (end > data.length || data.compare(NULL_USAGE, 0, NULL_USAGE.length, at, end) !== 0) return true;
  }
  return false;
}

/** {@link mayHoldUsage} for one line of text. */
function lineMayHoldUsage(text: string): boolean {
  for (let at = text.indexOf('"usage"'); at >= 0; at = text.indexOf('"usage"', at + 7))
    if (!text.startsWith('"usage":null', at)) return true;
  return false;
}
const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);

function setCached(
  usage: JsonObject,
  detailsKey: 'prompt_tokens_details' | 'input_tokens_details',
  cached: number,
): void {
  const prev = usage[detailsKey];
  usage[detailsKey] = { ...(prev && typeof prev === 'object' ? prev : {}), cached_tokens: cached };
}

/** Rewrites a parsed answer in place; returns whether anything changed. */
export function rewriteUsage(obj: unknown, cached: number): boolean {
  if (!isObject(obj)) return false;
  const o = obj;
  let changed = false;
  if (isObject(o.usage)) {
    const usage = o.usage;
    setCached(
      usage,
      'input_tokens' in usage && !('prompt_tokens' in usage) ? 'input_tokens_details' : 'prompt_tokens_details',
      cached,
    );
    changed = true;
  }
  const resp = o.response as JsonObject | undefined;
  if (resp && typeof resp === 'object' && resp.usage && typeof resp.usage === 'object') {
    setCached(resp.usage as JsonObject, 'input_tokens_details', cached);
    changed = true;
  }
  return changed;
}

const DETAILS_KEY = Buffer.from('"prompt_tokens_details":{"cached_tokens":');
const CACHED_KEY = Buffer.from('"cached_tokens":');

/**
 * Fast path for vLLM's compact JSON: when `"cached_tokens":` occurs exactly once, right after
 * `"prompt_tokens_details":{`, splice the new number in. A key inside a JSON string would be escaped (`\"`), so the
 * byte pattern can only be the real key.
 */
function spliceCachedTokens(body: Buffer, cached: number): Buffer | undefined {
  const at = body.indexOf(DETAILS_KEY);
  if (at < 0 || body.indexOf(DETAILS_KEY, at + 1) >= 0) return undefined;
  if (body.indexOf(CACHED_KEY, body.indexOf(CACHED_KEY) + 1) >= 0) return undefined;
  const start = at + DETAILS_KEY.length;
  let end = start;
  while (end < body.length && body[end] >= 0x30 && body[end] <= 0x39) end++;
  if (end === start) return undefined;
  return Buffer.concat([body.subarray(0, start), Buffer.from(String(cached)), body.subarray(end)]);
}

/** Rewrites a complete JSON body; returns it unchanged when it is not a JSON object with usage. */
export function rewriteJsonBody(body: Buffer, cached: number): Buffer {
  if (body.indexOf(USAGE_MARKER) < 0) return body;
  const fast = spliceCachedTokens(body, cached);
  if (fast) return fast;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return body;
  }
  return rewriteUsage(parsed, cached) ? Buffer.from(JSON.stringify(parsed)) : body;
}

function rewriteLine(line: string, cached: number): string {
  // line has no terminator here
  const m = /^data:( ?)(.*)$/s.exec(line);
  if (!m || !m[2].startsWith('{') || !lineMayHoldUsage(m[2])) return line;
  let parsed: unknown;
  try {
    parsed = JSON.parse(m[2]);
  } catch {
    return line;
  }
  return rewriteUsage(parsed, cached) ? `data:${m[1]}${JSON.stringify(parsed)}` : line;
}

/** Rewrites cached_tokens in an SSE stream line by line, however the upstream chunks it. */
export class SseCachedTokensRewriter {
  private pending: Buffer = Buffer.alloc(0);
  /** Lines passed through unrewritten because they exceeded the bound. */
  oversizedLines = 0;

  constructor(
    private readonly cached: number,
    private readonly maxLineBytes = 16 * 1024 * 1024,
  ) {}

  /** Returns the bytes that can be sent now: every complete line, rewritten where needed. */
  push(chunk: Buffer): Buffer {
    const data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const lastNewline = data.lastIndexOf(NEWLINE);
    if (lastNewline < 0) {
      if (data.length > this.maxLineBytes) {
        // Give up on this line: pass it through as it comes.
        this.oversizedLines++;
        this.pending = EMPTY;
        return data;
      }
      this.pending = data;
      return EMPTY;
    }
    const complete = data.subarray(0, lastNewline + 1);
    // Usually a chunk ends at a line end and nothing is left over; a leftover is copied so the chunk can be freed.
    this.pending = lastNewline + 1 === data.length ? EMPTY : Buffer.from(data.subarray(lastNewline + 1));
    if (!mayHoldUsage(complete)) return complete;
    const lines = complete.toString('utf8').split('\n');
    // split leaves a final empty string after the trailing '\n'
    let out = '';
    for (let i = 0; i < lines.length - 1; i++) {
      let line = lines[i];
      const cr = line.endsWith('\r');
      if (cr) line = line.slice(0, -1);
      out += rewriteLine(line, this.cached) + (cr ? '\r\n' : '\n');
    }
    return Buffer.from(out);
  }

  /** The trailing partial line, rewritten if it is a complete data line. */
  end(): Buffer {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    if (rest.length === 0) return rest;
    return Buffer.from(rewriteLine(rest.toString('utf8'), this.cached));
  }
}
