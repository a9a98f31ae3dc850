import { describe, expect, it } from 'vitest';
import { alwaysDisaggMultimodalDecider, alwaysDisaggPdDecider, prefixBasedPdDecider } from '../../src/decider/index.js';
import { cached, input } from './input.js';

const make = (params: Record<string, unknown>) =>
  prefixBasedPdDecider.create('prefix-based-pd-decider', 'd', prefixBasedPdDecider.params.parse(params));

describe('prefix-based-pd-decider (upstream TestDisaggregate: 10 input tokens, block size 1)', () => {
  const cases: Array<{
    name: string;
    params: Record<string, unknown>;
    decode: Parameters<typeof input>[1];
    want: boolean;
    reason: string;
  }> = [
    {
      name: 'threshold 0 disables',
      params: { nonCachedTokens: 0 },
      decode: cached(0, 10),
      want: false,
      reason: 'disabled',
    },
    {
      name: 'no decode endpoint',
      params: { nonCachedTokens: 5 },
      decode: undefined,
      want: false,
      reason: 'no-decode-endpoint',
    },
    {
      name: 'prompt shorter than promptTokens',
      params: { nonCachedTokens: 5, promptTokens: 11 },
      decode: cached(0, 10),
      want: false,
      reason: 'below-prompt-tokens',
    },
    {
      name: 'input shorter than the threshold',
      params: { nonCachedTokens: 11 },
      decode: cached(0, 10),
      want: false,
      reason: 'below-threshold',
    },
    {
      name: 'input equal to promptTokens',
      params: { nonCachedTokens: 5, promptTokens: 10 },
      decode: cached(0, 10),
      want: true,
      reason: 'above-threshold',
    },
    {
      name: 'non-cached below the threshold',
      params: { nonCachedTokens: 5 },
      decode: cached(6, 10),
      want: false,
      reason: 'cached',
    },
    {
      name: 'non-cached suffix equals threshold',
      params: { nonCachedTokens: 5 },
      decode: cached(5, 10),
      want: true,
      reason: 'above-threshold',
    },
    {
      name: 'non-cached above the threshold',
      params: { nonCachedTokens: 5 },
      decode: cached(2, 10),
      want: true,
      reason: 'above-threshold',
    },
    { name: 'fully cached', params: { nonCachedTokens: 1 }, decode: cached(10, 10), want: false, reason: 'cached' },
    {
      name: 'no cache at all',
      params: { nonCachedTokens: 5 },
      decode: cached(0, 10),
      want: true,
      reason: 'above-threshold',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = make(c.params).decide(input(10, c.decode));
      expect(d.disaggregate).toBe(c.want);
      expect(d.reason).toBe(c.reason);
    });
  }

  it('uses the unweighted cached block count (#1047): 4096 tokens, block 16, 240 cached blocks, threshold 512 → no', () => {
    const d = make({ nonCachedTokens: 512 }).decide(input(4096, cached(240, 256, 16)));
    expect(d).toMatchObject({
      disaggregate: false,
      reason: 'cached',
      detail: { hitTokens: 3840, nonCachedTokens: 256 },
    });
  });

  it('non-cached can go negative (the partial last block counts whole) and then never disaggregates', () => {
    const d = make({ nonCachedTokens: 1 }).decide(input(100, cached(2, 2, 64)));
    expect(d.detail).toMatchObject({ nonCachedTokens: -28 });
    expect(d.disaggregate).toBe(false);
  });

  it('no prefix info on the decode endpoint → no', () => {
    expect(make({ nonCachedTokens: 5 }).decide(input(10, {}))).toMatchObject({
      disaggregate: false,
      reason: 'no-prefix-info',
    });
  });

  it('factory: defaults 0/0, negative or fractional values rejected', () => {
    expect(prefixBasedPdDecider.params.parse({})).toEqual({ nonCachedTokens: 0, promptTokens: 0 });
    expect(prefixBasedPdDecider.params.safeParse({ nonCachedTokens: -1 }).success).toBe(false);
    expect(prefixBasedPdDecider.params.safeParse({ promptTokens: -1 }).success).toBe(false);
    expect(prefixBasedPdDecider.params.safeParse({ nonCachedTokens: 1.5 }).success).toBe(false);
    expect(prefixBasedPdDecider.params.safeParse({ nonCachedTokens: '16' }).success).toBe(false);
  });
});

describe('always-disagg-pd-decider and always-disagg-multimodal-decider', () => {
  it('always disaggregates when there is a decode pick', () => {
    const d = alwaysDisaggPdDecider.create('always-disagg-pd-decider', 'a', {});
    expect(d.decide(input(1, {}))).toEqual({ disaggregate: true, reason: 'always' });
    expect(d.decide(input(1, undefined))).toEqual({ disaggregate: false, reason: 'no-decode-endpoint' });
  });

  it('multimodal: true iff an image/audio/video block is present', () => {
    const d = alwaysDisaggMultimodalDecider.create('always-disagg-multimodal-decider', 'mm', {});
    const text = { messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] };
    const image = {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this' },
            { type: 'image_url', image_url: { url: 'data:' } },
          ],
        },
      ],
    };
    const audio = { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: '' } }] }] };
    expect(d.decide(input(1, {}, text)).disaggregate).toBe(false);
    expect(d.decide(input(1, {}, image))).toEqual({ disaggregate: true, reason: 'multimodal' });
    expect(d.decide(input(1, {}, audio)).disaggregate).toBe(true);
    expect(d.decide(input(1, {}, undefined)).disaggregate).toBe(false);
  });
});
