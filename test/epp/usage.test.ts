/** Usage from model-server answers: JSON, SSE split anywhere, continuous usage stats, Responses API events. */
import { describe, expect, it } from 'vitest';
import { SseUsageReader, usageFromJson } from '../../src/epp/extproc/usage.js';

const feedAll = (text: string, splitEvery: number) => {
  const r = new SseUsageReader();
  const b = Buffer.from(text, 'utf8');
  for (let i = 0; i < b.length; i += splitEvery) r.feed(b.subarray(i, i + splitEvery));
  r.end();
  return r;
};

describe('usage', () => {
  it('SSE with continuous usage stats: the last totals count, whatever the chunking (multi-byte text split too)', () => {
    const sse =
      'data: {"choices":[{"delta":{"content":"é"}}],"usage":{"prompt_tokens":7,"completion_tokens":1}}\n\n' +
      'data: {"choices":[{"delta":{"content":"ü"}}],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n' +
      'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}\n\n' +
      'data: [DONE]\n\n';
    for (const n of [1, 3, 7, 1000]) {
      const r = feedAll(sse, n);
      expect(r.usage, `split every ${n} bytes`).toEqual({ promptTokens: 7, completionTokens: 3, cachedTokens: 4 });
      expect(r.events).toBe(3);
    }
  });

  it('SSE with include_usage: null usage on content chunks, the totals on the last', () => {
    const r = feedAll(
      'data: {"usage":null}\r\n\r\ndata: {"usage":null}\n\ndata: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":5}}\n\ndata: [DONE]\n\n',
      5,
    );
    expect(r.usage).toEqual({ promptTokens: 2, completionTokens: 5 });
  });

  it('Responses API: usage from response.completed; JSON answers: usage or nothing', () => {
    const r = feedAll(
      'data: {"type":"response.output_text.delta","delta":"x"}\n\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":4,"input_tokens_details":{"cached_tokens":1}}}}\n\n',
      9,
    );
    expect(r.usage).toEqual({ promptTokens: 3, completionTokens: 4, cachedTokens: 1 });
    expect(usageFromJson(Buffer.from('{"usage":{"prompt_tokens":"5","completion_tokens":6}}'))).toEqual({
      promptTokens: 5,
      completionTokens: 6,
    });
    expect(usageFromJson(Buffer.from('not json'))).toBeUndefined();
    expect(feedAll('data: {"choices":[]}\n\n', 4).usage).toBeUndefined();
  });
});
