/**
 * The EPP fails while a streamed answer goes through it, holding chunks it has not returned yet. Fail-open: the client
 * gets every event, in order, and a normal end. Fail-closed: the client's response fails visibly at once (the chunked
 * body is never terminated), carrying no event past the failure and never looking complete.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { extProcServiceDefinition, type ProcessingRequest } from '../../src/common/envoy/ext-proc.js';
import {
  postCompletion,
  startGatewayStack,
  startRecorder,
  type ClientView,
  type GatewayStack,
  type Recorder,
} from './fixtures.js';

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
          const set = [
            {
              header: { key: 'x-gateway-destination-endpoint', raw_value: Buffer.from(destination()) },
              append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
            },
          ];
          call.write({
            request_headers: { response: { clear_route_cache: true, header_mutation: { set_headers: set } } },
          });
          call.write({
            request_body: {
              response: {
                body_mutation: { streamed_response: { body: message.request_body.body, end_of_stream: true } },
              },
            },
          });
        } else if (message.response_headers) {
          call.write({ response_headers: { response: {} } });
        } else if (message.response_body) {
          const chunk = Buffer.from(message.response_body.body ?? []);
          if (chunk.toString().includes(`"t${FAIL_AT}"`))
            return call.emit('error', { code: grpc.status.INTERNAL, details: 'EPP failed mid-response' });
          call.write({
            response_body: {
              response: {
                body_mutation: {
                  streamed_response: { body: chunk, end_of_stream: !!message.response_body.end_of_stream },
                },
              },
            },
          });
        }
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, quantile) =>
      err ? reject(err) : resolve(quantile),
    ),
  );
  return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
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
  return postCompletion(stack.gateway.url, { model: 'm', prompt: 'hi', stream: true }, {}, 15_000).done;
}

let cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setUp(failureModeAllow: boolean): Promise<GatewayStack> {
  const upstream: Recorder = await startRecorder();
  const epp = await startEppFailingMidResponse(() => upstream.hostPort);
  const s = await startGatewayStack({
    epp: false,
    eppAddress: epp.address,
    gateway: { failureModeAllow, fallbackEndpoints: [upstream.hostPort] },
  });
  s.decode = upstream;
  cleanup.push(
    () => upstream.close(),
    () => epp.close(),
    () => s.close(),
  );
  return s;
}

describe('the EPP fails mid-response, holding a chunk', () => {
  it('fail-open: the client gets every event in order and a normal end', async () => {
    const view = await streamThrough(await setUp(true));
    expect({ status: view.status, text: view.text, ending: view.ending }).toEqual({
      status: 200,
      text: ALL,
      ending: 'end',
    });
  });

  it('fail-closed: the response fails at once, with no event past the failure and no [DONE]', async () => {
    const s = await setUp(false);
    const view = await streamThrough(s);
    expect(view.status).toBe(200);
    expect(view.ending).not.toBe('end');
    // What arrived is an unbroken start of the stream, ending before the event the EPP failed on.
    expect(ALL.startsWith(view.text)).toBe(true);
    expect(view.text).not.toContain(`"t${FAIL_AT}"`);
    expect((await s.gateway.metrics.eppFailures.get()).values).toEqual([
      expect.objectContaining({ labels: { stage: 'response body' }, value: 1 }),
    ]);
  });
});
