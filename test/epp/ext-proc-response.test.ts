/**
 * The response half of ext_proc streams (SSE and buffered bodies, usage metrics, trailers) and the stream bounds, driven
 * by a gRPC client built from the same Envoy protos over loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, headers, responseBody, responseHeaders, setHeadersOf } from './ext-proc-client.js';
import { PD_EPP_CONFIG, decoded, spec, startTestEpp, type TestEpp } from './fixtures.js';
import { metricValue, metricsText } from '../helpers.js';

const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);
const OVERWRITE = 'OVERWRITE_IF_EXISTS_OR_ADD';
const completion = (prompt: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'food-review', prompt, ...extra });

let t: TestEpp;
beforeAll(async () => {
  t = await startTestEpp(PD_EPP_CONFIG, [P, D]);
});
afterAll(async () => {
  await t.close();
});

describe('response path', () => {
  it('streamed (SSE): headers echoed with x-went-into-resp-headers, chunks echoed at once with their end of stream, usage counted', async () => {
    const call = t.client.open();
    call.send(headers({ ':path': '/v1/completions' }), body(completion('hi', { stream: true }), true));
    await call.waitFor(2);
    call.send(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream', 'x-backend': 'b' }));
    const [, , h] = await call.waitFor(3);
    expect(setHeadersOf(h.response_headers!.response.header_mutation)).toEqual([
      ['x-went-into-resp-headers', 'true', OVERWRITE],
      ['content-type', 'text/event-stream', OVERWRITE],
      ['x-backend', 'b', OVERWRITE],
    ]);
    const frames = [
      'data: {"choices":[{"text":"Hello"}],"usage":null}\n\n',
      'data: {"choices":[{"text":" world"}],"usage":null}\n\ndata: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":10,"total_tokens":17}}\n\n',
      'data: [DONE]\n\n',
    ];
    call.send(responseBody(frames[0], false));
    const r1 = await call.waitFor(4);
    expect((r1[3].response_body!.response.body_mutation as any).streamed_response).toMatchObject({
      end_of_stream: false,
    });
    expect(Buffer.from((r1[3].response_body!.response.body_mutation as any).streamed_response.body).toString()).toBe(
      frames[0],
    );
    call.send(responseBody(frames[1], false), responseBody(frames[2], true));
    const all = await call.waitFor(6);
    expect((all[5].response_body!.response.body_mutation as any).streamed_response.end_of_stream).toBe(true);
    call.end();
    await call.ended;
    const text = await metricsText(`http://127.0.0.1:${t.epp.metricsPort}`);
    expect(metricValue(text, 'llm_d_epp_request_input_tokens_sum', { model_name: 'food-review' })).toBe(7);
    expect(metricValue(text, 'llm_d_epp_request_output_tokens_sum', { model_name: 'food-review' })).toBe(10);
  });

  it('buffered: a multi-chunk JSON body is held to the end and sent as one chunk; an empty EOS chunk ends it', async () => {
    const call = t.client.open();
    call.send(headers({ ':path': '/v1/completions' }), body(completion('hi'), true));
    await call.waitFor(2);
    call.send(responseHeaders({ ':status': '200', 'content-type': 'application/json' }));
    await call.waitFor(3);
    const json = '{"choices":[{"text":"ok"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}';
    call.send(responseBody(json.slice(0, 10), false), responseBody(json.slice(10), false), responseBody('', true));
    const got = await call.waitFor(4);
    expect(decoded(got[3])).toMatchObject({
      response_body: { response: { body_mutation: { streamed_response: { body: json, end_of_stream: true } } } },
    });
    call.end();
    await call.ended;
    expect(call.responses).toHaveLength(4);
  });

  it('buffered invalid JSON passes through unchanged; response trailers are answered', async () => {
    const call = t.client.open();
    call.send(headers({ ':path': '/v1/completions' }), body(completion('hi'), true));
    await call.waitFor(2);
    call.send(responseHeaders({ ':status': '500' }), responseBody('not json', false), {
      response_trailers: { trailers: { headers: [] } },
    });
    const got = await call.waitFor(5);
    expect(Buffer.from((got[3].response_body!.response.body_mutation as any).streamed_response.body).toString()).toBe(
      'not json',
    );
    expect(got[4].response_trailers).toBeTruthy();
    call.end();
  });
});

describe('bounds', () => {
  it('a request body over --max-request-body-size → 413 PayloadTooLarge, and the stream ends', async () => {
    const small = await startTestEpp(PD_EPP_CONFIG, [P, D], { maxRequestBodySize: 2048 });
    try {
      const call = small.client.open();
      call.send(headers({ ':path': '/v1/completions' }), body('x'.repeat(1500), false), body('x'.repeat(1500), false));
      const [r] = await call.waitFor(1);
      expect(r.immediate_response!.status.code).toBe('PayloadTooLarge');
      expect(Buffer.from(r.immediate_response!.body!).toString()).toBe(
        'inference error: PayloadTooLarge - request body exceeds the limit of 2048 bytes',
      );
      expect((await call.ended).code).toBe(0);
    } finally {
      await small.close();
    }
  });

  it('a stream idle longer than --stream-idle-timeout is ended with DEADLINE_EXCEEDED', async () => {
    const idle = await startTestEpp(PD_EPP_CONFIG, [P, D], { streamIdleTimeout: 200 });
    try {
      const call = idle.client.open();
      call.send(headers({ ':path': '/v1/completions' }));
      expect((await call.ended).code).toBe(4);
    } finally {
      await idle.close();
    }
  });
});
