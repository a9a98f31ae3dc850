import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SseCachedTokensRewriter, rewriteJsonBody, sidecarConfig, startSidecar } from '../../src/sidecar/index.js';
import { mayHoldUsage } from '../../src/sidecar/cached-tokens-rewriter.js';
import { simConfig, startSimulator } from '../../src/sim/index.js';
import { postJson, sseJson } from '../helpers.js';

const STREAM = [
  'data: {"id":"1","choices":[{"delta":{"role":"assistant"}}],"usage":null}\n\n',
  'data: {"id":"1","choices":[{"delta":{"content":"héllo 世界"}}],"usage":null}\n\n',
  ': keep-alive comment\n\n',
  'event: ping\ndata: not json\n\n',
  'data: {"id":"1","choices":[],"usage":{"prompt_tokens":60,"completion_tokens":2,"total_tokens":62,"prompt_tokens_details":{"cached_tokens":49}}}\n\n',
  'data: [DONE]\n\n',
].join('');
const EXPECTED = STREAM.replace('"cached_tokens":49', '"cached_tokens":7');

function runRewriter(input: Buffer, cuts: number[], cached: number): string {
  const rw = new SseCachedTokensRewriter(cached);
  const out: Buffer[] = [];
  let prev = 0;
  for (const cut of [...cuts].sort((left, right) => left - right)) {
    out.push(rw.push(input.subarray(prev, cut)));
    prev = cut;
  }
  out.push(rw.push(input.subarray(prev)));
  out.push(rw.end());
  return Buffer.concat(out).toString('utf8');
}

describe('SSE cached_tokens rewriter', () => {
  it('rewrites the usage chunk and keeps every other byte', () => {
    expect(runRewriter(Buffer.from(STREAM), [], 7)).toBe(EXPECTED);
  });

  it('gives the same output however the stream is split, even inside a data line or a UTF-8 character', () => {
    const input = Buffer.from(STREAM);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: input.length - 1 }), { maxLength: 40 }), (cuts) => {
        expect(runRewriter(input, cuts, 7)).toBe(EXPECTED);
      }),
      { numRuns: 300 },
    );
  });

  it('splitting byte by byte still works', () => {
    const input = Buffer.from(STREAM);
    expect(
      runRewriter(
        input,
        Array.from({ length: input.length - 1 }, (_, i) => i + 1),
        7,
      ),
    ).toBe(EXPECTED);
  });

  it('creates prompt_tokens_details when missing, sets 0 when the prefiller reported none', () => {
    const line = 'data: {"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n';
    expect(runRewriter(Buffer.from(line), [], 0)).toBe(
      'data: {"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,"prompt_tokens_details":{"cached_tokens":0}}}\n',
    );
    const nullDetails = 'data: {"usage":{"prompt_tokens":5,"prompt_tokens_details":null}}\n';
    expect(runRewriter(Buffer.from(nullDetails), [], 3)).toBe(
      'data: {"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":3}}}\n',
    );
  });

  it('rewrites the responses API completed event and keeps CRLF line ends', () => {
    const line =
      'event: response.completed\r\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":9,"output_tokens":1}}}\r\n\r\n';
    expect(runRewriter(Buffer.from(line), [20, 60], 4)).toBe(
      'event: response.completed\r\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":9,"output_tokens":1,"input_tokens_details":{"cached_tokens":4}}}}\r\n\r\n',
    );
  });

  it('flushes a trailing line without newline at the end', () => {
    expect(runRewriter(Buffer.from('data: {"usage":{"prompt_tokens":1}}'), [10], 2)).toBe(
      'data: {"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":2}}}',
    );
  });

  it('passes events whose usage is null byte for byte, and still rewrites a usage object next to them', () => {
    // 1.0 and \u00e9 would come out as 1 and é if these events were parsed and serialized again.
    const nulls =
      'data: {"usage":null,"x":1.0,"c":"\\u00e9 \\"usage\\" \\"usage\\":null"}\n\ndata: {"object":"usage","usage":null,"x":1.0}\n\n';
    expect(runRewriter(Buffer.from(nulls), [], 5)).toBe(nulls);
    const spaced = 'data: {"usage": null,"x":1.0}\n\ndata: {"usage": {"prompt_tokens":2},"y":1.0}\n\n';
    expect(runRewriter(Buffer.from(nulls + spaced), [], 5)).toBe(
      nulls +
        'data: {"usage": null,"x":1.0}\n\ndata: {"usage":{"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":5}},"y":1}\n\n',
    );
    expect(mayHoldUsage(Buffer.from('{"usage":null}'))).toBe(false);
    expect(mayHoldUsage(Buffer.from('{"a":1}'))).toBe(false);
    for (const text of ['{"usage":{}}', '{"usage":nul', '{"usage"', '{"usage":null,"response":{"usage":{}}}'])
      expect(mayHoldUsage(Buffer.from(text))).toBe(true);
  });

  it('never holds back a complete line', () => {
    const rw = new SseCachedTokensRewriter(1);
    expect(rw.push(Buffer.from('data: {"a":1}\n\ndata: {"us')).toString()).toBe('data: {"a":1}\n\n');
  });
});

