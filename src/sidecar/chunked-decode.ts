/**
 * Chunked decode (--decode-chunk-size), as llm-d-router ebab687 (decode.go) runs it on /v1/chat/completions, through the
 * NIXL v2 decode leg, a local request and a local P2P pull (not the concurrent connectors):
 *
 * 1. A token budget (max_completion_tokens, else max_tokens) that fits in one chunk is decoded as usual.
 * 2. Otherwise the decode runs as a series of non-streamed requests to the local vLLM, each with max_tokens and
 *    max_completion_tokens set to min(chunk size, tokens left), stream false and no stream_options. From the second
 *    one on, kv_transfer_params is removed, continue_final_message is true and add_generation_prompt false, and the
 *    text generated so far is in the messages: each chunk's text is appended as a new assistant message (upstream's
 *    shape, kept for the wire contract).
 * 3. It stops when the budget is spent, a chunk ends with a finish reason other than "length", or a chunk produced
 *    neither tokens nor text; and (pd-router) after --max-decode-chunks requests.
 * 4. Streamed: each chunk is one SSE event (its choices as deltas with role and content, usage removed), then one event
 *    with the cumulative usage and empty choices, then [DONE]. Not streamed: the last chunk's answer with the whole
 *    text as choices[0].message.content and the cumulative usage.
 * 5. Usage: prompt_tokens from the first chunk, completion_tokens summed, total_tokens their sum; with NIXL, the
 *    prefiller's cached_tokens in prompt_tokens_details, as the cached-tokens rewrite gives it upstream.
 *
 * Bounds: each chunk answer and the text gathered are held up to --max-rewrite-body-size; each chunk has the decode
 * deadlines. A chunk that fails is answered by failures.ts (before the answer started: its own status; after: an SSE
 * error event).
 */
import { UpstreamLeg } from '../common/upstream-leg.js';
import { isObject, type JsonObject } from '../common/json.js';
import { KV_TRANSFER_PARAMS } from '../common/pd-contract.js';
import { drainOrClose, type ApiType } from '../common/index.js';
import { observeFirstByte, runDecode, type DecodeStep } from './decode.js';
import { answerChunkFailure, answerInternalError, type ChunkFailure } from './failures.js';
import { decodeRequest } from './legs.js';
import type { Outcome } from './metrics.js';
import type { SidecarConfig } from './options.js';
import type { DecodeContext } from './pd-context.js';

/** Whether chunked decode applies to a request of this API (upstream: the chat completions path only). */
export function chunkedDecodeApplies(config: Pick<SidecarConfig, 'decodeChunkSize'>, api: ApiType): boolean {
  return config.decodeChunkSize > 0 && api === 'chat';
}

/** A positive whole number from a JSON value (Go's int conversion of a float64 truncates), else undefined. */
function toInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? Math.trunc(value) : undefined;
}

/** The client's token budget: max_completion_tokens, else max_tokens, when > 0; -1 for none. */
export function tokenBudget(body: JsonObject): number {
  for (const field of ['max_completion_tokens', 'max_tokens']) {
    const n = toInt(body[field]);
    if (n !== undefined && n > 0) return n;
  }
  return -1;
}

function usageField(answer: JsonObject, field: string): number {
  const usage = answer.usage;
  return isObject(usage) ? (toInt(usage[field]) ?? 0) : 0;
}

function firstChoice(answer: JsonObject): JsonObject | undefined {
  const choices = answer.choices;
  return Array.isArray(choices) && isObject(choices[0]) ? choices[0] : undefined;
}

function choiceText(choice: JsonObject | undefined): string {
  const message = choice?.message;
  return isObject(message) && typeof message.content === 'string' ? message.content : '';
}

/** One chunk's answer as a streamed event: choices as deltas, usage removed (upstream's emitSSEChunk). */
function chunkEvent(answer: JsonObject): string {
  const { usage: _usage, ...event } = answer;
  if (Array.isArray(answer.choices) && answer.choices.length > 0) {
    event.choices = answer.choices.filter(isObject).map((choice) => ({
      index: choice.index ?? null,
      finish_reason: choice.finish_reason ?? null,
      delta: { content: choiceText(choice), role: 'assistant' },
    }));
  }
  return `data: ${JSON.stringify(event)}\n\n`;
}

/** The decode step plus the parsed body the chunks are built from. */
export interface ChunkedDecodeStep extends DecodeStep {
  json: JsonObject;
}

