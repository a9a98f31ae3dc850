/**
 * The ext_proc server driven as Envoy drives it: a gRPC client built from the same Envoy protos, over loopback,
 * comparing the exact ProcessingResponses (the cases of llm-d's hermetic ext_proc tests, plus pd-router's security
 * and bounds).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, headers, responseBody, responseHeaders, setHeadersOf, subsetHint } from './ext-proc-client.js';
import { eppConfig } from '../../src/epp/index.js';
import { PD_EPP_CONFIG, decoded, spec, startTestEpp, type TestEpp } from './fixtures.js';
import { DESTINATION_ENDPOINT, PREFILLER_HOST_PORT, ROUTING_HEADERS } from '../../src/common/pd-contract.js';

/** The routing headers the EPP removes when it sets only the destination (decode-only), or also the prefiller (P/D). */
const REMOVED_DECODE_ONLY = ROUTING_HEADERS.filter((host) => host !== DESTINATION_ENDPOINT);
const REMOVED_PD = REMOVED_DECODE_ONLY.filter((host) => host !== PREFILLER_HOST_PORT);

// Closed loopback ports: scraping these fails fast (counted), no traffic leaves the host.
const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);
const LONG_PROMPT = 'Summarize the following text. '.repeat(10); // 300 bytes = 75 tokens > nonCachedTokens 16
const completion = (prompt: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'food-review', prompt, ...extra });

const OVERWRITE = 'OVERWRITE_IF_EXISTS_OR_ADD';
const hv = (key: string, value: string) => ({
  header: { key, value: '', raw_value: value },
  append: null,
  append_action: OVERWRITE,
  keep_empty_value: false,
});

/** The exact headers response llm-d's EPP sends, with pd-router's explicit append action and routing-header removals. */
function expectedHeadersResponse(destination: string, set: Array<[string, string]>, remove: string[]) {
  return {
    request_headers: {
      response: {
        status: 'CONTINUE',
        header_mutation: { set_headers: set.map(([k, value]) => hv(k, value)), remove_headers: remove },
        body_mutation: null,
        trailers: null,
        clear_route_cache: true,
      },
    },
    dynamic_metadata: {
      fields: {
        'envoy.lb': {
          structValue: {
            fields: { 'x-gateway-destination-endpoint': { stringValue: destination, kind: 'stringValue' } },
          },
          kind: 'structValue',
        },
      },
    },
    mode_override: null,
    override_message_timeout: null,
    request_drain: false,
    response: 'request_headers',
  };
}

function expectedBodyResponse(bodyText: string, endOfStream: boolean) {
  return {
    request_body: {
      response: {
        status: 'CONTINUE',
        header_mutation: null,
        body_mutation: {
          streamed_response: {
            body: bodyText,
            end_of_stream: endOfStream,
            end_of_stream_without_message: false,
            grpc_message_compressed: false,
          },
          mutation: 'streamed_response',
        },
        trailers: null,
        clear_route_cache: false,
      },
    },
    dynamic_metadata: null,
    mode_override: null,
    override_message_timeout: null,
    request_drain: false,
    response: 'request_body',
  };
}

let t: TestEpp;
beforeAll(async () => {
  t = await startTestEpp(PD_EPP_CONFIG, [P, D]);
});
afterAll(async () => {
  await t.close();
});

