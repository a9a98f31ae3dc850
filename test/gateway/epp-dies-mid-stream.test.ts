/**
 * The EPP fails while a streamed answer goes through it, holding chunks it has not returned yet. Fail-open: the client
 * gets every event, in order, and a normal end. Fail-closed: the client's response fails visibly at once (the chunked
 * body is never terminated), carrying no event past the failure and never looking complete.
 */
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { extProcServiceDefinition, type ProcessingRequest } from '../../src/common/envoy/ext-proc.js';
import { startGatewayStack, startRecorder, type GatewayStack, type Recorder } from './fixtures.js';

const EVENTS = 8;
const FAIL_AT = 3;
const event = (i: number) => `data: {"choices":[{"index":0,"text":"t${i}"}]}\n\n`;
const ALL = Array.from({ length: EVENTS }, (_, i) => event(i)).join('') + 'data: [DONE]\n\n';

/**
 * An EPP stand-in that routes to `destination`, answers the response headers, echoes response body chunks, and fails
 * its stream (INTERNAL) on the chunk holding event FAIL_AT, without returning it.
 */
async function startEppFailingMidResponse(destination: () => string): Promise<{ address: string; close(): void }> {
  const server = new grpc.Server();
  server.addService(extProcServiceDefinition(), {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, unknown>) => {
      call.on('error', () => undefined);
      call.on('data', (message: ProcessingRequest) => {
        if (message.request_body?.end_of_stream) {
          const set = [{ header: { key: 'x-gateway-destination-endpoint', raw_value: Buffer.from(destination()) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
          call.write({ request_headers: { response: { clear_route_cache: true, header_mutation: { set_headers: set } } } });
          call.write({ request_body: { response: { body_mutation: { streamed_response: { body: message.request_body.body, end_of_stream: true } } } } });
        } else if (message.response_headers) {
          call.write({ response_headers: { response: {} } });
        } else if (message.response_body) {
          const chunk = Buffer.from(message.response_body.body ?? []);
          if (chunk.toString().includes(`"t${FAIL_AT}"`)) return call.emit('error', { code: grpc.status.INTERNAL, details: 'EPP failed mid-response' });
          call.write({ response_body: { response: { body_mutation: { streamed_response: { body: chunk, end_of_stream: !!message.response_body.end_of_stream } } } } });
        }
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, quantile) => (err ? reject(err) : resolve(quantile))));
  return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
}

interface ClientView {
  status: number;
  text: string;
  /** 'end' for a complete body, else the error that ended it. */
  ending: string;
}

/** One streamed request; the endpoint sends its events one per write (a turn of the event loop apart). */
function streamThrough(stack: GatewayStack): Promise<ClientView> {
  stack.decode.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i === EVENTS) return void res.end('data: [DONE]\n\n');
      res.write(event(i++));
      setTimeout(next, 5);
    };
    next();
  };
  const u = new URL(stack.gateway.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json' }, timeout: 15_000 }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, text, ending: 'end' }));
      res.on('error', (err) => resolve({ status: res.statusCode!, text, ending: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('no end within 15 s')));
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'm', prompt: 'hi', stream: true }));
  });
}

let cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setUp(failureModeAllow: boolean): Promise<GatewayStack> {
  const upstream: Recorder = await startRecorder();
  const epp = await startEppFailingMidResponse(() => upstream.hostPort);
  const s = await startGatewayStack({ epp: false, eppAddress: epp.address, gateway: { failureModeAllow, fallbackEndpoints: [upstream.hostPort] } });
  s.decode = upstream;
  cleanup.push(() => upstream.close(), () => epp.close(), () => s.close());
  return s;
}

describe('the EPP fails mid-response, holding a chunk', () => {
  it('fail-open: the client gets every event in order and a normal end', async () => {
    const view = await streamThrough(await setUp(true));
    expect(view).toEqual({ status: 200, text: ALL, ending: 'end' });
  });

  it('fail-closed: the response fails at once, with no event past the failure and no [DONE]', async () => {
    const s = await setUp(false);
    const view = await streamThrough(s);
    expect(view.status).toBe(200);
    expect(view.ending).not.toBe('end');
    // What arrived is an unbroken start of the stream, ending before the event the EPP failed on.
    expect(ALL.startsWith(view.text)).toBe(true);
    expect(view.text).not.toContain(`"t${FAIL_AT}"`);
    expect((await s.gateway.metrics.eppFailures.get()).values).toEqual([expect.objectContaining({ labels: { stage: 'response body' }, value: 1 })]);
  });
});
