/**
 * The simulator's HTTP surface (one fastify app per data-parallel rank). Checks run in llm-d-inference-sim's order:
 * body parse and types (400), X-Return-Error, injected faults, model (404), semantic validation (400), context window
 * (400), KV capacity (500), queue (429); then the request runs on the engine and is answered as JSON or SSE.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  INFERENCE_PATHS,
  drainOrClose,
  fastifyBaseOptions,
  includeUsageInStream,
  openAIError,
  renderMetrics,
  requestedMaxTokens,
  requestedMinTokens,
  type ApiType,
} from '../common/index.js';
import { AbortedError, QueueFullError } from './scheduler.js';
import { ecTransferParams } from './encoder.js';
import { completionBody, sseEncoder, type CompletionResult } from './response-builders.js';
import { kvTransferParamsOf, semanticError, typeError } from './request-validation.js';
import { renderPrompt, tokenIds, tokenize } from './tokenizer.js';
import type { SimEngine, RequestRecord } from './sim-engine.js';
import { registerAdminRoutes } from './admin.js';
import { registerTokenizeRoutes } from './tokenize-routes.js';
import { goJsonSyntaxError } from '../common/go-json-error.js';
import {
  REQUEST_ID_HEADER,
  isDecodeLeg,
  isOffloadingDecodeLeg,
  isOffloadingPrefillLeg,
  isPrefillLeg,
  type PrefillAnswerKvParams,
} from '../common/pd-contract.js';
import type { JsonObject } from '../common/json.js';

function sendError(reply: FastifyReply, status: number, message: string, param: string | null = null): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'application/json')
    .send(openAIError(status, message, param));
}

function podHeaders(engine: SimEngine): Record<string, string> {
  const h: Record<string, string> = {};
  if (process.env.POD_NAME) {
    h['x-inference-pod'] = process.env.POD_NAME;
    h['x-inference-port'] = String(engine.port);
  }
  if (process.env.POD_NAMESPACE) h['x-inference-namespace'] = process.env.POD_NAMESPACE;
  return h;
}

function promptTokenIdsFor(api: ApiType, body: JsonObject): number[] {
  if (api === 'generate') return Array.isArray(body.token_ids) ? (body.token_ids as number[]) : [];
  if (api === 'completions') {
    const p = body.prompt;
    if (typeof p === 'string') return tokenIds(tokenize(p));
    if (Array.isArray(p) && p.length > 0) {
      if (typeof p[0] === 'number') return p as number[];
      return (p as unknown[]).flatMap((value) =>
        typeof value === 'string' ? tokenIds(tokenize(value)) : Array.isArray(value) ? (value as number[]) : [],
      );
    }
    return [];
  }
  return tokenIds(tokenize(renderPrompt(api, body)));
}

async function handleInference(
  engine: SimEngine,
  api: ApiType,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  const raw = request.body as Buffer | undefined;
  const record: RequestRecord = {
    id: request.id,
    receivedAt: new Date().toISOString(),
    receivedAtMs: performance.timeOrigin + performance.now(),
    method: request.method,
    path: request.url,
    api,
    headers: { ...request.headers },
    body: undefined,
    bodyTruncated: false,
  };
  const finish = (status: number) => {
    record.status = status;
    engine.record(record, raw?.length ?? 0);
  };
  let body: JsonObject;
  try {
    body = JSON.parse(raw && raw.length > 0 ? raw.toString('utf8') : '') as JsonObject;
  } catch (e) {
    record.body = raw?.toString('utf8');
    finish(400);
    // Go's encoding/json wording, as upstream answers (e.g. "unexpected end of JSON input").
    return sendError(
      reply,
      400,
      `Failed to read and parse request body, ${goJsonSyntaxError(raw ?? Buffer.alloc(0)) ?? (e as Error).message}`,
    );
  }
  record.body = body;
  const typeProblem = typeError(api, body);
  if (typeProblem) {
    finish(400);
    return sendError(reply, 400, `Failed to read and parse request body, ${typeProblem}`);
  }

  const injected = request.headers['x-return-error'];
  if (injected !== undefined) {
    const v = Array.isArray(injected) ? injected[0] : injected;
    const code = Number(v);
    if (!/^\d+$/.test(v.trim()) || code < 100 || code > 599) {
      finish(400);
      return sendError(reply, 400, `Invalid X-Return-Error header value ${JSON.stringify(v)}: must be an integer`);
    }
    finish(code);
    return sendError(reply, code, `Simulated error triggered by X-Return-Error header (code ${code})`);
  }
  if (engine.faults.dropConnections) {
    finish(0);
    request.raw.socket.destroy();
    return reply.hijack();
  }
  if (engine.faults.returnError > 0) {
    const status = engine.faults.returnError;
    if (engine.faults.returnErrorCount > 0 && --engine.faults.returnErrorCount === 0) engine.faults.returnError = 0;
    finish(status);
    return sendError(reply, status, `Simulated error set by /admin/config (code ${status})`);
  }

  const model = typeof body.model === 'string' ? body.model : '';
  const lora = engine.loras.isLora(model) ? model : undefined;
  if (!lora && !engine.servedModels.includes(model)) {
    finish(404);
    return sendError(reply, 404, `The model \`${model}\` does not exist.`);
  }

  const kvParams = kvTransferParamsOf(api, body);
  const prefillOnly = isPrefillLeg(kvParams);
  // An OffloadingConnector prefill is an ordinary request (its one token is computed); its decode pulls the KV blocks.
  const remotePrefill = isDecodeLeg(kvParams) || isOffloadingDecodeLeg(kvParams);
  // An encoder-only instance answers every chat request as an encode leg (encoder.ts).
  const encodeOnly = engine.config.mmEncoderOnly && api === 'chat';
  record.kind = encodeOnly
    ? 'encode'
    : prefillOnly || isOffloadingPrefillLeg(kvParams)
      ? 'prefill'
      : remotePrefill
        ? 'decode'
        : 'aggregated';
  record.kvTransferParams = kvParams;
  const problem = semanticError(api, body, prefillOnly);
  if (problem) {
    finish(400);
    return sendError(reply, 400, problem);
  }

  const promptTokenIds = promptTokenIdsFor(api, body);
  // An encoder writes exactly the requested number of tokens (default 1), as llm-d-inference-sim's encoder dataset.
  const maxTokens = encodeOnly ? (requestedMaxTokens(api, body) ?? 1) : requestedMaxTokens(api, body);
  const c = engine.config;
  if (promptTokenIds.length + (maxTokens ?? 0) > c.maxModelLen) {
    finish(400);
    return sendError(
      reply,
      400,
      `This model's maximum context length is ${c.maxModelLen} tokens. However, you requested ${promptTokenIds.length + (maxTokens ?? 0)} tokens (${promptTokenIds.length} in the messages, ${maxTokens ?? 0} in the completion). Please reduce the length of the messages or completion`,
    );
  }
  if (!engine.fitsKvCache(promptTokenIds.length, Math.max(1, maxTokens ?? 1))) {
    finish(500);
    return sendError(reply, 500, 'the kv cache does not have sufficient capacity to store this request');
  }

  const requestId =
    c.enableRequestIdHeaders && typeof request.headers[REQUEST_ID_HEADER] === 'string'
      ? request.headers[REQUEST_ID_HEADER]
      : randomUUID();
  const headers: Record<string, string> = { ...podHeaders(engine) };
  if (c.enableRequestIdHeaders) headers[REQUEST_ID_HEADER] = requestId;
  const stream = body.stream === true;
  const abort = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) abort.abort(new AbortedError());
  };
  res.on('close', onClose);

  if (engine.faults.hang) {
    // Deliberate fault: hold the request until the client gives up or the fault is cleared by a restart.
    reply.hijack();
    await once(abort.signal, 'abort').catch(() => undefined);
    record.aborted = true;
    finish(0);
    return;
  }

  const result: CompletionResult = {
    api,
    requestId,
    // A LoRA adapter keeps its own name in the response, as upstream; base-model aliases answer with the display name.
    model: lora ?? engine.displayModel,
    created: Math.floor(Date.now() / 1000),
    tokens: [],
    tokenIds: [],
    finishReason: 'stop',
    promptTokens: promptTokenIds.length,
    cachedTokens: 0,
    includeUsage: includeUsageInStream(body),
    instructions: api === 'responses' && typeof body.instructions === 'string' ? body.instructions : undefined,
  };
  let encoder: ReturnType<typeof sseEncoder> | undefined;
  const write = async (chunk: string) => {
    if (chunk.length === 0) return;
    if (!res.write(chunk)) await drainOrClose(res);
  };
  const salt = typeof body.cache_salt === 'string' ? body.cache_salt : '';
  try {
    const outcome = await engine.run(
      {
        id: randomUUID(),
        api,
        body,
        promptTokenIds,
        maxTokens,
        minTokens: requestedMinTokens(api, body),
        ignoreEos: encodeOnly || body.ignore_eos === true,
        prefillOnly,
        remotePrefill,
        cacheSalt: salt,
        lora,
        cacheHitThreshold: typeof body.cache_hit_threshold === 'number' ? body.cache_hit_threshold : undefined,
        forceCacheThreshold:
          (api === 'chat' || api === 'completions') &&
          /^(1|t|true)$/i.test(String(request.headers['x-cache-threshold-finish-reason'] ?? '')),
        signal: abort.signal,
      },
      {
        first: async (output, cachedTokens) => {
          result.cachedTokens = cachedTokens;
          // An encoder writes "!" max_tokens times whatever --mode says (llm-d-inference-sim's encoder dataset).
          result.tokens = encodeOnly ? Array<string>(maxTokens ?? 1).fill('!') : output.tokens;
          result.tokenIds = encodeOnly ? Array<number>(maxTokens ?? 1).fill(ENCODER_TOKEN_ID) : output.tokenIds;
          result.finishReason = encodeOnly ? 'length' : output.finishReason;
          if (!stream) return;
          reply.hijack();
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
          encoder = sseEncoder(result);
          await write(encoder.head());
        },
        token: async (i) => {
          if (!stream || !encoder) return;
          await write(encoder.token(i));
        },
      },
    );
    record.promptTokens = outcome.promptTokens;
    record.cachedTokens = outcome.cachedTokens;
    record.outputTokens = outcome.output.tokens.length;
    record.finishReason = outcome.output.finishReason;
    if (prefillOnly) {
      const answer: PrefillAnswerKvParams = {
        do_remote_decode: false,
        do_remote_prefill: true,
        remote_engine_id: engine.engineId,
        remote_block_ids:
          outcome.slot.blockIds.length > 0
            ? outcome.slot.blockIds
            : syntheticBlockIds(outcome.promptTokens, c.blockSize),
        remote_host: engine.advertisedHost,
        remote_port: engine.port,
        tp_size: 1,
        remote_request_id: requestId,
      };
      result.kvTransferParams = answer;
    }
    if (encodeOnly) result.ecTransferParams = ecTransferParams(body, engine.advertisedHost, engine.port);
    finish(200);
    if (stream && encoder) {
      await write(encoder.tail());
      res.end();
      return;
    }
    // eslint-disable-next-line @typescript-eslint/return-await -- fastify's reply is thenable: awaiting it would wait for the send
    return reply.code(200).headers(headers).header('content-type', 'application/json').send(completionBody(result));
  } catch (e) {
    if (e instanceof QueueFullError) {
      finish(429);
      // eslint-disable-next-line @typescript-eslint/return-await -- as above
      return sendError(reply, 429, e.message);
    }
    if (e instanceof AbortedError || abort.signal.aborted) {
      record.aborted = true;
      finish(499);
      if (!reply.sent) reply.hijack();
      res.destroy();
      return;
    }
    throw e;
  } finally {
    res.off('close', onClose);
  }
}

/** The token an encoder-only instance answers with, "!" in the simulated tokenizer. */
const ENCODER_TOKEN_ID = tokenIds(tokenize('!'))[0] ?? 0;

