/**
 * The E/PD encode stage of the EPP against llm-d-router ebab687's semantics, with its sample configs loaded unchanged:
 * `always-disagg-multimodal-decider` runs the encode profile for a chat request with multimodal content, `encode-filter`
 * keeps encode-capable pods, the encode profile's picks become `x-encoder-hosts-ports` (comma-joined `host:port`,
 * IPv6 bracketed), and without an encoder pod the request is scheduled as if there were no encode stage.
 */
import { describe, expect, it } from 'vitest';
import { upstreamText } from '../fixtures/upstream-configs/index.js';
import { harness, spec, storeWith } from './fixtures.js';

const E_P_D = upstreamText('llm-d-router-ebab687/deploy/config/sim-e-p-d-epp-config.yaml');
const E_PD = upstreamText('llm-d-router-ebab687/deploy/config/sim-e-pd-epp-config.yaml');
const IMAGE = { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } };
const LONG = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');

function chat(epp: ReturnType<typeof harness>, content: unknown, headers: Record<string, string> = {}) {
  const parsed = epp.director.parse(
    'r',
    { ':path': '/v1/chat/completions', ...headers },
    Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content }] })),
  );
  const out = epp.director.schedule(parsed.request, undefined);
  return { type: out.ctx.decision?.type, headers: out.ctx.request.headers };
}

describe('encode stage (sim-e-p-d / sim-e-pd configs, unchanged)', () => {
  it('E/P/D: a long multimodal prompt gets one encoder (the default picker) and a prefiller; text gets neither', () => {
    const h = harness(
      E_P_D,
      storeWith([
        spec('e0', '10.0.0.5', 'encode'),
        spec('e1', '10.0.0.6', 'encode'),
        spec('p0', '10.0.0.1', 'prefill'),
        spec('d0', '10.0.0.2', 'decode'),
      ]),
    );
    const mm = chat(h, [{ type: 'text', text: LONG }, IMAGE]);
    expect(mm.type).toBe('encode-prefill-decode');
    expect(['10.0.0.5:8000', '10.0.0.6:8000']).toContain(mm.headers['x-encoder-hosts-ports']);
    expect(mm.headers['x-prefiller-host-port']).toBe('10.0.0.1:8000');
    const text = chat(h, 'hi');
    expect(text.type).toBe('decode-only');
    expect(text.headers['x-encoder-hosts-ports']).toBeUndefined();
  });

  it('audio, video and input_audio parts are multimodal too', () => {
    const h = harness(E_PD, storeWith([spec('e0', '10.0.0.5', 'encode'), spec('d0', '10.0.0.2', 'decode')]));
    for (const part of [
      { type: 'audio_url', audio_url: { url: 'a' } },
      { type: 'video_url', video_url: { url: 'v' } },
      { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
    ])
      expect(chat(h, [part]).headers['x-encoder-hosts-ports'], part.type).toBe('10.0.0.5:8000');
  });

  it('no encoder pod: no x-encoder-hosts-ports, and the request is served as P/D or decode-only', () => {
    const epd = harness(E_P_D, storeWith([spec('p0', '10.0.0.1', 'prefill'), spec('d0', '10.0.0.2', 'decode')]));
    const mm = chat(epd, [{ type: 'text', text: LONG }, IMAGE]);
    expect(mm.type).toBe('prefill-decode');
    expect(mm.headers['x-encoder-hosts-ports']).toBeUndefined();
    expect(mm.headers['x-prefiller-host-port']).toBe('10.0.0.1:8000');
    const epd2 = harness(E_PD, storeWith([spec('d0', '10.0.0.2', 'decode')]));
    const only = chat(epd2, [IMAGE]);
    expect(only.type).toBe('decode-only');
    expect(only.headers['x-encoder-hosts-ports']).toBeUndefined();
  });

  it("encode-prefill and encode-prefill-decode pods encode; IPv6 is bracketed; a client's own header is dropped", () => {
    const h = harness(E_PD, storeWith([spec('ep', 'fd00::7', 'encode-prefill'), spec('d0', '10.0.0.2', 'decode')]));
    expect(chat(h, [IMAGE]).headers['x-encoder-hosts-ports']).toBe('[fd00::7]:8000');
    const forged = chat(h, 'text only', { 'x-encoder-hosts-ports': '169.254.169.254:80' });
    expect(forged.headers['x-encoder-hosts-ports']).toBeUndefined();
  });
});

describe('encode stage plugins: parameters', () => {
  const config = (plugin: string) =>
    `apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: decode-filter\n${plugin}\nschedulingProfiles:\n- name: decode\n  plugins: [{pluginRef: decode-filter}]\n`;
  it.each([
    [
      'encode-filter',
      '- type: encode-filter\n  parameters: {role: encode}',
      /plugin "encode-filter" \(type encode-filter\): unknown parameter "role"/,
    ],
    [
      'always-disagg-multimodal-decider',
      '- type: always-disagg-multimodal-decider\n  parameters: {threshold: 1}',
      /plugin "always-disagg-multimodal-decider" \(type always-disagg-multimodal-decider\): unknown parameter "threshold"/,
    ],
    [
      'disagg-profile-handler deciders',
      '- type: always-disagg-multimodal-decider\n- type: disagg-profile-handler\n  parameters: {deciders: {encoder: always-disagg-multimodal-decider}}',
      /plugin "disagg-profile-handler" \(type disagg-profile-handler\).*encoder/,
    ],
  ])('%s: an unknown parameter is a load error naming the plugin and the key', (_name, plugin, error) => {
    expect(() => harness(config(plugin), storeWith([spec('d0', '10.0.0.2', 'decode')]))).toThrow(error);
  });
});
