/**
 * The gateway with several EPP replicas (`--epp a,b,c`): a replica that is down, broken or a follower under leader
 * election (503 rejected-not-leader, the EPP's own immediate response) is passed over before anything goes upstream;
 * the replica that answered is asked first next time; with only followers the client gets their 503 and reason.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { extProcServiceDefinition, type ProcessingRequest } from '../../src/common/envoy/ext-proc.js';
import { immediateResponse } from '../../src/epp/extproc/messages.js';
import { InferenceError, startEpp } from '../../src/epp/index.js';
import { PD_EPP_CONFIG, loopbackEppConfig, spec } from '../epp/fixtures.js';
import { gatewayConfig, startGateway } from '../../src/gateway/index.js';
import { postJson } from '../helpers.js';
import { closedPort, startFailingEpp, startGatewayStack, type GatewayStack } from './fixtures.js';

/** An ext_proc server answering every request as a follower does (pd-router's EPP under leader election). */
async function startFollower(): Promise<{ address: string; streams: () => number; close(): Promise<void> }> {
  let streams = 0;
  const server = new grpc.Server();
  server.addService(extProcServiceDefinition(), {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, unknown>) => {
      streams++;
      call.once('data', () => {
        call.write(
          immediateResponse(
            new InferenceError(
              'ServiceUnavailable',
              'this EPP replica is not the leader (the leader is epp-0)',
              'rejected-not-leader',
            ),
          ),
        );
        call.end();
      });
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, quantile) =>
      err ? reject(err) : resolve(quantile),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    streams: () => streams,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

const retries = async (gatewayStack: GatewayStack) =>
  Object.fromEntries(
    (await gatewayStack.gateway.metrics.eppRetries.get()).values.map((metricValue) => [
      metricValue.labels.reason,
      metricValue.value,
    ]),
  );
const completion = (gatewayStack: GatewayStack) =>
  postJson(`${gatewayStack.gateway.url}/v1/completions`, { model: 'food-review', prompt: 'hi', max_tokens: 1 });

let stack: GatewayStack | undefined;
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await stack?.close();
  for (const c of closers.splice(0)) await c();
  stack = undefined;
});

describe('gateway with several --epp replicas', () => {
  it('passes over a follower and a closed port to the leader; asks the leader first afterwards', async () => {
    const follower = await startFollower();
    closers.push(() => follower.close());
    const down = await closedPort();
    stack = await startGatewayStack();
    const leader = `127.0.0.1:${stack.epp!.grpcPort}`;
    // A second gateway, in front of the three replicas (the stack closes its own).
    const gateway = await startGateway(
      gatewayConfig({ host: '127.0.0.1', port: 0, eppTls: false, epp: `${follower.address},${down},${leader}` }),
    );
    closers.push(() => gateway.close(1_000));
    stack = { ...stack, gateway };
    const r = await completion(stack);
    expect(r.status, r.text).toBe(200);
    expect(stack.decode.requests.length).toBe(1);
    expect(follower.streams()).toBe(1);
    expect(await retries(stack)).toEqual({ not_leader: 1, unavailable: 1 });
    for (let i = 0; i < 3; i++) expect((await completion(stack)).status).toBe(200);
    expect(follower.streams()).toBe(1); // the leader is asked first now
    expect(await retries(stack)).toEqual({ not_leader: 1, unavailable: 1 });
  });

  it('a broken replica (stream error) is passed over; with only followers the client gets their 503 and reason', async () => {
    const broken = await startFailingEpp();
    const f1 = await startFollower();
    const f2 = await startFollower();
    closers.push(
      () => broken.close(),
      () => f1.close(),
      () => f2.close(),
    );
    stack = await startGatewayStack({ epp: false, gateway: { epp: `${broken.address},${f1.address},${f2.address}` } });
    const r = await completion(stack);
    // A broken replica and two followers: no leader answered; the last answer was a follower's.
    expect(r.status).toBe(503);
    expect(r.headers.get('x-llm-d-request-dropped-reason')).toBe('rejected-not-leader');
    expect(r.text).toBe(
      'inference error: ServiceUnavailable - this EPP replica is not the leader (the leader is epp-0)',
    );
    expect(stack.decode.requests.length + stack.prefill.requests.length).toBe(0);
  });

  it('--epp-retry-timeout keeps asking across a handover: a leader that appears later gets the request', async () => {
    const follower = await startFollower();
    closers.push(() => follower.close());
    const future = await closedPort(); // nothing listens there yet
    stack = await startGatewayStack({
      epp: false,
      gateway: { epp: `${follower.address},${future}`, eppRetryTimeout: 30_000 },
    });
    const pending = completion(stack);
    // Synchronise on the gateway having asked the follower in two rounds, then start the leader where it will look.
    const deadline = Date.now() + 30_000;
    while (follower.streams() < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(follower.streams()).toBeGreaterThanOrEqual(2);
    const specs = [
      spec('prefill-0', '127.0.0.1', 'prefill', {}, stack.prefill.port),
      spec('decode-0', '127.0.0.1', 'decode', {}, stack.decode.port),
    ];
    const epp = await startEpp(loopbackEppConfig(PD_EPP_CONFIG, specs, { grpcPort: Number(future.split(':')[1]) }));
    closers.push(() => epp.close(1_000));
    const r = await pending;
    expect(r.status, r.text).toBe(200);
    expect(stack.decode.requests.length).toBe(1);
    expect((await retries(stack)).not_leader).toBeGreaterThanOrEqual(2);
  });
});
