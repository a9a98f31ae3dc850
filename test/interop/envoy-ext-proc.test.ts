/**
 * Envoy wire compatibility of the EPP: test/interop/extproc-client (Go, built from Envoy's generated API
 * github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3, pinned in its go.mod) drives the EPP the way
 * Envoy's ext_proc filter does with FULL_DUPLEX_STREAMED bodies: request headers, body chunks, end_of_stream, then the
 * response headers and body. Every ProcessingResponse is decoded by Go's generated code, checked for fields Go does not
 * know (unknown fields would mean our protos drifted from Envoy's) and against Envoy's protoc-gen-validate rules.
 */
import { runProcess } from '../helpers.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PD_EPP_CONFIG, spec, startTestEpp, type TestEpp } from '../epp/fixtures.js';
import { interopEnv, skipInterop } from './upstream.js';

const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);
const BODY_LIMIT = 62_000; // llm-d's BodyByteLimit for streamed body chunks

interface Header {
  key: string;
  value: string;
  usesRawValue: boolean;
  appendAction: string;
}
interface Received {
  kind: string;
  status?: string;
  clearRouteCache?: boolean;
  setHeaders?: Header[];
  removeHeaders?: string[];
  bodyMutation?: string;
  streamedBody?: string;
  streamedEndOfStream?: boolean;
  dynamicMetadata?: unknown;
  httpStatus?: number;
  body?: string;
}
interface Report {
  name: string;
  received: Received[];
  grpcCode: string;
  grpcMessage: string;
  unknownFields: string[];
  validationErrors: string[];
  error?: string;
}

interface Exchange {
  name: string;
  requestHeaders: Array<[string, string]>;
  requestBodyChunks: string[];
  responseHeaders?: Array<[string, string]>;
  responseBodyChunks?: string[];
  awaitEachResponseChunk?: boolean;
}

/** Runs the Go client over the exchanges (bounded); returns its report per exchange. */
async function runGoClient(
  address: string,
  exchanges: Exchange[],
): Promise<{ reports: Report[]; goApi: string; stderr: string; code: number | null }> {
  const r = await runProcess(interopEnv().extProcClient!, [], {
    input: JSON.stringify({ address, timeoutMs: 10_000, exchanges }),
    timeoutMs: 30_000,
  });
  try {
    const out = JSON.parse(r.stdout) as { exchanges: Report[]; goApi: string };
    return { reports: out.exchanges, goApi: out.goApi, stderr: r.stderr, code: r.code };
  } catch {
    throw new Error(
      `extproc-client exited ${r.code} without a JSON report; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`,
    );
  }
}

const chunk = (text: string, count: number) =>
  Array.from({ length: Math.ceil(text.length / count) }, (_, i) => text.slice(i * count, (i + 1) * count));
const header = (received: Received, key: string) =>
  received.setHeaders?.find((header) => header.key.toLowerCase() === key.toLowerCase());
const requestHeaders = (path: string, extra: Array<[string, string]> = []): Array<[string, string]> => [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'gateway.example'],
  [':path', path],
  ['content-type', 'application/json'],
  ...extra,
];

// ~150 KB request and ~130 KB response: both must come back re-chunked at <= 62000 bytes.
const LONG_PROMPT = Array.from({ length: 15_000 }, (_, i) => `tok${i}`).join(' ');
const PD_BODY = JSON.stringify({ model: 'food-review', prompt: LONG_PROMPT, max_tokens: 8 });
const RESPONSE_BODY = JSON.stringify({
  id: 'cmpl-envoy-1-0',
  object: 'text_completion',
  model: 'food-review',
  choices: [{ index: 0, finish_reason: 'stop', text: 'x'.repeat(130_000) }],
  usage: { prompt_tokens: 15_000, completion_tokens: 8, total_tokens: 15_008 },
});
const SSE_CHUNKS = [
  'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","model":"food-review","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n',
  'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","model":"food-review","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n',
  'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","model":"food-review","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n',
  'data: [DONE]\n\n',
];

