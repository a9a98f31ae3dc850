/**
 * EndpointPickerConfigs the local stack runs, one per decider. All are llm-d's `sim-pd-epp-config.yaml` shape
 * (prefix-cache scorer ×2 and queue scorer ×1 on both profiles, role filters, max-score picker, decode-first
 * disagg-profile-handler) with a different prefill decider.
 */
export const DECIDERS = ['prefix', 'always', 'cost', 'never'] as const;
export type DeciderChoice = (typeof DECIDERS)[number];

const deciderPlugin = (d: DeciderChoice, nonCachedTokens: number): string => ({
  prefix: `- type: prefix-based-pd-decider
  name: decider
  parameters:
    nonCachedTokens: ${nonCachedTokens}`,
  always: `- type: always-disagg-pd-decider
  name: decider`,
  cost: `- type: cost-based-pd-decider
  name: decider`,
  // nonCachedTokens 0 is llm-d's "never disaggregate".
  never: `- type: prefix-based-pd-decider
  name: decider
  parameters:
    nonCachedTokens: 0`,
})[d];

export function devEppConfig(decider: DeciderChoice, nonCachedTokens = 256, blockSizeTokens = 16): string {
  return `# pd-router dev: P/D with the ${decider} decider
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
  parameters:
    blockSizeTokens: ${blockSizeTokens}
    autoTune: false
    maxPrefixTokensToMatch: 131072
    lruCapacityPerServer: 31250
- type: prefix-cache-scorer
- type: queue-scorer
- type: prefill-filter
- type: decode-filter
- type: max-score-picker
${deciderPlugin(decider, nonCachedTokens)}
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: decider
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: max-score-picker
  - pluginRef: prefix-cache-scorer
    weight: 2
  - pluginRef: queue-scorer
    weight: 1
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
  - pluginRef: prefix-cache-scorer
    weight: 2
  - pluginRef: queue-scorer
    weight: 1
`;
}
