/**
 * The EPP's bounds on request bodies over real ext_proc streams: one process-wide budget for the bytes of bodies still
 * arriving (503 rejected-saturated beyond it), and a body-progress timeout (408 for a body that stops arriving).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, headers, setHeadersOf } from './ext-proc-client.js';
import { PD_EPP_CONFIG, decoded, spec, startTestEpp, type TestEpp } from './fixtures.js';
import { waitFor } from '../helpers.js';

const P = spec('prefill-0', '127.0.0.2', 'prefill', {}, 9);
const D = spec('decode-0', '127.0.0.3', 'decode', {}, 9);
const KiB = 1024;
const REQUEST = { ':path': '/v1/completions', ':method': 'POST' };

/** A body chunk of `n` bytes that opens a completion request (the rest of the JSON comes with `closing`). */
const PREFIX = '{"model":"food-review","prompt":"';
const opening = (count: number) => PREFIX + 'x'.repeat(count - PREFIX.length);
const closing = '"}';

describe('the request buffer budget (--request-buffer-budget)', () => {
  let t: TestEpp;
  const held = async () => (await t.epp.metrics.requestBufferBytes.get()).values[0]?.value ?? 0;
  beforeAll(async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P, D], { maxRequestBodySize: 512 * KiB, requestBufferBudget: 1024 * KiB, requestBodyTimeout: 0 });
  });
  afterAll(() => t.close());

  it('stalled bodies hold bytes until the budget is full; the next body gets 503 rejected-saturated; freed bytes are reusable', async () => {
    const a = t.client.open().send(headers(REQUEST), body(opening(400 * KiB), false));
    await waitFor(async () => (await held()) === 400 * KiB, 5_000, 'first body held');
    const b = t.client.open().send(headers(REQUEST), body(opening(400 * KiB), false));
    await waitFor(async () => (await held()) === 800 * KiB, 5_000, 'second body held');

    const c = t.client.open().send(headers(REQUEST), body(opening(400 * KiB), false));
    const [r] = await c.waitFor(1);
    expect(decoded(r!.immediate_response)).toMatchObject({
      status: { code: 'ServiceUnavailable' },
      body: `inference error: ServiceUnavailable - request body buffers are full (${800 * KiB} of ${1024 * KiB} bytes held by requests in flight)`,
    });
    expect(setHeadersOf(r!.immediate_response!.headers)).toEqual([['x-llm-d-request-dropped-reason', 'rejected-saturated', 'OVERWRITE_IF_EXISTS_OR_ADD']]);
    expect(await c.ended).toEqual({ code: 0, details: 'OK' });
    expect(await held()).toBe(800 * KiB);

    // A client that goes away gives its bytes back; then a new body fits.
    a.cancel();
    await waitFor(async () => (await held()) === 400 * KiB, 5_000, 'cancelled body released');
    const d = t.client.open().send(headers(REQUEST), body(opening(400 * KiB), false), body(closing, true));
    expect((await d.waitFor(2))[0]!.request_headers).toBeTruthy();
    d.end();
    // A finished body is parsed, scheduled and released.
    b.send(body(closing, true));
    expect((await b.waitFor(2))[0]!.request_headers).toBeTruthy();
    b.end();
    await waitFor(async () => (await held()) === 0, 5_000, 'every body released');
  });

  it('a body over --max-request-body-size is still a 413 and holds nothing', async () => {
    const call = t.client.open().send(headers(REQUEST), body(opening(300 * KiB), false), body('y'.repeat(300 * KiB), false));
    const [r] = await call.waitFor(1);
    expect(r!.immediate_response!.status.code).toBe('PayloadTooLarge');
    expect(await held()).toBe(0);
  });
});

describe('the request body timeout (--request-body-timeout)', () => {
  let t: TestEpp;
  beforeAll(async () => {
    t = await startTestEpp(PD_EPP_CONFIG, [P, D], { requestBodyTimeout: 300 });
  });
  afterAll(() => t.close());

  it('a body that stops arriving gets 408 with the reason, the stream ends and its bytes are released', async () => {
    const call = t.client.open().send(headers(REQUEST), body(opening(1000), false));
    const [r] = await call.waitFor(1);
    expect(decoded(r!.immediate_response)).toEqual({
      status: { code: 'RequestTimeout' },
      headers: null,
      body: 'inference error: RequestTimeout - request body made no progress for 300ms (1000 bytes received)',
      grpc_status: null,
      details: '',
    });
    expect(await call.ended).toEqual({ code: 0, details: 'OK' });
    expect((await t.epp.metrics.requestBufferBytes.get()).values[0]?.value).toBe(0);
  });

  it('request headers announcing a body that never comes: 408 too', async () => {
    const call = t.client.open().send(headers(REQUEST));
    const [r] = await call.waitFor(1);
    expect(Buffer.from(r!.immediate_response!.body!).toString()).toBe('inference error: RequestTimeout - request body made no progress for 300ms (0 bytes received)');
    expect(await call.ended).toEqual({ code: 0, details: 'OK' });
  });
});
