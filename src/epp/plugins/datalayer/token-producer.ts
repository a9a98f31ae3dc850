/**
 * `token-producer` (and `tokenizer`, its deprecated llm-d-router name; llm-d v0.7.1's `tokenizer` took the same
 * `modelName`/`udsTokenizerConfig`): token counts for the deciders and the prefix hashes. pd-router has one backend,
 * llm-d's `estimate` (4 UTF-8 bytes per token, explicit token-id prompts as given), which needs no model server and is
 * upstream's zero-config default.
 *
 * Parameters (upstream's schema): `estimate: {}` selects that backend explicitly. The others are load errors naming
 * the parameter: `vllm` / `modelName` (vLLM /render backend) and `udsTokenizerConfig` (gRPC tokenizer sidecar) need a
 * tokenizer service pd-router does not call, and `estimate.image` / `estimate.video` tune multimodal placeholder
 * counts pd-router does not estimate (an image or video counts as the bytes of its JSON).
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';

const unsupported = (why: string) =>
  z
    .unknown()
    .refine(() => false, why)
    .optional();

export const tokenProducer = definePlugin({
  kind: 'data-producer',
  description: 'Estimate tokenizer (4 bytes per token).',
  params: z
    .object({
      estimate: z
        .object({
          image: unsupported('multimodal image token estimation is not implemented by pd-router'),
          video: unsupported('multimodal video token estimation is not implemented by pd-router'),
        })
        .strict()
        .optional(),
      modelName: unsupported('selects the vLLM /render tokenizer backend; pd-router only has the estimate backend'),
      vllm: unsupported('the vLLM /render tokenizer backend is not supported; pd-router only has the estimate backend'),
      udsTokenizerConfig: unsupported(
        'the UDS tokenizer backend is not supported; pd-router only has the estimate backend',
      ),
    })
    .strict(),
  create: (ctx) => ({ type: ctx.type, name: ctx.name, tokenizer: 'estimate' }),
});