function syntheticBlockIds(promptTokens: number, blockSize: number): number[] {
  return Array.from({ length: Math.ceil(promptTokens / blockSize) }, (_, i) => i);
}

export function buildSimServer(engine: SimEngine): FastifyInstance {
  const app = Fastify(fastifyBaseOptions({ logger: engine.logger, bodyLimit: engine.config.maxRequestBodySize }));
  app.removeAllContentTypeParsers();
  // Bodies are parsed by the handlers, so malformed JSON gets the simulator's own error text instead of fastify's.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) engine.logger.error({ err }, 'simulator request failed');
    const message =
      err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? `request body exceeds ${engine.config.maxRequestBodySize} bytes`
        : err.message;
    if (reply.sent || reply.raw.headersSent) return;
    void sendError(reply, status, message);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, `${request.method} ${request.url} is not served by this simulator`),
  );

  for (const [path, api] of Object.entries(INFERENCE_PATHS)) {
    app.post(path, (request, reply) => handleInference(engine, api, request, reply));
  }

  app.get('/v1/models', async () => ({
    object: 'list',
    data: [
      ...engine.servedModels.map((id) => ({
        id,
        object: 'model',
        created: Math.floor(engine.startedAt / 1000),
        owned_by: 'vllm',
        root: engine.config.model[0],
        parent: null,
        max_model_len: engine.config.maxModelLen,
      })),
      // LoRA adapters: root is the adapter's path, parent the base model (vLLM's and llm-d-inference-sim's shape).
      ...[...engine.loras.modules.values()].map((lora) => ({
        id: lora.name,
        object: 'model',
        created: Math.floor(engine.startedAt / 1000),
        owned_by: 'vllm',
        root: lora.path,
        parent: engine.displayModel,
        max_model_len: engine.config.maxModelLen,
      })),
    ],
  }));
  app.get('/health', async (_req, reply) => reply.header('content-type', 'application/json').send(''));
  app.get('/health/ready', async (_req, reply) => {
    const ready = Date.now() - engine.startedAt >= engine.config.startupDuration;
    return reply
      .code(ready ? 200 : 503)
      .header('content-type', 'application/json')
      .send('');
  });
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await renderMetrics([engine.registry]);
    return reply.header('content-type', contentType).send(body);
  });
  registerAdminRoutes(app, engine);
  registerTokenizeRoutes(app, engine);
  return app;
}
