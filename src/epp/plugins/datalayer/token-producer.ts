/**
 * `token-producer` (and `tokenizer`, its deprecated llm-d-router name and llm-d v0.7.1's tokenizer plugin): the
 * prompt's token ids as the model server tokenizes them, for the precise prefix cache (llm-d's TokenizedPrompt).
 *
 * Backends (upstream's parameters):
 * - none, or `estimate: {}`: llm-d's `estimate` backend, upstream's zero-config default. It produces no token ids
 *   (pd-router's deciders and the approximate index count 4 UTF-8 bytes per token themselves); a precise producer then
 *   tokenizes through the pool itself. `estimate.image` / `.video` are errors (multimodal placeholder estimation is
 *   not implemented).
 * - `vllm: {url, timeout, mmTimeout}` (llm-d-router's vllm-http backend): vLLM's `/v1/chat/completions/render` and
 *   `/v1/completions/render` at `url` (default `http://localhost:8000`, upstream's render sidecar), `/tokenize` on
 *   servers without them; `modelName` is the model sent (default: the request's target model). `timeout` (5s) and
 *   `mmTimeout` (30s, messages with content parts) are Go durations.
 * - `modelName` without `vllm`, or `udsTokenizerConfig` (v0.7.1's UDS tokenizer sidecar, deprecated upstream): the
 *   pool's own model servers, which serve the same render and tokenize endpoints for the model; pd-router runs no
 *   tokenizer sidecar. (llm-d-router sends `modelName`-only configs to `http://localhost:8000`.)
 *
 * The call is bounded by its deadline; results are cached (`--tokenizer-cache-tokens`). A failure leaves the request
 * without token ids: the precise producers score it from their approximate index, and
 * `llm_d_epp_tokenization_failures_total{plugin_name, reason}` counts it.
 */
import { z } from 'zod';
import { goDuration } from '../../config/go-values.js';
import {
  TOKENIZED_PROMPT_DATA,
  type Endpoint,
  type InferenceRequest,
  type LifecyclePlugin,
  type PluginRuntime,
  type RequestPreparer,
} from '../../framework/types.js';
import { KvEventsMetrics } from '../../kv-events/metrics.js';
import { ModelServerTokenizer } from '../../tokenize/model-server-tokenizer.js';
import { definePlugin } from '../definition.js';

const unsupported = (why: string) =>
  z
    .unknown()
    .refine(() => false, why)
    .optional();

export const tokenProducerParams = z
  .object({
    estimate: z
      .object({
        image: unsupported('multimodal image token estimation is not implemented by pd-router'),
        video: unsupported('multimodal video token estimation is not implemented by pd-router'),
      })
      .strict()
      .optional(),
    modelName: z.string().optional(),
    vllm: z
      .object({ url: z.string().optional(), timeout: goDuration.optional(), mmTimeout: goDuration.optional() })
      .strict()
      .optional(),
    udsTokenizerConfig: z
      .object({
        socketFile: z.string().optional(),
        timeout: z.unknown().optional(),
        maxRetries: z.unknown().optional(),
      })
      .loose()
      .optional(),
  })
  .strict()
  .superRefine((params, ctx) => {
    if (params.estimate && (params.vllm || params.modelName || params.udsTokenizerConfig))
      ctx.addIssue({
        code: 'custom',
        message: 'estimate cannot be combined with modelName, vllm or udsTokenizerConfig',
        path: ['estimate'],
      });
    if (params.vllm?.timeout !== undefined && params.vllm.timeout <= 0)
      ctx.addIssue({ code: 'custom', message: 'must be > 0', path: ['vllm', 'timeout'] });
    if (params.vllm?.mmTimeout !== undefined && params.vllm.mmTimeout <= 0)
      ctx.addIssue({ code: 'custom', message: 'must be > 0', path: ['vllm', 'mmTimeout'] });
    if (params.vllm?.url && !/^http:\/\/[^/]+/.test(params.vllm.url))
      ctx.addIssue({
        code: 'custom',
        message: 'must be an http:// URL (TLS is not supported, as upstream)',
        path: ['vllm', 'url'],
      });
  });

export type TokenProducer = RequestPreparer &
  LifecyclePlugin & {
    readonly tokenizer: 'estimate' | 'vllm-http' | 'pool';
    /** The fixed render URL (vllm-http), if any. */
    readonly url: string | undefined;
  };

export const tokenProducer = definePlugin({
  kind: 'data-producer',
  produces: [TOKENIZED_PROMPT_DATA],
  description: 'Tokenizes prompts with the model server (vLLM render/tokenize), or the estimate backend.',
  params: tokenProducerParams,
  create: (ctx, params) => {
    const mode: TokenProducer['tokenizer'] = params.vllm
      ? 'vllm-http'
      : params.modelName !== undefined || params.udsTokenizerConfig
        ? 'pool'
        : 'estimate';
    if (mode === 'estimate') return { type: ctx.type, name: ctx.name, tokenizer: 'estimate' as const };
    if (params.udsTokenizerConfig)
      ctx.warn(
        "udsTokenizerConfig (a tokenizer sidecar over a Unix socket) is not used: pd-router tokenizes with the pool's model servers (vLLM render/tokenize)",
      );
    const url = mode === 'vllm-http' ? (params.vllm?.url ?? 'http://localhost:8000').replace(/\/+$/, '') : undefined;
    const timeoutMs = params.vllm?.timeout ?? 5000;
    const mmTimeoutMs = params.vllm?.mmTimeout ?? 30_000;
    const failures = KvEventsMetrics.of(ctx.metrics.registry).tokenizeFailures;
    let tokenizer: ModelServerTokenizer | undefined;
    const plugin: TokenProducer = {
      type: ctx.type,
      name: ctx.name,
      tokenizer: mode,
      url,
      async start(runtime: PluginRuntime) {
        tokenizer = new ModelServerTokenizer({
          baseUrl: url,
          modelName: params.modelName ?? '',
          timeoutMs,
          mmTimeoutMs,
          cacheTokens: runtime.limits.tokenizerCacheTokens,
        });
      },
      async close() {
        await tokenizer?.close();
      },
      async prepareRequest(request: InferenceRequest, candidates: readonly Endpoint[]) {
        if (request.tokenized) return;
        // Loaded without an EPP (tests of the loader): tokenize with the defaults.
        tokenizer ??= new ModelServerTokenizer({
          baseUrl: url,
          modelName: params.modelName ?? '',
          timeoutMs,
          mmTimeoutMs,
          cacheTokens: 0,
        });
        const r = await tokenizer.tokenize(request, candidates);
        if (r.ok) request.tokenized = { tokenIds: r.tokenIds, producer: ctx.name };
        else if (r.reason !== 'unsupported') {
          failures.inc({ plugin_name: ctx.name, reason: r.reason });
          ctx.logger.debug(
            { plugin: ctx.name, reqId: request.requestId, reason: r.reason, detail: r.detail },
            'tokenization failed',
          );
        }
      },
    };
    return plugin;
  },
});
