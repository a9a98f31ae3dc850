/**
 * `always-disagg-pd-decider`: every request with a decode pick gets a remote prefill. No parameters.
 * llm-d added it as the "always" alternative when `nonCachedTokens: 0` was kept to mean "never" (llm-d #871).
 */
import { z } from 'zod';
import type { DeciderDefinition } from './types.js';

/** `always-disagg-pd-decider`: every request gets a remote prefill (llm-d's default decider). */
export const alwaysDisaggPdDecider: DeciderDefinition<Record<string, never>> = {
  params: z.object({}),
  description: 'Always disaggregates.',
  create: (type, name) => ({
    type,
    name,
    decide: (input) =>
      input.decode ? { disaggregate: true, reason: 'always' } : { disaggregate: false, reason: 'no-decode-endpoint' },
  }),
};
