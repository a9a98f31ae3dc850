/**
 * `always-disagg-multimodal-decider` (encode stage): run the encode profile iff the request carries multimodal input
 * (image, audio or video content blocks). No parameters.
 */
import { z } from 'zod';
import type { DeciderDefinition } from './types.js';

const MULTIMODAL_BLOCK_TYPES = new Set([
  'image_url',
  'image',
  'input_image',
  'input_audio',
  'audio_url',
  'audio',
  'video_url',
  'video',
  'input_video',
]);

function hasMultimodalContent(messages: unknown): boolean {
  if (!Array.isArray(messages)) return false;
  for (const m of messages) {
    const content = (m as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const block of content) {
      const t = (block as { type?: unknown } | null)?.type;
      if (typeof t === 'string' && MULTIMODAL_BLOCK_TYPES.has(t)) return true;
    }
  }
  return false;
}

/** Whether an OpenAI/Anthropic/Responses request body carries image, audio or video input. */
export function isMultimodalRequest(body: Readonly<Record<string, unknown>> | undefined): boolean {
  if (!body) return false;
  return (
    hasMultimodalContent(body.messages) || hasMultimodalContent(Array.isArray(body.input) ? body.input : undefined)
  );
}

/** `always-disagg-multimodal-decider`: a remote encode for every request that carries images, audio or video. */
export const alwaysDisaggMultimodalDecider: DeciderDefinition<Record<string, never>> = {
  params: z.object({}),
  description: 'Runs the encode stage iff the request has image, audio or video input.',
  create: (type, name) => ({
    type,
    name,
    decide: (input) =>
      isMultimodalRequest(input.request.body)
        ? { disaggregate: true, reason: 'multimodal' }
        : { disaggregate: false, reason: 'no-multimodal' },
  }),
};
