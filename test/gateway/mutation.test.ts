/** The gateway applies ext_proc header mutations as Envoy's ext_proc filter does (source/extensions/filters/http/ext_proc/mutation_utils.cc). */
import { describe, expect, it } from 'vitest';
import { applyMutation } from '../../src/gateway/proxy.js';

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });

describe('ext_proc header mutations in the gateway', () => {
  it('a set header replaces the values unless append is true; append_action is ignored, as Envoy ignores it', () => {
    const h = new Map<string, string[]>([
      ['content-length', ['35']],
      ['content-type', ['application/json']],
      ['x-multi', ['a']],
    ]);
    applyMutation(h, {
      set_headers: [
        // llm-d's EPPs: no append, no append_action (decoded as its first value, APPEND_IF_EXISTS_OR_ADD).
        { header: hv('Content-Length', '40'), append_action: 'APPEND_IF_EXISTS_OR_ADD' },
        { header: hv('content-type', 'application/json') },
        { header: hv('x-gateway-destination-endpoint', '10.0.0.1:8000'), append: null },
        { header: hv('x-multi', 'b'), append: { value: true } },
        { header: hv('x-new', 'c'), append: { value: true } },
      ],
      remove_headers: [],
    });
    expect(Object.fromEntries(h)).toEqual({
      'content-length': ['40'],
      'content-type': ['application/json'],
      'x-multi': ['a', 'b'],
      'x-gateway-destination-endpoint': ['10.0.0.1:8000'],
      'x-new': ['c'],
    });
  });

  it('removals come first', () => {
    const h = new Map<string, string[]>([['x-a', ['1']]]);
    applyMutation(h, { remove_headers: ['X-A'], set_headers: [{ header: hv('x-a', '2'), append: { value: true } }] });
    expect(h.get('x-a')).toEqual(['2']);
  });
});
