/**
 * The gateway applies ext_proc header mutations as Envoy's ext_proc filter does with its default HeaderMutationRules
 * (source/extensions/filters/http/ext_proc/mutation_utils.cc, filters/common/mutation_rules/mutation_rules.cc; the
 * cases follow Envoy's own mutation_utils_test.cc). Then, end to end: an EPP stand-in that echoes pseudo-headers (as
 * llm-d-router's EPP does) in front of a recording upstream.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  extProcServiceDefinition,
  headerValueText,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../src/common/envoy/ext-proc.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { applyMutation, InvalidHeaderMutation } from '../../src/gateway/header-mutation.js';

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });
const set = (key: string, value: string, append?: boolean) => ({
  header: hv(key, value),
  ...(append === undefined ? {} : { append: { value: append } }),
});

describe('ext_proc header mutations in the gateway', () => {
  it('a set header replaces the values unless append is true; append_action is ignored, as Envoy ignores it', () => {
    const h = new Map<string, string[]>([
      ['content-length', ['35']],
      ['content-type', ['application/json']],
      ['x-multi', ['a']],
    ]);
    const rejected = applyMutation(h, {
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
    expect(rejected).toBe(0);
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

  it('routing pseudo-headers, host and x-envoy-* are not changed; :path is; pseudo-headers and host are never removed', () => {
    const h = new Map<string, string[]>([
      [':scheme', ['https']],
      [':method', ['GET']],
      [':path', ['/foo']],
      [':authority', ['localhost:1000']],
      ['host', ['localhost:1000']],
      ['x-envoy-strange-thing', ['No']],
      ['x-remove-this', ['yes']],
    ]);
    const rejected = applyMutation(h, {
      remove_headers: ['x-remove-this', 'host', ':method', ':path', 'x-envoy-strange-thing'],
      set_headers: [
        set('host', 'invalid:123', false),
        set('Host', 'invalid:456', false),
        set(':authority', 'invalid:789', false),
        set(':method', 'PATCH', false),
        set(':scheme', 'http', false),
        set('X-Envoy-StrangeThing', 'Yes', false),
        set(':path', '/bar', false),
        // A second value for a pseudo-header is refused.
        set(':path', '/baz', true),
      ],
    });
    // 4 refused removals, 6 refused sets, 1 refused append.
    expect(rejected).toBe(11);
    expect(Object.fromEntries(h)).toEqual({
      ':scheme': ['https'],
      ':method': ['GET'],
      ':path': ['/bar'],
      ':authority': ['localhost:1000'],
      host: ['localhost:1000'],
      'x-envoy-strange-thing': ['No'],
    });
  });

  it(':status is applied only when it is a status code of at least 200', () => {
    const h = new Map<string, string[]>([[':status', ['200']]]);
    expect(
      applyMutation(h, {
        set_headers: [
          set(':status', '418', false),
          set(':status', 'not a number', false),
          set(':status', '100', false),
        ],
      }),
    ).toBe(2);
    expect(h.get(':status')).toEqual(['418']);
  });

  it('a name or value with characters HTTP forbids fails the whole mutation, before anything is changed', () => {
    const h = new Map<string, string[]>([['x-a', ['1']]]);
    expect(() => applyMutation(h, { remove_headers: ['x-a'], set_headers: [set('x-append-this\n', 'v')] })).toThrow(
      InvalidHeaderMutation,
    );
    expect(() => applyMutation(h, { remove_headers: ['x-a'], set_headers: [set('x-b', 'value\r')] })).toThrow(
      /set_contains_invalid_character/,
    );
    expect(() => applyMutation(h, { remove_headers: ['host\n'] })).toThrow(/remove_contains_invalid_character/);
    expect(h.get('x-a')).toEqual(['1']);
  });
});

describe('gateway with an EPP that echoes pseudo-headers (as llm-d-router ebab687 does)', () => {
  let gateway: GatewayHandle | undefined;
  let epp: grpc.Server | undefined;
  let upstream: http.Server | undefined;
  afterEach(async () => {
    await gateway?.close();
    if (epp) await new Promise<void>((resolve) => epp!.tryShutdown(() => resolve()));
    if (upstream) await new Promise<void>((resolve) => upstream!.close(() => resolve()));
    gateway = epp = upstream = undefined;
  });

  /** An upstream that records each request's method, URL and headers. */
  async function recordingUpstream(): Promise<{
    port: number;
    seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>;
  }> {
    const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> = [];
    upstream = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers });
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => upstream!.listen(0, '127.0.0.1', () => resolve()));
    return { port: (upstream.address() as { port: number }).port, seen };
  }

  /** An ext_proc server answering request headers with `mutation(destination, requestHeaders)`, response headers with `responseMutation`. */
  async function stubEpp(
    mutation: (headers: Map<string, string>) => ProcessingResponse,
    responseMutation: ProcessingResponse,
  ): Promise<number> {
    epp = new grpc.Server();
    epp.addService(extProcServiceDefinition(), {
      Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
        call.on('data', (message: ProcessingRequest) => {
          if (message.request_headers) {
            const h = new Map(
              (message.request_headers.headers?.headers ?? []).map((headerValue) => [
                headerValue.key,
                headerValueText(headerValue),
              ]),
            );
            call.write(mutation(h));
            if (message.request_headers.end_of_stream) return;
          }
          if (message.request_body)
            call.write({
              request_body: {
                response: {
                  body_mutation: {
                    streamed_response: {
                      body: message.request_body.body ?? Buffer.alloc(0),
                      end_of_stream: message.request_body.end_of_stream ?? false,
                    },
                  },
                },
              },
            });
          if (message.response_headers) call.write(responseMutation);
          if (message.response_body)
            call.write({
              response_body: {
                response: {
                  body_mutation: {
                    streamed_response: {
                      body: message.response_body.body ?? Buffer.alloc(0),
                      end_of_stream: message.response_body.end_of_stream ?? false,
                    },
                  },
                },
              },
            });
        });
        call.on('end', () => call.end());
        call.on('error', () => undefined);
      },
    });
    return new Promise((resolve, reject) =>
      epp!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  }

  it('echoed :method, :authority, :scheme and host are ignored, :path rewrites the path, no pseudo-header goes upstream; :status from the EPP sets the status', async () => {
    const up = await recordingUpstream();
    const eppPort = await stubEpp(
      (headers) => ({
        request_headers: {
          response: {
            clear_route_cache: true,
            header_mutation: {
              set_headers: [
                set('x-gateway-destination-endpoint', `127.0.0.1:${up.port}`),
                // Everything it received, as llm-d-router's generateHeaders echoes it.
                ...[...headers]
                  .filter(([name]) => name !== 'content-length')
                  .map(([name, value]) =>
                    set(
                      name,
                      name === ':path'
                        ? '/v1/rewritten'
                        : name === ':method'
                          ? 'DELETE'
                          : name === ':authority' || name === 'host'
                            ? 'elsewhere:1'
                            : value,
                    ),
                  ),
              ],
            },
          },
        },
      }),
      {
        response_headers: {
          response: { header_mutation: { set_headers: [set(':status', '201'), set('x-from-epp', '1')] } },
        },
      },
    );
    gateway = await startGateway(
      gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${eppPort}`, eppTls: false }),
    );
    const r = await fetch(`${gateway.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-client': 'c' },
      body: '{"model":"m","prompt":"hi"}',
      signal: AbortSignal.timeout(10_000),
    });
    expect(r.status).toBe(201);
    expect(await r.text()).toBe('{"ok":true}');
    expect(r.headers.get('x-from-epp')).toBe('1');
    expect(up.seen).toHaveLength(1);
    const seen = up.seen[0];
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/v1/rewritten');
    expect(seen.headers.host).toBe(new URL(gateway.url).host);
    expect(seen.headers['x-client']).toBe('c');
    expect(Object.keys(seen.headers).filter((k) => k.startsWith(':'))).toEqual([]);
    // host, :authority, :method, :scheme were refused (the echoed :path was applied).
    const metrics = await (await fetch(`${gateway.url}/gateway/metrics`)).text();
    expect(metrics).toMatch(/^pd_router_gateway_rejected_header_mutations_total 4$/m);
  });

  it('an invalid header value from the EPP answers 500 and never reaches the upstream', async () => {
    const up = await recordingUpstream();
    const eppPort = await stubEpp(
      () => ({
        request_headers: {
          response: {
            header_mutation: {
              set_headers: [set('x-gateway-destination-endpoint', `127.0.0.1:${up.port}`), set('x-bad', 'a\r\nb')],
            },
          },
        },
      }),
      { response_headers: { response: {} } },
    );
    gateway = await startGateway(
      gatewayConfig({
        host: '127.0.0.1',
        port: 0,
        epp: `127.0.0.1:${eppPort}`,
        eppTls: false,
        failureModeAllow: true,
        fallbackEndpoints: [`127.0.0.1:${up.port}`],
      }),
    );
    const r = await fetch(`${gateway.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(10_000),
    });
    expect(r.status).toBe(500);
    expect(await r.text()).toMatch(/invalid header mutation.*set_contains_invalid_character: "x-bad"/);
    expect(up.seen).toHaveLength(0);
  });
});
