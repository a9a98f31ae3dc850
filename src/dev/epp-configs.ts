/**
 * EndpointPickerConfigs the local stack runs, one per decider: llm-d's `sim-pd-epp-config.yaml` (prefix-cache scorer
 * ×2 and queue scorer ×1 on both profiles, role filters, max-score picker, decode-first disagg-profile-handler) with
 * the chosen prefill decider in place of its prefix-based one, and a longer prefix match (the simulators' prompts reach
 * 128k tokens).
 */
import { parseDocument } from 'yaml';
import { LLM_D_SIM_PD_EPP_CONFIG } from '../epp/index.js';

export const DECIDERS = ['prefix', 'always', 'cost', 'never'] as const;
export type DeciderChoice = (typeof DECIDERS)[number];

const DECIDER_NAME = 'decider';

function deciderPlugin(text: DeciderChoice, nonCachedTokens: number): Record<string, unknown> {
  switch (text) {
    case 'prefix':
      return { type: 'prefix-based-pd-decider', name: DECIDER_NAME, parameters: { nonCachedTokens } };
    case 'always':
      return { type: 'always-disagg-pd-decider', name: DECIDER_NAME };
    case 'cost':
      return { type: 'cost-based-pd-decider', name: DECIDER_NAME };
    case 'never':
      // nonCachedTokens 0 is llm-d's "never disaggregate".
      return { type: 'prefix-based-pd-decider', name: DECIDER_NAME, parameters: { nonCachedTokens: 0 } };
  }
}

export function devEppConfig(decider: DeciderChoice, nonCachedTokens = 256, blockSizeTokens = 16): string {
  const doc = parseDocument(LLM_D_SIM_PD_EPP_CONFIG);
  doc.commentBefore = ` pd-router dev: llm-d's sim-pd-epp-config.yaml with the ${decider} decider`;
  const plugins = doc.toJS().plugins as Array<Record<string, any>>;
  const next = plugins.map((params) => {
    if (params.type === 'approx-prefix-cache-producer') return { ...params, parameters: { ...params.parameters, blockSizeTokens, maxPrefixTokensToMatch: 131072 } };
    if (params.type === 'prefix-based-pd-decider') return deciderPlugin(decider, nonCachedTokens);
    if (params.type === 'disagg-profile-handler') return { ...params, parameters: { ...params.parameters, deciders: { prefill: DECIDER_NAME } } };
    return params;
  });
  doc.set('plugins', doc.createNode(next));
  return doc.toString();
}
