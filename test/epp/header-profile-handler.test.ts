/**
 * header-profile-handler (llm-d-router): the EPP-Profile header picks the one profile to run; the default without it;
 * a single profile always runs; an unconfigured value fails as upstream (429, its message); parameters; and a real EPP
 * over ext_proc routing each stage to its pods.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import { InferenceError, loadEndpointPickerConfig } from '../../src/epp/index.js';
import { harness, spec, startTestEpp, storeWith, type TestEpp } from './fixtures.js';
import { routeOverExtProc } from './ext-proc-route.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const STAGES = (params = '') => `${LLMD}plugins:
- type: encode-filter
- type: prefill-filter
- type: decode-filter
- type: header-profile-handler${params ? `\n  parameters: ${params}` : ''}
schedulingProfiles:
- name: encode
  plugins: [{pluginRef: encode-filter}]
- name: prefill
  plugins: [{pluginRef: prefill-filter}]
- name: decode
  plugins: [{pluginRef: decode-filter}]
`;
const POOL = () =>
  storeWith([spec('e0', '10.0.0.1', 'encode'), spec('p0', '10.0.0.2', 'prefill'), spec('d0', '10.0.0.3', 'decode')]);

function failure(fn: () => unknown): InferenceError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InferenceError);
    return e as InferenceError;
  }
  throw new Error('expected an InferenceError');
}

describe('header-profile-handler', () => {
  it('runs the profile the header names (trimmed, header name case-insensitive); decode without the header', () => {
    const h = harness(STAGES(), POOL());
    const pick = (headers: Record<string, string> = {}) => {
      const r = h.route('hi', { headers });
      expect([...r.result.results.keys()]).toEqual([r.result.primaryProfile]);
      return `${r.result.primaryProfile}:${r.result.results.get(r.result.primaryProfile)!.targets[0].name}`;
    };
    expect(pick({ 'epp-profile': 'encode' })).toBe('encode:e0');
    expect(pick({ 'epp-profile': ' prefill ' })).toBe('prefill:p0');
    expect(pick({ 'epp-profile': 'decode' })).toBe('decode:d0');
    expect(pick()).toBe('decode:d0');
    expect(pick({ 'epp-profile': '   ' })).toBe('decode:d0');
    // No routing headers: the primary pick is the destination, nothing else is written.
    const r = h.route('hi', { headers: { 'epp-profile': 'prefill' } });
    expect(r.destination).toBe('10.0.0.2:8000');
    expect(r.ctx.request.headers['x-prefiller-host-port']).toBeUndefined();
  });

  it('a value naming no profile fails with 429 and the message upstream’s scheduler gives; so does a missing default', () => {
    const h = harness(STAGES(), POOL());
    const e = failure(() => h.route('hi', { headers: { 'epp-profile': 'Decode', 'x-request-id': 'req-7' } }));
    expect([e.status, e.message]).toEqual([
      429,
      'failed to find target endpoint: failed to run any scheduler profile for request req-7',
    ]);
    const noDefault = harness(STAGES('{defaultProfile: aggregate}'), POOL());
    expect(noDefault.config.warnings).toEqual([
      'plugin "header-profile-handler" (type header-profile-handler): defaultProfile "aggregate" is not a scheduling profile (encode, prefill, decode): requests without the epp-profile header will fail',
    ]);
    expect(failure(() => noDefault.route('hi', { headers: { 'x-request-id': 'req-8' } })).message).toBe(
      'failed to find target endpoint: failed to run any scheduler profile for request req-8',
    );
  });

  it('a profile whose filters leave nothing fails as the other handlers do (429, rejected-saturated)', () => {
    const h = harness(STAGES(), storeWith([spec('d0', '10.0.0.3', 'decode')]));
    const e = failure(() => h.route('hi', { headers: { 'epp-profile': 'encode' } }));
    expect([e.status, e.dropReason]).toEqual([429, 'rejected-saturated']);
  });

  it('with a single profile, that profile always runs, whatever the header says', () => {
    const h = harness(
      `${LLMD}plugins: [{type: decode-filter}, {type: header-profile-handler}]\nschedulingProfiles: [{name: only, plugins: [{pluginRef: decode-filter}]}]`,
      POOL(),
    );
    expect(h.config.warnings).toEqual([]);
    expect(h.route('hi', { headers: { 'epp-profile': 'encode' } }).destination).toBe('10.0.0.3:8000');
  });

  it('headerName and defaultProfile; unknown or mistyped keys fail naming the plugin and key', () => {
    const h = harness(STAGES('{headerName: X-Stage, defaultProfile: prefill}'), POOL());
    expect(h.route('hi').destination).toBe('10.0.0.2:8000');
    expect(h.route('hi', { headers: { 'x-stage': 'encode' } }).destination).toBe('10.0.0.1:8000');
    expect(() => loadEndpointPickerConfig(STAGES('{header: x}'))).toThrow(ConfigError);
    expect(() => loadEndpointPickerConfig(STAGES('{header: x}'))).toThrow(
      /plugin "header-profile-handler" \(type header-profile-handler\): unknown parameter "header"/,
    );
    expect(() => loadEndpointPickerConfig(STAGES('{defaultProfile: [a]}'))).toThrow(
      /plugin "header-profile-handler" \(type header-profile-handler\): parameter "defaultProfile"/,
    );
  });
});

describe('over ext_proc', () => {
  let t: TestEpp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('each call goes to the pods of the stage its header names; an unknown stage is an immediate 429', async () => {
    t = await startTestEpp(`${STAGES()}dataLayer: {injectDefaults: false}\n`, [
      spec('e0', '127.0.0.21', 'encode', {}, 8000),
      spec('p0', '127.0.0.22', 'prefill', {}, 8000),
      spec('d0', '127.0.0.23', 'decode', {}, 8000),
    ]);
    const route = (stage?: string) =>
      routeOverExtProc(
        t!.client,
        { model: 'm', prompt: 'hi' },
        { headers: { 'x-request-id': `req-${stage}`, ...(stage ? { 'EPP-Profile': stage } : {}) } },
      );
    expect((await route('encode')).set.get('x-gateway-destination-endpoint')).toBe('127.0.0.21:8000');
    expect((await route('prefill')).set.get('x-gateway-destination-endpoint')).toBe('127.0.0.22:8000');
    expect((await route()).set.get('x-gateway-destination-endpoint')).toBe('127.0.0.23:8000');
    expect((await route('nope')).rejected).toEqual({
      status: 429,
      body: 'inference error: ResourceExhausted - failed to find target endpoint: failed to run any scheduler profile for request req-nope',
    });
  }, 60_000);
});
