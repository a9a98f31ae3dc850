/**
 * The EPP's ext_proc keepalive (--grpc-keepalive-time, --grpc-keepalive-timeout): a peer that answers pings keeps its
 * connection and streams; a peer that stops answering (gone without closing its socket) has its connection closed.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, headers, responseBody, responseHeaders } from './ext-proc-client.js';
import { PD_EPP_CONFIG, spec, startTestEpp, type TestEpp } from './fixtures.js';
import { waitFor } from '../helpers.js';

const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);

const pings = async (testEpp: TestEpp, result: string) =>
  (await testEpp.epp.metrics.keepalivePings.get()).values.find((metricValue) => metricValue.labels.result === result)
    ?.value ?? 0;

/** HTTP/2 frame header: length (24 bits), type, flags, stream id. */
const frame = (type: number, flags: number, payload: Buffer = Buffer.alloc(0)) => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  return Buffer.concat([head, payload]);
};

describe('ext_proc keepalive', () => {
  let t: TestEpp;
  beforeAll(async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P, D], { grpcKeepaliveTime: 20, grpcKeepaliveTimeout: 5_000 });
  });
  afterAll(() => t.close());

  it('a stream on a connection that answers its pings lives through several of them', async () => {
    const call = t.client
      .open()
      .send(
        headers({ ':path': '/v1/completions', ':method': 'POST' }),
        body(JSON.stringify({ model: 'food-review', prompt: 'hi' }), true),
      );
    await call.waitFor(2, 30_000);
    const acked = await pings(t, 'ack');
    await waitFor(async () => (await pings(t, 'ack')) >= acked + 3, 30_000, 'three more keepalive acks');
    call.send(responseHeaders({ ':status': '200' }), responseBody('{}', true));
    await call.waitFor(4, 30_000);
    call.end();
    expect(await call.ended).toEqual({ code: 0, details: 'OK' });
    expect(await pings(t, 'timeout')).toBe(0);
  }, 60_000);

  it('a peer that stops answering pings has its connection closed after the timeout', async () => {
    const timeouts = await pings(t, 'timeout');
    const socket = net.connect(t.epp.grpcPort, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    // The client preface and an empty SETTINGS, then silence: nothing it receives (SETTINGS, PING) is answered.
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0)]));
    socket.resume();
    await closed;
    expect(await pings(t, 'timeout')).toBe(timeouts + 1);
  }, 60_000);
});