describe('request path', () => {
  it('P/D decision: exactly one headers response (destination, Content-Length, echoed headers, x-prefiller-host-port) then the body', async () => {
    const call = t.client.open();
    const text = completion(LONG_PROMPT);
    call.send(
      headers({ ':path': '/v1/completions', ':method': 'POST', hi: 'mom', 'x-request-id': 'test-request-id' }),
      body(text, true),
    );
    const got = await call.waitFor(2);
    expect(decoded(got)).toEqual([
      expectedHeadersResponse(
        '127.0.0.3:9',
        [
          ['x-gateway-destination-endpoint', '127.0.0.3:9'],
          ['Content-Length', String(text.length)],
          ['hi', 'mom'],
          ['x-request-id', 'test-request-id'],
          ['x-prefiller-host-port', '127.0.0.2:9'],
        ],
        REMOVED_PD,
      ),
      expectedBodyResponse(text, true),
    ]);
    call.end();
    expect(await call.ended).toEqual({ code: 0, details: 'OK' });
  });

  it('decode-only decision: no x-prefiller-host-port, and the header is removed from the request', async () => {
    const call = t.client.open();
    const text = completion('hi');
    call.send(headers({ ':path': '/v1/completions', hi: 'mom', 'x-request-id': 'r2' }), body(text, true));
    expect(decoded(await call.waitFor(2))).toEqual([
      expectedHeadersResponse(
        '127.0.0.3:9',
        [
          ['x-gateway-destination-endpoint', '127.0.0.3:9'],
          ['Content-Length', String(text.length)],
          ['hi', 'mom'],
          ['x-request-id', 'r2'],
        ],
        REMOVED_DECODE_ONLY,
      ),
      expectedBodyResponse(text, true),
    ]);
    call.end();
  });

  it("routing headers a client sent are never echoed: removed, or overwritten by the EPP's own value", async () => {
    const smuggled = {
      ':path': '/v1/completions',
      'X-Prefiller-Host-Port': '169.254.169.254:80',
      'x-gateway-destination-endpoint': '6.6.6.6:80',
      'x-encoder-hosts-ports': '6.6.6.6:1',
      'x-data-parallel-host-port': '6.6.6.6:2',
    };
    for (const [prompt, prefill] of [
      ['hi', undefined],
      [`A fresh prompt nobody has cached yet. ${LONG_PROMPT}`, '127.0.0.2:9'],
    ] as const) {
      const call = t.client.open();
      call.send(headers(smuggled), body(completion(prompt), true));
      const [h] = await call.waitFor(2);
      const mutation = h.request_headers!.response.header_mutation!;
      const set = setHeadersOf(mutation);
      expect(set.filter(([k]) => k === 'x-gateway-destination-endpoint')).toEqual([
        ['x-gateway-destination-endpoint', '127.0.0.3:9', OVERWRITE],
      ]);
      expect(set.filter(([k]) => k === 'x-prefiller-host-port')).toEqual(
        prefill ? [['x-prefiller-host-port', prefill, OVERWRITE]] : [],
      );
      expect(set.some(([, value]) => value.startsWith('6.6.6.6') || value.startsWith('169.254'))).toBe(false);
      expect(mutation.remove_headers).toEqual(prefill ? REMOVED_PD : REMOVED_DECODE_ONLY);
      expect(set.every(([, , action]) => action === OVERWRITE)).toBe(true);
      call.end();
    }
  });

  it('a body split across chunks is buffered until end of stream', async () => {
    const call = t.client.open();
    const text = completion('hi');
    call.send(headers({ ':path': '/v1/completions' }), body(text.slice(0, 5), false), body(text.slice(5, 20), false));
    // Nothing may be answered before the end of stream; the first reply must follow the last chunk.
    call.send(body(text.slice(20), true));
    const got = await call.waitFor(2);
    expect(got[0].request_headers).toBeTruthy();
    expect(decoded(got[1])).toEqual(expectedBodyResponse(text, true));
    expect(
      setHeadersOf(got[0].request_headers!.response.header_mutation).find(([k]) => k === 'Content-Length')![1],
    ).toBe(String(text.length));
    call.end();
  });

  it('a body over 62000 bytes comes back in 62000-byte chunks, end of stream on the last', async () => {
    const call = t.client.open();
    const text = completion('x'.repeat(150_000));
    call.send(headers({ ':path': '/v1/completions' }), body(text, true));
    const got = await call.waitFor(4);
    const chunks = got.slice(1).map((result) => (result.request_body!.response.body_mutation as any).streamed_response);
    expect(chunks.map((config) => config.body.length)).toEqual([62000, 62000, text.length - 124000]);
    expect(chunks.map((config) => config.end_of_stream)).toEqual([false, false, true]);
    expect(Buffer.concat(chunks.map((config) => Buffer.from(config.body))).toString()).toBe(text);
    call.end();
  });

  it("invalid JSON → 400 with Go's exact message", async () => {
    const call = t.client.open();
    call.send(headers({ ':path': '/v1/completions' }), body('no json', true));
    const [r] = await call.waitFor(1);
    expect(decoded(r.immediate_response)).toEqual({
      status: { code: 'BadRequest' },
      headers: null,
      body: "inference error: BadRequest - error unmarshaling request bodyMap: invalid character 'o' in literal null (expecting 'u')",
      grpc_status: null,
      details: '',
    });
    expect(await call.ended).toEqual({ code: 0, details: 'OK' });
  });

  it('missing model → 400 model not found in request body; API-specific checks as upstream', async () => {
    const cases: Array<[string, string, string]> = [
      [
        '/v1/completions',
        JSON.stringify({ prompt: 'hi' }),
        'inference error: BadRequest - model not found in request body',
      ],
      [
        '/v1/chat/completions',
        JSON.stringify({ model: 'm', messages: [] }),
        'inference error: BadRequest - invalid chat completions request: must have valid messages field',
      ],
      [
        '/v1/completions',
        '[1,2]',
        'inference error: BadRequest - error unmarshaling request bodyMap: json: cannot unmarshal array into Go value of type map[string]interface {}',
      ],
      [
        '/v1/completions',
        '{"model":"m", "prompt":"x"',
        'inference error: BadRequest - error unmarshaling request bodyMap: unexpected end of JSON input',
      ],
    ];
    for (const [path, text, message] of cases) {
      const call = t.client.open();
      call.send(headers({ ':path': path }), body(text, true));
      const [r] = await call.waitFor(1);
      expect(r.immediate_response!.status.code).toBe('BadRequest');
      expect(Buffer.from(r.immediate_response!.body!).toString()).toBe(message);
    }
  });

  it('deep JSON (anywhere in the body, any API, with or without a model rewrite) → 400 exceeded max depth, never a stream error', async () => {
    const cases: Array<[string, (open: string, close: string) => string, Record<string, string>]> = [
      ['/v1/completions', (text, config) => `{"model":"m","prompt":"x","a":${text}${config}}`, {}],
      [
        '/v1/completions',
        (text, config) => `{"model":"m","prompt":"x","a":${text}${config}}`,
        { 'x-llm-d-model-name-rewrite': 'other' },
      ],
      ['/v1/completions', (text, config) => `{"model":"m","prompt":${text}"x"${config}}`, {}],
      [
        '/v1/chat/completions',
        (text, config) => `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":${text}${config}}`,
        {},
      ],
      ['/v1/chat/completions', (text) => `{"model":"m","messages":[{"role":"user","content":${text}`, {}],
      [
        '/v1/messages',
        (text, config) => `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":${text}${config}}]}`,
        {},
      ],
    ];
    for (const depth of [1_001, 4_100, 10_001, 200_000]) {
      for (const [path, make, extra] of cases) {
        const call = t.client.open();
        call.send(headers({ ':path': path, ...extra }), body(make('['.repeat(depth), ']'.repeat(depth)), true));
        const [r] = await call.waitFor(1);
        expect(decoded(r.immediate_response), `${path} depth ${depth}`).toEqual({
          status: { code: 'BadRequest' },
          headers: null,
          body: "inference error: BadRequest - error unmarshaling request bodyMap: invalid character '[' exceeded max depth",
          grpc_status: null,
          details: '',
        });
        expect(await call.ended).toEqual({ code: 0, details: 'OK' });
      }
    }
    // At the bound (objects and arrays 1000 deep in all) the request is routed.
    const call = t.client.open();
    call.send(
      headers({ ':path': '/v1/completions', 'x-llm-d-model-name-rewrite': 'other' }),
      body(`{"model":"m","prompt":"x","a":${'['.repeat(999)}${']'.repeat(999)}}`, true),
    );
    expect((await call.waitFor(2))[0].request_headers).toBeTruthy();
    call.end();
  }, 60_000);

  it('a header-only request gets a random endpoint at once, without scheduling', async () => {
    const call = t.client.open();
    call.send(headers({ ':path': '/v1/models', ':method': 'GET', 'x-request-id': 'get-1' }, true));
    const [r] = await call.waitFor(1);
    const set = setHeadersOf(r.request_headers!.response.header_mutation);
    expect(['127.0.0.2:9', '127.0.0.3:9']).toContain(set[0][1]);
    expect(set.map(([k]) => k)).toEqual(['x-gateway-destination-endpoint', 'x-request-id']);
    expect(r.request_headers!.response.clear_route_cache).toBe(true);
    call.end();
  });

  it('request trailers end the body: headers, body (no end of stream), then the trailers answer', async () => {
    const call = t.client.open();
    const text = completion('hi');
    call.send(headers({ ':path': '/v1/completions' }), body(text, false), {
      request_trailers: { trailers: { headers: [] } },
    });
    const got = await call.waitFor(3);
    expect((got[1].request_body!.response.body_mutation as any).streamed_response.end_of_stream).toBe(false);
    expect(got[2].request_trailers).toBeTruthy();
    call.end();
  });

  it('model rewrite: the forwarded body names the target model (Content-Length follows); responses are rewritten back', async () => {
    const call = t.client.open();
    call.send(
      headers({ ':path': '/v1/completions', 'x-llm-d-model-name-rewrite': 'target-model' }),
      body(completion('hi'), true),
    );
    const got = await call.waitFor(2);
    const forwarded = (got[1].request_body!.response.body_mutation as any).streamed_response.body.toString();
    expect(JSON.parse(forwarded).model).toBe('target-model');
    const set = setHeadersOf(got[0].request_headers!.response.header_mutation);
    expect(set.find(([k]) => k === 'Content-Length')![1]).toBe(String(Buffer.byteLength(forwarded)));
    expect(set.some(([k]) => k === 'x-llm-d-model-name-rewrite')).toBe(false);
    call.send(
      responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
      responseBody('{"model": "target-model","choices":[]}', true),
    );
    const resp = await call.waitFor(4);
    expect((resp[3].response_body!.response.body_mutation as any).streamed_response.body.toString()).toBe(
      '{"model": "food-review","choices":[]}',
    );
    call.end();
  });
});

