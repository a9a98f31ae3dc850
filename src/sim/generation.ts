/**
 * What the simulator answers: the output tokens and the finish reason, in echo or random mode, following
 * llm-d-inference-sim's rules:
 * - echo returns the last message (chat, messages, responses), the prompt (completions) or the input token ids
 *   (generate), cut at max tokens, with finish_reason "length" when cut or exactly at the limit, else "stop";
 * - random draws whole sentences from a fixed set until the chosen length; the length is the maximum with ignore_eos,
 *   else drawn from a bucket histogram between min and max tokens (15% exactly max), else normal(40, 20) tokens.
 */
import { contentText, type ApiType } from '../common/index.js';
import type { SeededRandom } from './random.js';
import { RANDOM_SENTENCE_TOKENS, tokenize, tokenId } from './tokenizer.js';
import { isObject, type JsonObject } from '../common/json.js';

export type FinishReason = 'stop' | 'length' | 'remote_decode' | 'cache_threshold';

export interface GeneratedOutput {
  tokens: string[];
  tokenIds: number[];
  finishReason: FinishReason;
}

function lastItemText(items: unknown): string {
  if (typeof items === 'string') return items;
  if (!Array.isArray(items) || items.length === 0) return '';
  const last = items[items.length - 1];
  return isObject(last) ? contentText(last.content) : typeof last === 'string' ? last : '';
}

/** The text echo mode returns for a request. */
export function echoSource(api: ApiType, body: JsonObject): string {
  switch (api) {
    case 'chat':
    case 'messages':
      return lastItemText(body.messages);
    case 'responses':
      return lastItemText(body.input);
    case 'completions':
      return typeof body.prompt === 'string' ? body.prompt : Array.isArray(body.prompt) ? lastItemText(body.prompt) : '';
    case 'generate':
      return '';
  }
}

const BUCKET_PROBABILITIES = [0.2, 0.3, 0.2, 0.05, 0.1] as const;

/** Output length for random mode. */
export function randomLength(rng: SeededRandom, maxTokens: number | undefined, minTokens: number, ignoreEos: boolean, room: number): number {
  if (maxTokens !== undefined) {
    if (ignoreEos) return maxTokens;
    const lo = Math.max(1, Math.min(minTokens, maxTokens));
    if (lo >= maxTokens) return maxTokens;
    let u = rng.next();
    for (let b = 0; b < BUCKET_PROBABILITIES.length; b++) {
      const p = BUCKET_PROBABILITIES[b]!;
      if (u < p) {
        const span = maxTokens - lo; // values lo .. maxTokens-1, split into 5 ranges
        const from = lo + Math.floor((span * b) / 5);
        const to = lo + Math.max(Math.floor((span * (b + 1)) / 5) - 1, Math.floor((span * b) / 5));
        return Math.min(maxTokens - 1, rng.int(from, Math.max(from, to)));
      }
      u -= p;
    }
    return maxTokens;
  }
  const upper = Math.max(1, room);
  return Math.min(upper, Math.max(1, Math.round(40 + 20 * rng.normal())));
}

function randomTokens(rng: SeededRandom, count: number): string[] {
  const out: string[] = [];
  while (out.length < count) {
    const sentence = RANDOM_SENTENCE_TOKENS[rng.int(0, RANDOM_SENTENCE_TOKENS.length - 1)]!;
    for (const t of sentence) {
      if (out.length >= count) break;
      out.push(t);
    }
  }
  return out;
}

export interface GenerationInput {
  api: ApiType;
  body: JsonObject;
  mode: 'random' | 'echo';
  maxTokens: number | undefined;
  minTokens: number;
  ignoreEos: boolean;
  promptTokens: number;
  maxModelLen: number;
  /** A prefill-only request (do_remote_decode): finish reason is remote_decode. */
  prefillOnly: boolean;
}

export function generateOutput(rng: SeededRandom, input: GenerationInput): GeneratedOutput {
  let tokens: string[];
  let ids: number[];
  let finishReason: FinishReason;
  if (input.mode === 'echo') {
    if (input.api === 'generate') {
      ids = Array.isArray(input.body.token_ids) ? (input.body.token_ids as number[]) : [];
      tokens = ids.map(() => '');
    } else {
      tokens = tokenize(echoSource(input.api, input.body));
      ids = tokens.map(tokenId);
    }
    if (input.maxTokens !== undefined && tokens.length >= input.maxTokens) {
      tokens = tokens.slice(0, input.maxTokens);
      ids = ids.slice(0, input.maxTokens);
      finishReason = 'length';
    } else {
      finishReason = 'stop';
    }
  } else {
    const n = randomLength(rng, input.maxTokens, input.minTokens, input.ignoreEos, input.maxModelLen - input.promptTokens);
    tokens = randomTokens(rng, n);
    ids = tokens.map(tokenId);
    finishReason = input.maxTokens !== undefined && n >= input.maxTokens ? 'length' : 'stop';
  }
  if (input.prefillOnly) finishReason = 'remote_decode';
  return { tokens, tokenIds: ids, finishReason };
}
