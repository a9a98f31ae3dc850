/**
 * Tokenization by the model server (llm-d-router's `vllm` token-producer backend, `vllm_http.go`): the request body,
 * its `model` replaced by the configured model name, is posted to vLLM's render endpoints, which apply the chat
 * template and tokenize exactly as the server will:
 *
 * - chat: `POST /v1/chat/completions/render` → `{token_ids}`;
 * - completions: `POST /v1/completions/render` → `[{token_ids}]` (one per prompt; the first is used);
 * - servers without render endpoints (vLLM before them; answered 404 or 405) get vLLM's `POST /tokenize`
 *   (`{model, messages}` or `{model, prompt}` → `{tokens}`) from then on.
 *
 * Target: a fixed base URL (`vllm.url`; upstream's default `http://localhost:8000`), or, where upstream would use a
 * tokenizer pd-router cannot run (a UDS tokenizer sidecar, Hugging Face tokenizers loaded in-process), the pool's own
 * model servers, taking the candidates in turn.
 *
 * Bounded: each call has a deadline (`timeout`, `mmTimeout` for messages with content parts, upstream's 5s and 30s),
 * an answer is read up to 32 MiB, and results are cached by body in an LRU bounded by the token ids it holds
 * (`--tokenizer-cache-tokens`). A failure (timeout, connection, status, invalid answer) is returned, not thrown;
 * after a timeout or connection failure the target is skipped for one second, so a dead tokenizer costs requests no
 * wait.
 */
import { createHash } from 'node:crypto';
import { Agent, request as httpRequest } from 'undici';
import { deadline } from '../../common/deadline.js';
import { isObject, type JsonObject } from '../../common/json.js';
import type { Endpoint, InferenceRequest } from '../framework/types.js';

export type TokenizeFailure = 'timeout' | 'connection' | 'status' | 'invalid' | 'unsupported' | 'backoff' | 'no-target';

export type TokenizeResult =
  { ok: true; tokenIds: Uint32Array; cached: boolean } | { ok: false; reason: TokenizeFailure; detail: string };

export interface ModelServerTokenizerOptions {
  /** Fixed base URL, no trailing slash; undefined = the pool's candidates. */
  baseUrl: string | undefined;
  /** Model name sent to a fixed URL; '' = the request's target model (always sent to the pool's servers). */
  modelName: string;
  timeoutMs: number;
  mmTimeoutMs: number;
  /** Token ids the cache holds at most (0 = no cache). */
  cacheTokens: number;
}

const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
const BACKOFF_MS = 1000;

/** An LRU of token ids by key, bounded by the total number of token ids held. */
export class TokenCache {
  private readonly entries = new Map<string, Uint32Array>();
  private held = 0;
  constructor(readonly maxTokens: number) {}

  get(key: string): Uint32Array | undefined {
    const v = this.entries.get(key);
    if (v) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  set(key: string, tokens: Uint32Array): void {
    if (tokens.length > this.maxTokens) return;
    const old = this.entries.get(key);
    if (old) {
      this.held -= old.length;
      this.entries.delete(key);
    }
    this.entries.set(key, tokens);
    this.held += tokens.length;
    for (const [k, e] of this.entries) {
      if (this.held <= this.maxTokens) break;
      this.entries.delete(k);
      this.held -= e.length;
    }
  }

  get tokens(): number {
    return this.held;
  }
}

class Failure extends Error {
  constructor(
    readonly reason: TokenizeFailure,
    message: string,
  ) {
    super(message);
  }
}

function tokenArray(value: unknown): Uint32Array {
  if (!Array.isArray(value)) throw new Failure('invalid', 'token ids are not an array');
  const out = new Uint32Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const token: unknown = value[i];
    if (typeof token !== 'number' || !Number.isInteger(token) || token < 0 || token > 0xffffffff)
      throw new Failure('invalid', `token id ${i} is not an unsigned 32-bit integer`);
    out[i] = token;
  }
  return out;
}

/** The fields of a request body its rendered token ids depend on. */
function promptFields(body: JsonObject, chat: boolean): unknown[] {
  if (!chat) return [body.model, body.prompt, body.add_special_tokens];
  return [
    body.model,
    body.messages,
    body.tools,
    body.documents,
    body.chat_template,
    body.chat_template_kwargs,
    body.add_generation_prompt,
    body.continue_final_message,
    body.add_special_tokens,
  ];
}

const hasContentParts = (messages: unknown) =>
  Array.isArray(messages) && messages.some((message) => isObject(message) && Array.isArray(message.content));

export class ModelServerTokenizer {
  private readonly agent = new Agent({ connections: 16, keepAliveTimeout: 30_000, pipelining: 1 });
  private readonly cache: TokenCache | undefined;
  /** Base URLs that answered 404/405 on render: they get /tokenize. */
  private readonly noRender = new Set<string>();
  private readonly backoffUntil = new Map<string, number>();
  private turn = 0;

  constructor(
    readonly o: ModelServerTokenizerOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.cache = o.cacheTokens > 0 ? new TokenCache(o.cacheTokens) : undefined;
  }