const EXCHANGES: Exchange[] = [
  {
    name: 'pd',
    requestHeaders: requestHeaders('/v1/completions', [
      ['x-request-id', 'envoy-1'],
      ['hi', 'mom'],
      ['x-prefiller-host-port', '10.66.66.66:1'], // smuggled by the client: must not survive
      ['x-gateway-destination-endpoint', '10.66.66.66:2'], // likewise
    ]),
    requestBodyChunks: chunk(PD_BODY, 50_000),
    responseHeaders: [
      [':status', '200'],
      ['content-type', 'application/json'],
    ],
    responseBodyChunks: chunk(RESPONSE_BODY, 70_000),
  },
  {
    name: 'decode-only',
    requestHeaders: requestHeaders('/v1/chat/completions', [['x-request-id', 'envoy-2']]),
    requestBodyChunks: [JSON.stringify({ model: 'food-review', messages: [{ role: 'user', content: 'hi' }] })],
    responseHeaders: [
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ],
    responseBodyChunks: SSE_CHUNKS,
    awaitEachResponseChunk: true,
  },
  {
    name: 'invalid-json',
    requestHeaders: requestHeaders('/v1/completions', [['x-request-id', 'envoy-3']]),
    requestBodyChunks: ['{"model": ', 'nope}'],
  },
  {
    name: 'missing-model',
    requestHeaders: requestHeaders('/v1/completions', [['x-request-id', 'envoy-4']]),
    requestBodyChunks: ['{"prompt":"x"}'],
  },
  {
    name: 'header-only',
    requestHeaders: [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':authority', 'gateway.example'],
      [':path', '/v1/models'],
      ['x-request-id', 'envoy-5'],
    ],
    requestBodyChunks: [],
  },
];

let t: TestEpp;
let reports: Map<string, Report>;
let goApi: string;

beforeAll(async () => {
  if (skipInterop()) return;
  t = await startTestEpp(PD_EPP_CONFIG, [P, D]);
  const out = await runGoClient(`127.0.0.1:${t.epp.grpcPort}`, EXCHANGES);
  expect(out.code, out.stderr).toBe(0);
  goApi = out.goApi;
  reports = new Map(out.reports.map((report) => [report.name, report]));
}, 60_000);

afterAll(() => t?.close());