describe('every routing header a client sends (ROUTING_HEADERS), on every decision', () => {
  const MARK = '6.6.6.6';
  /** Every routing header, some in upper case, x-prefiller-url twice: each with a value that names the smuggler. */
  const smuggling = (pseudo: Record<string, string>, endOfStream: boolean) => {
    const list = Object.entries(pseudo).map(([key, value]) => ({ key, raw_value: Buffer.from(value) }));
    ROUTING_HEADERS.forEach((host, i) =>
      list.push({ key: i % 2 ? host.toUpperCase() : host, raw_value: Buffer.from(`${MARK}:${i + 1}`) }),
    );
    list.push({ key: 'x-prefiller-url', raw_value: Buffer.from(`http://${MARK}:99`) });
    return { request_headers: { headers: { headers: list }, end_of_stream: endOfStream } };
  };

  /** Each routing header is removed, or set (overwritten) to the EPP's own value in `own`; no set header carries the client's. */
  function expectOnlyEppRouting(
    mutation: { set_headers?: any[]; remove_headers?: string[] } | null | undefined,
    own: Record<string, string>,
  ) {
    const set = setHeadersOf(mutation);
    for (const h of ROUTING_HEADERS) {
      const sets = set.filter(([k]) => k.toLowerCase() === h);
      if (own[h] !== undefined) {
        expect(sets, h).toEqual([[h, own[h], OVERWRITE]]);
      } else {
        expect(sets, h).toEqual([]);
        expect(mutation?.remove_headers ?? [], h).toContain(h);
      }
    }
    expect(set.filter(([, value]) => value.includes(MARK))).toEqual([]);
  }

  it("decode-only: every one removed except the destination, which is the EPP's", async () => {
    const call = t.client.open();
    call.send(smuggling({ ':path': '/v1/completions', ':method': 'POST' }, false), body(completion('hi'), true));
    const [h] = await call.waitFor(2);
    expectOnlyEppRouting(h.request_headers!.response.header_mutation, { [DESTINATION_ENDPOINT]: '127.0.0.3:9' });
    expect(JSON.stringify(decoded(h.dynamic_metadata))).not.toContain(MARK);
    call.end();
  });

  it("P/D: the destination and x-prefiller-host-port are the EPP's, x-prefiller-url and the rest removed", async () => {
    const call = t.client.open();
    call.send(
      smuggling({ ':path': '/v1/completions', ':method': 'POST' }, false),
      body(completion(`Nobody asked this before. ${LONG_PROMPT}`), true),
    );
    const [h] = await call.waitFor(2);
    expectOnlyEppRouting(h.request_headers!.response.header_mutation, {
      [DESTINATION_ENDPOINT]: '127.0.0.3:9',
      [PREFILLER_HOST_PORT]: '127.0.0.2:9',
    });
    call.end();
  });

  it('a header-only request (no body): routed at once, every one removed except the destination', async () => {
    const call = t.client.open();
    call.send(smuggling({ ':path': '/v1/models', ':method': 'GET' }, true));
    const [h] = await call.waitFor(1);
    const mutation = h.request_headers!.response.header_mutation;
    const destination = setHeadersOf(mutation).find(([k]) => k === DESTINATION_ENDPOINT)![1];
    expect(['127.0.0.2:9', '127.0.0.3:9']).toContain(destination);
    expectOnlyEppRouting(mutation, { [DESTINATION_ENDPOINT]: destination });
    call.end();
  });

  it('a rejected request: the immediate response carries none of them, and the request goes nowhere', async () => {
    const call = t.client.open();
    call.send(smuggling({ ':path': '/v1/completions', ':method': 'POST' }, false), body('{"model": ', true));
    const [r] = await call.waitFor(1);
    expect(r.immediate_response!.status.code).toBe('BadRequest');
    expect(
      setHeadersOf(r.immediate_response!.headers).filter(([k]) => ROUTING_HEADERS.includes(k.toLowerCase())),
    ).toEqual([]);
    expect(JSON.stringify(decoded(r))).not.toContain(MARK);
    expect(await call.ended).toEqual({ code: 0, details: 'OK' });
  });
});

