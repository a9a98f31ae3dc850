/**
 * Clients that abort their requests make Envoy reset their ext_proc streams, all multiplexed over a few connections.
 * nghttp2 (Node's HTTP/2) answers more than 1000 resets on a connection (refilled at 33/s) with GOAWAY INTERNAL_ERROR,
 * and the Node client then fails every stream on that connection. The EPP's connection stream guard closes such a
 * connection gracefully first: the other streams on it finish, and the resetting client must reconnect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExtProcCall, StreamEnd } from './ext-proc-client.js';
import { body, headers, responseBody, responseHeaders } from './ext-proc-client.js';
import { PD_EPP_CONFIG, spec, startTestEpp, type TestEpp } from './fixtures.js';
import { waitFor } from '../helpers.js';

const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);
const REQUEST = headers({ ':path': '/v1/completions', ':method': 'POST' });
const BODY = body(JSON.stringify({ model: 'food-review', prompt: 'hi' }), true);

/** A request routed by the EPP whose response phase is still open (the stream is in flight). */
async function inFlight(testEpp: TestEpp): Promise<ExtProcCall> {
  const call = testEpp.client.open().send(REQUEST, BODY);
  await call.waitFor(2, 60_000);
  return call;
}

/** Finishes an in-flight exchange: response headers and body, the EPP's answers, then the client half-closes. */
async function finish(call: ExtProcCall): Promise<StreamEnd> {
  call.send(responseHeaders({ ':status': '200', 'content-type': 'application/json' }), responseBody('{"choices":[]}', true));
  await call.waitFor(4, 60_000);
  call.end();
  return call.ended;
}

/** A stream that sends its request headers and is cancelled (RST_STREAM CANCEL) once the EPP has them. */
async function aborted(testEpp: TestEpp): Promise<StreamEnd> {
  const call = testEpp.client.open().send(REQUEST);
  await new Promise((resolve) => setImmediate(resolve));
  call.cancel();
  return call.ended;
}

/** A good stream's failure, as a result to compare (not a rejection left unhandled while the flood goes on). */
const failed = (err: Error): StreamEnd => ({ code: -1, details: err.message });

const closedStreams = async (testEpp: TestEpp) => (await testEpp.epp.metrics.llmd!.streamsTotal.get()).values.reduce((acc, item) => acc + item.value, 0);

/** As `aborted`, one at a time: the EPP has seen the stream open and close before the next one. */
async function abortedSeen(testEpp: TestEpp): Promise<StreamEnd> {
  const before = await closedStreams(testEpp);
  const end = aborted(testEpp);
  await waitFor(async () => (await closedStreams(testEpp)) === before + 1, 5_000, 'stream opened and closed');
  return end;
}

const drained = async (testEpp: TestEpp) => (await testEpp.epp.metrics.connectionsDrained.get()).values.find((metricValue) => metricValue.labels.reason === 'stream_burst')?.value ?? 0;

describe('thousands of aborting streams on one connection', () => {
  let t: TestEpp;
  beforeAll(async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P, D]);
  });
  afterAll(() => t.close());

  it('every concurrent good stream on the same connection succeeds, and the resetting connection is closed gracefully', async () => {
    const held = await Promise.all(Array.from({ length: 20 }, () => inFlight(t)));
    const during: Array<Promise<StreamEnd>> = [];
    const aborts: Array<Promise<StreamEnd>> = [];
    for (let i = 0; i < 3_000; i++) {
      aborts.push(aborted(t));
      // A good request now and then while the flood goes on, and a pause for the event loop.
      if (i % 100 === 99) {
        during.push(inFlight(t).then(finish, failed));
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const abortEnds = await Promise.all(aborts);
    expect(abortEnds.filter((streamEnd) => streamEnd.code !== 1)).toEqual([]);
    const ends = [...(await Promise.all(held.map((extProcCall) => finish(extProcCall).catch(failed)))), ...(await Promise.all(during))];
    expect(ends).toHaveLength(50);
    expect(ends.filter((streamEnd) => streamEnd.code !== 0)).toEqual([]);
    // The guard, not nghttp2, closed the connection (at least once: 3000 resets against a burst of 500).
    expect(await drained(t)).toBeGreaterThanOrEqual(1);
  }, 180_000);
});

describe('the guard\'s threshold (--connection-stream-burst, --connection-stream-rate)', () => {
  let t: TestEpp;
  beforeAll(async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P, D], { connectionStreamBurst: 10, connectionStreamRate: 0 });
  });
  afterAll(() => t.close());

  it('a connection is drained at its burst + 1st stream; its in-flight stream completes and a new connection serves on', async () => {
    const held = await inFlight(t);
    for (let i = 0; i < 6; i++) expect((await abortedSeen(t)).code).toBe(1);
    for (let i = 0; i < 3; i++) expect(await finish(await inFlight(t))).toEqual({ code: 0, details: 'OK' });
    // Ten streams so far: within the burst.
    expect(await drained(t)).toBe(0);
    expect((await abortedSeen(t)).code).toBe(1);
    await waitFor(async () => (await drained(t)) === 1, 5_000, 'connection drained');
    expect(await finish(held)).toEqual({ code: 0, details: 'OK' });
    // The client reconnects; the new connection has its own bucket.
    for (let i = 0; i < 3; i++) expect(await finish(await inFlight(t))).toEqual({ code: 0, details: 'OK' });
    expect(await drained(t)).toBe(1);
  }, 60_000);
});