describe.skipIf(skipInterop())("the EPP driven by Envoy's generated ext_proc API (Go, FULL_DUPLEX_STREAMED)", () => {
  it(`every response decodes with ${interopEnv().goControlPlane ?? 'go-control-plane'}: no unknown fields, Envoy's validation rules hold, streams end OK`, () => {
    expect(goApi).toBe('github.com/envoyproxy/go-control-plane/envoy@v1.37.0');
    for (const r of reports.values()) {
      expect(r.error, r.name).toBeUndefined();
      expect(r.unknownFields, r.name).toEqual([]);
      expect(r.validationErrors, r.name).toEqual([]);
      expect(r.grpcCode, r.name).toBe('OK');
    }
  });

  it('P/D decision: one headers response (destination, Content-Length, x-prefiller-host-port, client headers; OVERWRITE) with envoy.lb metadata', () => {
    const r = reports.get('pd')!;
    const h = r.received[0];
    expect(h.kind).toBe('request_headers');
    expect(h).toMatchObject({ status: 'CONTINUE', clearRouteCache: true });
    expect(header(h, 'x-gateway-destination-endpoint')?.value).toBe('127.0.0.3:9');
    expect(header(h, 'Content-Length')?.value).toBe(String(Buffer.byteLength(PD_BODY)));
    expect(header(h, 'x-prefiller-host-port')?.value).toBe('127.0.0.2:9');
    expect(header(h, 'hi')?.value).toBe('mom');
    expect(header(h, 'x-request-id')?.value).toBe('envoy-1');
    expect(
      h.setHeaders!.filter((header) => header.key.toLowerCase() === 'x-gateway-destination-endpoint'),
    ).toHaveLength(1);
    expect(h.setHeaders!.filter((header) => header.key.toLowerCase() === 'x-prefiller-host-port')).toHaveLength(1);
    for (const x of h.setHeaders!) {
      expect(x.appendAction, x.key).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
      expect(x.usesRawValue, x.key).toBe(true);
    }
    // Routing headers this decision does not set are removed from the request.
    expect(h.removeHeaders).toEqual(expect.arrayContaining(['x-encoder-hosts-ports', 'x-data-parallel-host-port']));
    expect(h.dynamicMetadata).toEqual({ 'envoy.lb': { 'x-gateway-destination-endpoint': '127.0.0.3:9' } });
  });

  it('the request body comes back as streamed chunks of <= 62000 bytes, byte for byte, end_of_stream on the last', () => {
    const chunks = reports.get('pd')!.received.filter((received) => received.kind === 'request_body');
    expect(chunks.length).toBe(Math.ceil(Buffer.byteLength(PD_BODY) / BODY_LIMIT));
    for (const c of chunks) {
      expect(c.bodyMutation).toBe('streamed_response');
      expect(Buffer.byteLength(c.streamedBody!)).toBeLessThanOrEqual(BODY_LIMIT);
    }
    expect(chunks.map((received) => received.streamedBody).join('')).toBe(PD_BODY);
    expect(chunks.map((received) => received.streamedEndOfStream ?? false)).toEqual([
      ...chunks.slice(1).map(() => false),
      true,
    ]);
  });

  it('response path: headers response, then the buffered JSON body re-emitted in <= 62000-byte chunks', () => {
    const r = reports.get('pd')!;
    const rh = r.received.find((received) => received.kind === 'response_headers')!;
    expect(header(rh, 'x-went-into-resp-headers')?.value).toBe('true');
    const chunks = r.received.filter((received) => received.kind === 'response_body');
    expect(chunks.length).toBe(Math.ceil(Buffer.byteLength(RESPONSE_BODY) / BODY_LIMIT));
    for (const c of chunks) expect(Buffer.byteLength(c.streamedBody!)).toBeLessThanOrEqual(BODY_LIMIT);
    expect(chunks.map((received) => received.streamedBody).join('')).toBe(RESPONSE_BODY);
    expect(chunks.at(-1)!.streamedEndOfStream).toBe(true);
  });

  it('decode-only decision: no x-prefiller-host-port (removed); an SSE response is echoed chunk by chunk as it arrives', () => {
    const r = reports.get('decode-only')!;
    const h = r.received[0];
    expect(header(h, 'x-gateway-destination-endpoint')?.value).toBe('127.0.0.3:9');
    expect(header(h, 'x-prefiller-host-port')).toBeUndefined();
    expect(h.removeHeaders).toContain('x-prefiller-host-port');
    const echoed = r.received.filter((received) => received.kind === 'response_body');
    expect(echoed.map((received) => received.streamedBody)).toEqual(SSE_CHUNKS);
    expect(echoed.map((received) => received.streamedEndOfStream ?? false)).toEqual([false, false, false, true]);
  });

  it("invalid JSON (split over two chunks): an ImmediateResponse 400 with llm-d's message", () => {
    const r = reports.get('invalid-json')!;
    expect(r.received).toHaveLength(1);
    expect(r.received[0]).toMatchObject({
      kind: 'immediate_response',
      httpStatus: 400,
      body: "inference error: BadRequest - error unmarshaling request bodyMap: invalid character 'o' in literal null (expecting 'u')",
    });
  });

  it('missing model: an ImmediateResponse 400', () => {
    expect(reports.get('missing-model')!.received[0]).toMatchObject({
      kind: 'immediate_response',
      httpStatus: 400,
      body: 'inference error: BadRequest - model not found in request body',
    });
  });

  it('header-only request (end_of_stream on the headers): answered at once with an endpoint, no body phase', () => {
    const r = reports.get('header-only')!;
    expect(r.received).toHaveLength(1);
    expect(r.received[0].kind).toBe('request_headers');
    const dest = header(r.received[0], 'x-gateway-destination-endpoint')!.value;
    expect(['127.0.0.2:9', '127.0.0.3:9']).toContain(dest);
    expect(r.received[0].dynamicMetadata).toEqual({ 'envoy.lb': { 'x-gateway-destination-endpoint': dest } });
  });
});
