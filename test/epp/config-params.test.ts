import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import { applyConfigParams, loadEndpointPickerConfig } from '../../src/epp/index.js';

const CONFIG = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-based-pd-decider
  name: decider
  parameters:
    nonCachedTokens: 16
- type: approx-prefix-cache-producer
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: decider
- type: decode-filter
- type: prefill-filter
schedulingProfiles:
- name: decode
  plugins: [{pluginRef: decode-filter}]
- name: prefill
  plugins: [{pluginRef: prefill-filter}]
`;

describe('--config-param', () => {
  it('sets a plugin parameter by plugin name (or type), typed from YAML, nested paths included', () => {
    const out = parse(
      applyConfigParams(CONFIG, [
        'decider.nonCachedTokens=256',
        'approx-prefix-cache-producer.autoTune=false',
        'disagg-profile-handler.deciders.prefill=decider',
      ]),
    ) as { plugins: Array<{ parameters?: Record<string, unknown> }> };
    expect(out.plugins[0].parameters).toEqual({ nonCachedTokens: 256 });
    expect(out.plugins[1].parameters).toEqual({ autoTune: false });
    expect(out.plugins[2].parameters).toEqual({ deciders: { prefill: 'decider' } });
    expect(() => loadEndpointPickerConfig(applyConfigParams(CONFIG, ['decider.nonCachedTokens=256']))).not.toThrow();
  });

  it('rejects unknown plugins and malformed values; bad parameter values fail in the loader naming the plugin', () => {
    expect(() => applyConfigParams(CONFIG, ['nosuch.x=1'])).toThrow(
      new ConfigError('--config-param nosuch.x=1: no plugin named "nosuch" in the EndpointPickerConfig'),
    );
    expect(() => applyConfigParams(CONFIG, ['decider'])).toThrow(/expected <plugin-name>\.<parameter>=<value>/);
    expect(() => loadEndpointPickerConfig(applyConfigParams(CONFIG, ['decider.nonCachedTokens=-5']))).toThrow(
      /decider/,
    );
  });

  it('leaves the text alone when no parameter is given', () => {
    expect(applyConfigParams(CONFIG, [])).toBe(CONFIG);
  });
});
