/**
 * `endpoint-notification-source` (llm-d-router): tells its extractors when endpoints join or leave the pool. pd-router
 * tells every plugin that keeps per-endpoint state (the precise producers' KV-event subscriptions and index among
 * them) directly, so this source has nothing to do; it is accepted so llm-d-router's configs that list it under
 * `dataLayer.sources` load unchanged. No parameters.
 */
import { z } from 'zod';
import { definePlugin } from '../definition.js';

export const endpointNotificationSource = definePlugin({
  kind: 'notification-source',
  description: 'Endpoint add/delete notifications (pd-router notifies its plugins itself).',
  params: z.object({}).strict(),
  create: (ctx) => ({ type: ctx.type, name: ctx.name, notificationSource: true as const }),
});
