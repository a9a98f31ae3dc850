/**
 * The simulator's tokenizer over HTTP, as vLLM serves it (and llm-d-inference-sim with its simulated tokenizer), so
 * a router can tokenize exactly as the simulator does:
 *
 * - `POST /tokenize` `{model?, prompt}` or `{model?, messages, add_generation_prompt?}` → `{count, max_model_len, tokens}`
 *   (giving both prompt and messages is a 400, as upstream);
 * - `POST /v1/completions/render` (a completions body) → `[{token_ids}]`, one per prompt;
 * - `POST /v1/chat/completions/render` (a chat body) → `{token_ids}`;
 * - `POST /reset_prefix_cache` → 200 when the cache was dropped (reported as AllBlocksCleared), 409 while requests hold
 *   blocks (vLLM refuses then too).
 *
 * The token ids are those the engine computes for the same body (tokenizer.ts), so prefix blocks match. An unknown
 * model is a 404, a bad body a 400, in the OpenAI error shape.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { openAIError } from '../common/index.js';
import { isObject, type JsonObject } from '../common/json.js';
import type { SimEngine } from './sim-engine.js';
import { renderPrompt, tokenIds, tokenize } from './tokenizer.js';

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).header('content-type', 'application/json').send(JSON.stringify(body));
}

function parse(raw: unknown): JsonObject | string {
  const buf = raw as Buffer | undefined;
  try {
    const value = JSON.parse(buf && buf.length > 0 ? buf.toString('utf8') : '') as unknown;
    return isObject(value) ? value : 'the request body must be a JSON object';
  } catch (e) {
    return `the request body is not JSON: ${(e as Error).message}`;
  }
}

/** The ids of each prompt of a completions body (a string, strings, or token ids). */
function completionPrompts(body: JsonObject): number[][] | string {
  const p = body.prompt;
  if (typeof p === 'string') return [tokenIds(tokenize(p))];
  if (Array.isArray(p) && p.length > 0) {
    if (p.every((item) => typeof item === 'number')) return [p];
    if (p.every((item) => typeof item === 'string')) return p.map((item) => tokenIds(tokenize(item)));
    if (p.every((item) => Array.isArray(item) && item.every((token) => typeof token === 'number'))) return p;
  }
  return 'prompt must be a string, a list of strings, or token ids';
}

export function registerTokenizeRoutes(app: FastifyInstance, engine: SimEngine): void {
  const checkModel = (body: JsonObject): string | undefined => {
    const m = body.model;
    if (m === undefined || m === null || m === '') return undefined;
    if (typeof m !== 'string') return 'model must be a string';
    return engine.servedModels.includes(m) || engine.config.model.includes(m)
      ? undefined
      : `The model \`${m}\` does not exist.`;
  };
  const prelude = (raw: unknown, reply: FastifyReply): JsonObject | undefined => {
    const body = parse(raw);
    if (typeof body === 'string') {
      void send(reply, 400, openAIError(400, body));
      return undefined;
    }
    const bad = checkModel(body);
    if (bad) {
      void send(
        reply,
        bad.startsWith('The model') ? 404 : 400,
        openAIError(bad.startsWith('The model') ? 404 : 400, bad, 'model'),
      );
      return undefined;
    }
    return body;
  };

  app.post('/tokenize', async (request, reply) => {
    const body = prelude(request.body, reply);
    if (!body) return reply;
    const hasPrompt = body.prompt !== undefined && body.prompt !== '';
    const hasMessages = body.messages !== undefined && body.messages !== null;
    if (hasPrompt && hasMessages)
      return send(reply, 400, openAIError(400, 'both prompt and messages fields in tokenize request'));
    let ids: number[];
    if (hasMessages) {
      if (!Array.isArray(body.messages))
        return send(reply, 400, openAIError(400, 'messages must be a list', 'messages'));
      ids = tokenIds(tokenize(renderPrompt('chat', body)));
    } else {
      const p = completionPrompts({ prompt: body.prompt ?? '' });
      if (typeof p === 'string' && body.prompt !== undefined) return send(reply, 400, openAIError(400, p, 'prompt'));
      ids = typeof p === 'string' ? [] : p.flat();
    }
    return send(reply, 200, {
      count: ids.length,
      max_model_len: engine.config.maxModelLen,
      tokens: ids,
      token_strs: null,
    });
  });

  app.post('/v1/completions/render', async (request, reply) => {
    const body = prelude(request.body, reply);
    if (!body) return reply;
    const p = completionPrompts(body);
    if (typeof p === 'string') return send(reply, 400, openAIError(400, p, 'prompt'));
    return send(
      reply,
      200,
      p.map((ids) => ({ token_ids: ids })),
    );
  });

  app.post('/v1/chat/completions/render', async (request, reply) => {
    const body = prelude(request.body, reply);
    if (!body) return reply;
    if (!Array.isArray(body.messages) || body.messages.length === 0)
      return send(reply, 400, openAIError(400, 'messages must be a non-empty list', 'messages'));
    return send(reply, 200, { token_ids: tokenIds(tokenize(renderPrompt('chat', body))) });
  });

  app.post('/reset_prefix_cache', async (_request, reply) => {
    if (!engine.kv) return send(reply, 200, {});
    if (!engine.kv.resetPrefixCache())
      return send(reply, 409, openAIError(409, 'requests are running: the prefix cache is in use and was not reset'));
    return send(reply, 200, {});
  });
}
