/** The local stack's EndpointPickerConfigs: llm-d's sim-pd config with the chosen decider, loadable by the EPP. */
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { DECIDERS, devEppConfig } from '../../src/dev/epp-configs.js';
import { LLM_D_SIM_PD_EPP_CONFIG, loadEndpointPickerConfig } from '../../src/epp/index.js';

const TYPES = { prefix: 'prefix-based-pd-decider', always: 'always-disagg-pd-decider', cost: 'cost-based-pd-decider', never: 'prefix-based-pd-decider' };

describe('devEppConfig', () => {
  it.each(DECIDERS)('%s: loads, names its decider "decider", keeps llm-d\'s profiles', (def) => {
    const text = devEppConfig(def, 512, 32);
    const loaded = loadEndpointPickerConfig(text);
    expect(loaded.plugins.get('decider')?.type).toBe(TYPES[def]);
    const doc = parse(text);
    const upstream = parse(LLM_D_SIM_PD_EPP_CONFIG);
    expect(doc.schedulingProfiles).toEqual(upstream.schedulingProfiles);
    expect(doc.plugins.find((params: any) => params.type === 'disagg-profile-handler').parameters.deciders).toEqual({ prefill: 'decider' });
    expect(doc.plugins.find((params: any) => params.type === 'approx-prefix-cache-producer').parameters).toMatchObject({ blockSizeTokens: 32, autoTune: false, maxPrefixTokensToMatch: 131072 });
    const decider = doc.plugins.find((params: any) => params.name === 'decider');
    if (def === 'prefix') expect(decider.parameters).toEqual({ nonCachedTokens: 512 });
    if (def === 'never') expect(decider.parameters).toEqual({ nonCachedTokens: 0 });
    expect(doc.plugins.filter((params: any) => params.type === 'prefix-based-pd-decider' && params.name !== 'decider')).toHaveLength(0);
  });
});