describe('JSON cached_tokens rewrite', () => {
  it('rewrites bodies of any size in one piece', () => {
    const body = Buffer.from(
      JSON.stringify({
        text: 'x'.repeat(200_000),
        usage: { prompt_tokens: 10, prompt_tokens_details: { cached_tokens: 9 } },
      }),
    );
    const out = JSON.parse(rewriteJsonBody(body, 3).toString());
    expect(out.usage.prompt_tokens_details.cached_tokens).toBe(3);
    expect(out.text.length).toBe(200_000);
  });

  it('leaves non-JSON and usage-less bodies untouched (same buffer)', () => {
    const a = Buffer.from('not json "usage"');
    expect(rewriteJsonBody(a, 1)).toBe(a);
    const b = Buffer.from('{"x":1}');
    expect(rewriteJsonBody(b, 1)).toBe(b);
  });
});

describe('over HTTP: a decoder that splits an SSE data line across writes', () => {
  it('the client gets the rewritten usage line whole, and earlier events without delay', async () => {
    const prefill = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: ['m'] }));
    const usageLine =
      'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":8}}}\n\n';
    const decoder = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n');
      const pieces = [usageLine.slice(0, 9), usageLine.slice(9, 70), usageLine.slice(70), 'data: [DONE]\n\n'];
      const next = () => {
        const p = pieces.shift();
        if (p === undefined) return res.end();
        res.write(p);
        setImmediate(next);
      };
      setImmediate(next);
    });
    await new Promise<void>((resolve) => decoder.listen(0, '127.0.0.1', resolve));
    const sidecar = await startSidecar(
      sidecarConfig({
        host: '127.0.0.1',
        port: 0,
        secureProxy: false,
        modelServerHost: '127.0.0.1',
        modelServerPort: (decoder.address() as AddressInfo).port,
      }),
    );
    try {
      const r = await postJson(
        `${sidecar.url}/v1/chat/completions`,
        { model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true },
        { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}` },
      );
      const chunks = sseJson(r.text);
      expect(chunks).toHaveLength(2);
      expect(chunks[1].usage.prompt_tokens_details.cached_tokens).toBe(0);
      expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
    } finally {
      await sidecar.close();
      await prefill.close();
      decoder.closeAllConnections();
      await new Promise((resolve) => decoder.close(resolve));
    }
  });
});

describe('byte-level fast paths agree with full parsing', () => {
  it('the cached_tokens splice gives the same JSON as parse + rewrite, and falls back when ambiguous', async () => {
    const { rewriteUsage } = await import('../../src/sidecar/cached-tokens-rewriter.js');
    const cases = [
      {
        id: 'a',
        choices: [{ text: 'quote \\"cached_tokens\\": 5 in text' }],
        usage: { prompt_tokens: 9, prompt_tokens_details: { cached_tokens: 8 } },
      },
      {
        usage: {
          prompt_tokens: 9,
          prompt_tokens_details: { cached_tokens: 0 },
          completion_tokens_details: { cached_tokens: 3 },
        },
      },
      { usage: { prompt_tokens: 9 } },
      { usage: { prompt_tokens: 9, prompt_tokens_details: null } },
    ];
    for (const c of cases) {
      const viaBytes = JSON.parse(rewriteJsonBody(Buffer.from(JSON.stringify(c)), 42).toString());
      const expected = structuredClone(c);
      rewriteUsage(expected, 42);
      expect(viaBytes).toEqual(expected);
    }
  });

  it("the decode body keeps the client's bytes and appends kv_transfer_params", async () => {
    const { nixlDecodeBytes } = await import('../../src/sidecar/request-bodies.js');
    const raw = Buffer.from('{ "model": "m",\n  "prompt": "x  y" }\n');
    const out = nixlDecodeBytes(raw, JSON.parse(raw.toString()), { a: 1 }).toString();
    expect(out).toBe('{ "model": "m",\n  "prompt": "x  y" ,"kv_transfer_params":{"a":1}}');
    expect(JSON.parse(out)).toEqual({ model: 'm', prompt: 'x  y', kv_transfer_params: { a: 1 } });
    expect(nixlDecodeBytes(Buffer.from('{}'), {}, null).toString()).toBe('{"kv_transfer_params":null}');
    // A client-sent kv_transfer_params is replaced, not duplicated.
    const withKv = Buffer.from('{"kv_transfer_params":{"x":1},"model":"m"}');
    expect(JSON.parse(nixlDecodeBytes(withKv, JSON.parse(withKv.toString()), { b: 2 }).toString())).toEqual({
      kv_transfer_params: { b: 2 },
      model: 'm',
    });
  });
});
