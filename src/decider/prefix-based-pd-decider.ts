/**
 * `prefix-based-pd-decider`: disaggregate when the part of the prompt the chosen decode endpoint does not already hold
 * in its prefix cache is at least `nonCachedTokens` tokens.
 *
 * Parameters (both integers >= 0, default 0):
 * - `nonCachedTokens`: the threshold. 0 disables the decider: it never disaggregates (llm-d #691/#871).
 * - `promptTokens`: prompts shorter than this never disaggregate; 0 disables the gate (llm-d #933).
 *
 * Steps, in llm-d's order (each "no" ends the decision):
 * 1. nonCachedTokens = 0 → no (`disabled`).
 * 2. no decode endpoint → no (`no-decode-endpoint`).
 * 3. input = the request's token count (estimate tokenizer).
 * 4. promptTokens > 0 and input < promptTokens → no (`below-prompt-tokens`).
 * 5. input < nonCachedTokens → no (`below-threshold`).
 * 6. no prefix-match info on the decode endpoint → no (`no-prefix-info`).
 * 7. hit = matchedBlocks × blockSizeTokens, the unweighted count (llm-d #1047/#1413).
 * 8. nonCached = input − hit; it can be negative because the partial last block counts as a whole block.
 * 9. nonCached >= nonCachedTokens → yes (`above-threshold`; equality disaggregates), else no (`cached`).
 */
import { z } from 'zod';
import type { DeciderDefinition } from './types.js';

const nonNegativeInt = z.number().int().min(0, 'must be >= 0');

/** The parameters of `prefix-based-pd-decider`. */
export const prefixBasedPdDeciderParams = z.object({
  nonCachedTokens: nonNegativeInt.default(0),
  promptTokens: nonNegativeInt.default(0),
});

/** Parsed parameters of `prefix-based-pd-decider`. */
export type PrefixBasedPdDeciderParams = z.infer<typeof prefixBasedPdDeciderParams>;

/** `prefix-based-pd-decider`: a remote prefill when the prompt's uncached part is at least `nonCachedTokens` tokens. */
export const prefixBasedPdDecider: DeciderDefinition<PrefixBasedPdDeciderParams> = {
  params: prefixBasedPdDeciderParams,
  description: 'Disaggregates when the uncached prompt suffix on the decode pick is at least nonCachedTokens.',
  create: (type, name, params) => ({
    type,
    name,
    decide(input) {
      const { nonCachedTokens, promptTokens } = params;
      if (nonCachedTokens === 0) return { disaggregate: false, reason: 'disabled' };
      if (!input.decode) return { disaggregate: false, reason: 'no-decode-endpoint' };
      const inputTokens = input.request.tokenCount;
      if (promptTokens > 0 && inputTokens < promptTokens) {
        return { disaggregate: false, reason: 'below-prompt-tokens', detail: { inputTokens, promptTokens } };
      }
      if (inputTokens < nonCachedTokens)
        return { disaggregate: false, reason: 'below-threshold', detail: { inputTokens, nonCachedTokens } };
      const prefix = input.decode.prefix;
      if (!prefix) return { disaggregate: false, reason: 'no-prefix-info', detail: { inputTokens } };
      const hitTokens = prefix.matchedBlocks * prefix.blockSizeTokens;
      const nonCached = inputTokens - hitTokens;
      const detail = {
        inputTokens,
        hitTokens,
        nonCachedTokens: nonCached,
        threshold: nonCachedTokens,
        matchedBlocks: prefix.matchedBlocks,
        totalBlocks: prefix.totalBlocks,
      };
      return nonCached >= nonCachedTokens
        ? { disaggregate: true, reason: 'above-threshold', detail }
        : { disaggregate: false, reason: 'cached', detail };
    },
  }),
};