describe('subset hints (envoy.lb.subset_hint)', () => {
  let s: TestEpp;
  beforeAll(async () => {
    const cfg = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: queue-scorer}]
dataLayer: {injectDefaults: false}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}]}]
`;
    s = await startTestEpp(cfg, [
      spec('a', '127.0.0.11', undefined, {}, 8000),
      spec('b', '127.0.0.12', undefined, {}, 8000),
      spec('c', '127.0.0.13', undefined, {}, 8000),
    ]);
    for (const [id, q] of [
      ['default/a', 0],
      ['default/b', 5],
      ['default/c', 9],
    ] as const)
      Object.assign(s.epp.store.get(id)!.metrics, { waitingQueueSize: q });
  });
  afterAll(() => s.close());

  const route = async (subset: string[] | undefined) => {
    const call = s.client.open();
    call.send(
      { ...headers({ ':path': '/v1/completions' }), ...(subset ? { metadata_context: subsetHint(subset) } : {}) },
      body(completion('hi'), true),
    );
    const [r] = await call.waitFor(1);
    call.end();
    return r;
  };

  it('picks the best endpoint of the subset (ports ignored), and of the pool without a hint', async () => {
    expect((await route(undefined)).dynamic_metadata).toBeTruthy();
    expect(setHeadersOf((await route(undefined)).request_headers!.response.header_mutation)[0][1]).toBe(
      '127.0.0.11:8000',
    );
    expect(
      setHeadersOf((await route(['127.0.0.12:1', '127.0.0.13:2'])).request_headers!.response.header_mutation)[0][1],
    ).toBe('127.0.0.12:8000');
    expect(
      setHeadersOf((await route(['127.0.0.13:8000', '10.9.9.9:8000'])).request_headers!.response.header_mutation)[0][1],
    ).toBe('127.0.0.13:8000');
  });

  it('a subset that matches nothing, or an empty subset → 503 with x-llm-d-request-dropped-reason: rejected-no-endpoints', async () => {
    for (const subset of [['10.9.9.9:8000'], []]) {
      const r = await route(subset);
      expect(decoded(r.immediate_response)).toEqual({
        status: { code: 'ServiceUnavailable' },
        headers: { set_headers: [hv('x-llm-d-request-dropped-reason', 'rejected-no-endpoints')], remove_headers: [] },
        body: 'inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request',
        grpc_status: null,
        details: '',
      });
    }
  });
});

describe("tracing on (the default, as llm-d's EPP)", () => {
  let e: TestEpp;
  beforeAll(async () => {
    // No collector: the spans are dropped and counted; the header mutations carry the trace context all the same.
    e = await startTestEpp(PD_EPP_CONFIG, [P, D], { tracing: eppConfig({}).tracing });
  });
  afterAll(() => e.close());

  it("every routed request gets a traceparent mutation: the request's trace continued, or a new one", async () => {
    expect(eppConfig({}).tracing).toBe(true);
    const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    let call = e.client.open();
    call.send(headers({ ':path': '/v1/models', ':method': 'GET', traceparent: incoming }, true));
    let [r] = await call.waitFor(1);
    const continued = setHeadersOf(r.request_headers!.response.header_mutation).find(
      ([key]) => key === 'traceparent',
    )?.[1];
    // Same trace id, the EPP's own span id, sampled as its parent was.
    expect(continued).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(continued).not.toBe(incoming);
    call.end();
    call = e.client.open();
    call.send(headers({ ':path': '/v1/models', ':method': 'GET' }, true));
    [r] = await call.waitFor(1);
    expect(
      setHeadersOf(r.request_headers!.response.header_mutation).find(([key]) => key === 'traceparent')?.[1],
    ).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    call.end();
  });
});

describe('no endpoints', () => {
  let e: TestEpp;
  beforeAll(async () => {
    e = await startTestEpp(PD_EPP_CONFIG, []);
  });
  afterAll(() => e.close());

  it('header-only request → 500 no pods available in datastore; body request → 503 rejected-no-endpoints', async () => {
    let call = e.client.open();
    call.send(headers({ ':path': '/v1/models' }, true));
    let [r] = await call.waitFor(1);
    expect(r.immediate_response!.status.code).toBe('InternalServerError');
    expect(Buffer.from(r.immediate_response!.body!).toString()).toBe(
      'inference error: Internal - no pods available in datastore',
    );
    call = e.client.open();
    call.send(headers({ ':path': '/v1/completions' }), body(completion('hi'), true));
    [r] = await call.waitFor(1);
    expect(r.immediate_response!.status.code).toBe('ServiceUnavailable');
    expect(setHeadersOf(r.immediate_response!.headers)).toEqual([
      ['x-llm-d-request-dropped-reason', 'rejected-no-endpoints', OVERWRITE],
    ]);
  });
});