  /** Token ids of the request's prompt, or why there are none. Never throws. */
  async tokenize(req: InferenceRequest, candidates: readonly Endpoint[]): Promise<TokenizeResult> {
    const body = req.body;
    if (req.prompts.length === 1 && req.prompts[0].kind === 'tokens')
      return { ok: true, tokenIds: Uint32Array.from(req.prompts[0].tokens), cached: false };
    if (!body || (req.api !== 'chat' && req.api !== 'completions'))
      return { ok: false, reason: 'unsupported', detail: `no tokenization for ${req.api ?? 'this'} API` };
    // A fixed URL (a render sidecar) gets the configured base model, as upstream; the pool serves the target model.
    const model = this.o.baseUrl ? this.o.modelName || req.targetModel : req.targetModel;
    const chat = req.api === 'chat';
    const renderBody = { ...body, model };
    // Keyed by what the rendered tokens depend on (not sampling parameters), with the model.
    const key = this.cache
      ? createHash('sha256')
          .update(chat ? 'chat\0' : 'completions\0')
          .update(JSON.stringify(promptFields(renderBody, chat)))
          .digest('base64')
      : '';
    const hit = this.cache?.get(key);
    if (hit) return { ok: true, tokenIds: hit, cached: true };

    const base = this.target(candidates);
    if (!base) return { ok: false, reason: 'no-target', detail: 'no endpoint to tokenize with' };
    const until = this.backoffUntil.get(base);
    if (until !== undefined && until > this.now())
      return { ok: false, reason: 'backoff', detail: `${base} failed less than ${BACKOFF_MS}ms ago` };
    const timeoutMs = chat && hasContentParts(body.messages) ? this.o.mmTimeoutMs : this.o.timeoutMs;
    try {
      let ids: Uint32Array;
      if (!this.noRender.has(base)) {
        const r = await this.post(
          base,
          chat ? '/v1/chat/completions/render' : '/v1/completions/render',
          renderBody,
          timeoutMs,
        );
        if (r === 'not-found') {
          this.noRender.add(base);
          ids = await this.viaTokenize(base, chat, renderBody, timeoutMs);
        } else
          ids = chat
            ? tokenArray((r as { token_ids?: unknown })?.token_ids)
            : tokenArray((Array.isArray(r) ? (r[0] as { token_ids?: unknown }) : undefined)?.token_ids);
      } else ids = await this.viaTokenize(base, chat, renderBody, timeoutMs);
      this.backoffUntil.delete(base);
      this.cache?.set(key, ids);
      return { ok: true, tokenIds: ids, cached: false };
    } catch (e) {
      const f = e instanceof Failure ? e : new Failure('connection', (e as Error).message);
      if (f.reason === 'timeout' || f.reason === 'connection') this.backoffUntil.set(base, this.now() + BACKOFF_MS);
      if (this.backoffUntil.size > 1024) this.backoffUntil.clear();
      return { ok: false, reason: f.reason, detail: f.message };
    }
  }

  private target(candidates: readonly Endpoint[]): string | undefined {
    if (this.o.baseUrl) return this.o.baseUrl;
    if (candidates.length === 0) return undefined;
    const e = candidates[this.turn++ % candidates.length];
    return `http://${e.hostPort}`;
  }

  private async viaTokenize(base: string, chat: boolean, body: JsonObject, timeoutMs: number): Promise<Uint32Array> {
    const req = chat
      ? { model: body.model, messages: body.messages, add_generation_prompt: body.add_generation_prompt ?? true }
      : { model: body.model, prompt: body.prompt };
    const r = await this.post(base, '/tokenize', req, timeoutMs);
    if (r === 'not-found') throw new Failure('status', `${base}/tokenize answered 404`);
    return tokenArray((r as { tokens?: unknown })?.tokens);
  }

  private async post(base: string, path: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const timeout = deadline(timeoutMs);
    const signal = timeout.signal;
    try {
      let res;
      try {
        res = await httpRequest(base + path, {
          method: 'POST',
          dispatcher: this.agent,
          signal,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      } catch (e) {
        if (signal.aborted) throw new Failure('timeout', `${path}: no answer within ${timeoutMs}ms`);
        throw new Failure('connection', `${path}: ${(e as Error).message}`);
      }
      try {
        if (res.statusCode === 404 || res.statusCode === 405) {
          await res.body.dump();
          return 'not-found';
        }
        const chunks: Buffer[] = [];
        let n = 0;
        for await (const c of res.body) {
          n += (c as Buffer).length;
          if (n > MAX_ANSWER_BYTES)
            throw new Failure('invalid', `${path}: answer larger than ${MAX_ANSWER_BYTES} bytes`);
          chunks.push(c as Buffer);
        }
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode < 200 || res.statusCode >= 300)
          throw new Failure('status', `${path}: status ${res.statusCode}: ${text.slice(0, 200)}`);
        try {
          return JSON.parse(text);
        } catch {
          throw new Failure('invalid', `${path}: answer is not JSON`);
        }
      } catch (e) {
        res.body.destroy();
        if (e instanceof Failure) throw e;
        if (signal.aborted) throw new Failure('timeout', `${path}: answer not complete within ${timeoutMs}ms`);
        throw new Failure('connection', `${path}: ${(e as Error).message}`);
      }
    } finally {
      timeout.clear();
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}
