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

/** The encode stage of llm-d's sim-e-p-d-epp-config.yaml: encode-filter, the multimodal decider, an encode profile. */
const ENCODE_FILTER = 'encode-filter';
const ENCODE_DECIDER = 'always-disagg-multimodal-decider';

export function devEppConfig(
  decider: DeciderChoice,
  nonCachedTokens = 256,
  blockSizeTokens = 16,
  encode = false,
): string {
  const doc = parseDocument(LLM_D_SIM_PD_EPP_CONFIG);
  doc.commentBefore = ` pd-router dev: llm-d's sim-pd-epp-config.yaml with the ${decider} decider`;
  // eslint-disable-next-line @typescript-eslint/no-unsafe-member-access -- the YAML document as parsed
  const plugins = doc.toJS().plugins as Array<{ type: string; parameters?: Record<string, unknown> }>;
  const next = plugins.map((plugin) => {
    if (plugin.type === 'approx-prefix-cache-producer')
      return { ...plugin, parameters: { ...plugin.parameters, blockSizeTokens, maxPrefixTokensToMatch: 131072 } };
    if (plugin.type === 'prefix-based-pd-decider') return deciderPlugin(decider, nonCachedTokens);
    if (plugin.type === 'disagg-profile-handler') {
      const deciders = encode ? { prefill: DECIDER_NAME, encode: ENCODE_DECIDER } : { prefill: DECIDER_NAME };
      return { ...plugin, parameters: { ...plugin.parameters, deciders } };
    }
    return plugin;
  });
  if (encode) {
    // As sim-e-p-d-epp-config.yaml: multimodal requests also get an encode pick (one encoder, the default picker).
    next.push({ type: ENCODE_FILTER }, { type: ENCODE_DECIDER });
    const profiles = doc.get('schedulingProfiles') as { add(value: unknown): void };
    profiles.add(doc.createNode({ name: 'encode', plugins: [{ pluginRef: ENCODE_FILTER }] }));
    doc.commentBefore = ` pd-router dev: llm-d's sim-pd-epp-config.yaml with the ${decider} decider and an encode stage`;
  }
  doc.set('plugins', doc.createNode(next));
  return doc.toString();
}