/** Runs the decode leg as chunks (or whole, when the budget fits one chunk); see the file's header. */
export async function runChunkedDecode(ctx: DecodeContext, step: ChunkedDecodeStep): Promise<Outcome> {
  const config = ctx.config;
  const chunkSize = config.decodeChunkSize;
  const budget = tokenBudget(step.json);
  if (budget > 0 && budget <= chunkSize) return runDecode(ctx, step);

  const res = ctx.res;
  const streaming = step.json.stream === true;
  const limit = config.maxRewriteBodySize;
  let request: JsonObject = step.json;
  let used = 0;
  let promptTokens = 0;
  let chunks = 0;
  let gathered = 0;
  let last: JsonObject | undefined;
  const text: string[] = [];
  let started = false;

  while (chunks < config.maxDecodeChunks) {
    if (ctx.signal.aborted) {
      ctx.metrics.clientAborts.inc({ stage: 'decode' });
      return 'aborted';
    }
    const remaining = budget < 0 ? -1 : Math.max(0, budget - used);
    if (remaining === 0) break;
    const size = remaining > 0 && remaining < chunkSize ? remaining : chunkSize;
    const { stream_options: _streamOptions, ...chunkRequest } = request;
    chunkRequest.max_tokens = size;
    chunkRequest.max_completion_tokens = size;
    chunkRequest.stream = false;
    if (chunks > 0) {
      delete chunkRequest[KV_TRANSFER_PARAMS];
      chunkRequest.continue_final_message = true;
      chunkRequest.add_generation_prompt = false;
    }

    let failure: ChunkFailure | undefined;
    let answer: JsonObject | undefined;
    try {
      const leg = await UpstreamLeg.open(decodeRequest(ctx, JSON.stringify(chunkRequest)));
      let body: Buffer;
      try {
        body = await leg.readAll(limit);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        body = Buffer.alloc(0);
        failure = {
          kind: 'bad_answer',
          status: 502,
          message: `a decode chunk answer exceeds ${limit} bytes (--max-rewrite-body-size)`,
        };
      }
      if (!failure && (leg.status < 200 || leg.status >= 300)) {
        failure = { kind: 'http_error', status: leg.status, headers: leg.headers, body };
      } else if (!failure) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch {
          parsed = undefined;
        }
        if (isObject(parsed)) answer = parsed;
        else
          failure = {
            kind: 'bad_answer',
            status: 500,
            message: `decode chunk ${chunks} answered ${leg.status} with a body that is not a JSON object`,
          };
      }
      if (answer && chunks === 0) observeFirstByte(ctx, step.mode, leg);
    } catch (err) {
      failure = { kind: 'leg', error: err };
    }
    if (failure || !answer)
      return answerChunkFailure(ctx, failure ?? { kind: 'leg', error: new Error('no answer') }, started);

    last = answer;
    const tokens = usageField(answer, 'completion_tokens');
    used += tokens;
    if (chunks === 0) promptTokens = usageField(answer, 'prompt_tokens');
    chunks++;
    const choice = firstChoice(answer);
    const finishReason = typeof choice?.finish_reason === 'string' ? choice.finish_reason : '';
    const chunkText = choiceText(choice);
    gathered += Buffer.byteLength(chunkText);
    if (gathered > limit)
      return answerChunkFailure(
        ctx,
        {
          kind: 'bad_answer',
          status: 502,
          message: `the chunked decode answer exceeds ${limit} bytes (--max-rewrite-body-size)`,
        },
        started,
      );
    if (streaming) {
      if (!started) {
        started = true;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      }
      if (!res.write(chunkEvent(answer)) && !res.destroyed) await drainOrClose(res);
    } else text.push(chunkText);

    if (finishReason !== '' && finishReason !== 'length') break;
    // Nothing to continue from: stop rather than send the same request again.
    if (tokens === 0 && chunkText === '') break;
    if (chunkText !== '') {
      const messages: unknown[] = Array.isArray(request.messages) ? request.messages : [];
      request = { ...request, messages: [...messages, { role: 'assistant', content: chunkText }] };
    }
  }

  const usage: JsonObject = { prompt_tokens: promptTokens, completion_tokens: used, total_tokens: promptTokens + used };
  if (step.rewriteCached !== undefined) usage.prompt_tokens_details = { cached_tokens: step.rewriteCached };
  if (streaming) {
    if (!started) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (last) res.write(`data: ${JSON.stringify({ usage, choices: [] })}\n\n`);
    res.end('data: [DONE]\n\n');
    return 'success';
  }
  if (!last) return answerInternalError(res, new Error('no chunks produced'));
  const choice = firstChoice(last);
  if (choice) {
    const message = choice.message;
    last.choices = [isObject(message) ? { ...choice, message: { ...message, content: text.join('') } } : choice];
  }
  last.usage = usage;
  const body = JSON.stringify(last);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
  return 'success';
}
