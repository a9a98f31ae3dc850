/** One whole request through an EPP over ext_proc, playing Envoy: request headers and body, then a 200 response. */
import { expect } from 'vitest';
import { envoyStatusNumber } from '../../src/common/envoy/ext-proc.js';
import type { ExtProcTestClient } from './ext-proc-client.js';
import { body, headers, responseBody, responseHeaders, setHeadersOf } from './ext-proc-client.js';

export interface RouteOutcome {
  /** Request headers the EPP set (lower-cased names), e.g. x-gateway-destination-endpoint. */
  set: Map<string, string>;
  /** Response headers the EPP set (the last value of each name). */
  response: Map<string, string>;
  /** Every response header mutation, in order (names as sent). */
  responseList: Array<[string, string]>;
  /** An immediate response instead of a routing decision: its HTTP status and body. */
  rejected?: { status: number; body: string };
}

const lower = (pairs: Array<[string, string, string]>) => new Map(pairs.map(([k, value]) => [k.toLowerCase(), value]));

let n = 0;
export async function routeOverExtProc(
  client: ExtProcTestClient,
  payload: Record<string, unknown>,
  opts: { path?: string; headers?: Record<string, string>; responseHeaders?: Record<string, string> } = {},
): Promise<RouteOutcome> {
  const call = client.open();
  call.send(
    headers({
      ':method': 'POST',
      ':path': opts.path ?? '/v1/completions',
      ':authority': 'envoy',
      'content-type': 'application/json',
      'x-request-id': `route-${++n}`,
      ...opts.headers,
    }),
    body(JSON.stringify(payload), true),
  );
  const [first] = await call.waitFor(1);
  if (first.immediate_response) {
    call.end();
    await call.ended;
    const ir = first.immediate_response;
    return {
      set: new Map(),
      response: new Map(),
      responseList: [],
      rejected: { status: envoyStatusNumber(ir.status.code), body: Buffer.from(ir.body ?? '').toString() },
    };
  }
  await call.waitFor(2);
  const set = lower(setHeadersOf(first.request_headers!.response.header_mutation));
  call.send(responseHeaders({ ':status': '200', 'content-type': 'application/json', ...opts.responseHeaders }));
  const [, , rh] = await call.waitFor(3);
  call.send(responseBody('{"choices":[]}', true));
  await call.waitFor(4);
  call.end();
  // Status OK (llm-d-router's EPP ends the stream with empty details, pd-router's with "OK").
  expect((await call.ended).code).toBe(0);
  const list = setHeadersOf(rh.response_headers!.response.header_mutation);
  return { set, response: lower(list), responseList: list.map(([k, value]) => [k, value]) };
}
