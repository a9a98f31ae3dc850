/** The local stack's EndpointPickerConfigs: llm-d's sim-pd config with the chosen decider, loadable by the EPP. */
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { DECIDERS, devEppConfig } from '../../src/dev/epp-configs.js';
import { LLM_D_SIM_PD_EPP_CONFIG, loadEndpointPickerConfig } from '../../src/epp/index.js';

const TYPES = {
  prefix: 'prefix-based-pd-decider',
  always: 'always-disagg-pd-decider',
  cost: 'cost-based-pd-decider',
  never: 'prefix-based-pd-decider',
};

describe('devEppConfig', () => {
  it.each(DECIDERS)('%s: loads, names its decider "decider", keeps llm-d\'s profiles', (choice) => {
    const text = devEppConfig(choice, 512, 32);
    const loaded = loadEndpointPickerConfig(text);
    expect(loaded.plugins.get('decider')?.type).toBe(TYPES[choice]);
    const doc = parse(text);
    const upstream = parse(LLM_D_SIM_PD_EPP_CONFIG);
    expect(doc.schedulingProfiles).toEqual(upstream.schedulingProfiles);
    expect(doc.plugins.find((plugin: any) => plugin.type === 'disagg-profile-handler').parameters.deciders).toEqual({
      prefill: 'decider',
    });
    expect(doc.plugins.find((plugin: any) => plugin.type === 'approx-prefix-cache-producer').parameters).toMatchObject({
      blockSizeTokens: 32,
      autoTune: false,
      maxPrefixTokensToMatch: 131072,
    });
    const decider = doc.plugins.find((plugin: any) => plugin.name === 'decider');
    if (choice === 'prefix') expect(decider.parameters).toEqual({ nonCachedTokens: 512 });
    if (choice === 'never') expect(decider.parameters).toEqual({ nonCachedTokens: 0 });
    expect(
      doc.plugins.filter((plugin: any) => plugin.type === 'prefix-based-pd-decider' && plugin.name !== 'decider'),
    ).toHaveLength(0);
  });
});

describe('devEppConfig with an encode stage (--encode)', () => {
  it("adds sim-e-p-d-epp-config.yaml's encode stage: encode-filter, the multimodal decider, an encode profile", () => {
    const text = devEppConfig('prefix', 64, 16, true);
    const loaded = loadEndpointPickerConfig(text);
    expect(loaded.plugins.get('encode-filter')?.type).toBe('encode-filter');
    expect(loaded.plugins.get('always-disagg-multimodal-decider')?.type).toBe('always-disagg-multimodal-decider');
    const doc = parse(text);
    expect(doc.plugins.find((plugin: any) => plugin.type === 'disagg-profile-handler').parameters.deciders).toEqual({
      prefill: 'decider',
      encode: 'always-disagg-multimodal-decider',
    });
    const upstream = parse(LLM_D_SIM_PD_EPP_CONFIG);
    expect(doc.schedulingProfiles).toEqual([
      ...upstream.schedulingProfiles,
      { name: 'encode', plugins: [{ pluginRef: 'encode-filter' }] },
    ]);
    // Without --encode nothing of it is there.
    expect(devEppConfig('prefix', 64, 16)).not.toContain('encode');
  });
});
