/**
 * A client that goes away mid-request: the gateway cancels its ext_proc stream as Envoy does (half-close, then
 * RST_STREAM CANCEL), and stops the upstream request. An EPP stand-in that never ends its streams tells the two apart:
 * a half-close alone would leave its stream open; the reset closes it (grpc-js reports 'cancelled').
 */
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extProcServiceDefinition, type ProcessingRequest } from '../../src/common/envoy/ext-proc.js';
import { waitFor } from '../helpers.js';
import { startGatewayStack, startRecorder, type GatewayStack, type Recorder } from './fixtures.js';

interface StreamEvents {
  halfClosed: boolean;
  cancelled: boolean;
}

/** Routes every request to `destination` and then holds its stream open (never ends it). */
async function startHoldingEpp(destination: () => string): Promise<{ address: string; streams: StreamEvents[]; close(): void }> {
  const streams: StreamEvents[] = [];
  const server = new grpc.Server();
  server.addService(extProcServiceDefinition(), {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, unknown>) => {
      const events: StreamEvents = { halfClosed: false, cancelled: false };
      streams.push(events);
      call.on('data', (message: ProcessingRequest) => {
        if (!message.request_body?.end_of_stream) return;
        const set = [{ header: { key: 'x-gateway-destination-endpoint', raw_value: Buffer.from(destination()) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
        call.write({ request_headers: { response: { clear_route_cache: true, header_mutation: { set_headers: set } } } });
        call.write({ request_body: { response: { body_mutation: { streamed_response: { body: message.request_body.body, end_of_stream: true } } } } });
      });
      call.on('end', () => (events.halfClosed = true));
      call.on('cancelled', () => (events.cancelled = true));
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, quantile) => (err ? reject(err) : resolve(quantile))));
  return { address: `127.0.0.1:${port}`, streams, close: () => server.forceShutdown() };
}

describe('a client that disconnects mid-request', () => {
  let upstream: Recorder;
  let epp: Awaited<ReturnType<typeof startHoldingEpp>>;
  let s: GatewayStack;
  beforeAll(async () => {
    upstream = await startRecorder();
    // The endpoint never answers: the request is in flight when the client leaves.
    upstream.handler = () => undefined;
    epp = await startHoldingEpp(() => upstream.hostPort);
    s = await startGatewayStack({ epp: false, eppAddress: epp.address });
  });
  afterAll(async () => {
    await s.close();
    await upstream.close();
    epp.close();
  });

  it('makes the gateway reset its ext_proc stream (RST_STREAM, not just a half-close) and stop the upstream request', async () => {
    const u = new URL(s.gateway.url);
    const arrived = upstream.nextArrival();
    const req = http.request({ host: u.hostname, port: u.port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json' } });
    req.on('error', () => undefined);
    req.end(JSON.stringify({ model: 'm', prompt: 'hi' }));
    const upstreamReq = await arrived;
    const upstreamGone = new Promise<void>((resolve) => upstreamReq.socket.once('close', () => resolve()));
    req.destroy();
    await waitFor(() => epp.streams[0]?.cancelled === true, 5_000, 'the EPP stream reset');
    await upstreamGone;
    expect(epp.streams).toEqual([{ halfClosed: true, cancelled: true }]);
  });
});
