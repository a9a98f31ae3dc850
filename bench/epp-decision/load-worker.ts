/**
 * Load generator for the throughput benchmark, in a worker thread so it does not share the EPP's event loop: keeps
 * `concurrency` ext_proc streams busy for `durationMs` (or `maxRequests`), each stream one request as Envoy sends it
 * (headers, body with end of stream, wait for the headers reply and the last body chunk, half-close).
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import {
  extProcClientConstructor,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../src/common/envoy/ext-proc.js';

interface Job {
  address: string;
  bodies: Uint8Array[];
  concurrency: number;
  durationMs: number;
  maxRequests: number;
}

const job = workerData as Job;
const Ctor = extProcClientConstructor();
const client = new Ctor(job.address, grpc.credentials.createInsecure(), {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
});
const latencies: number[] = [];
let started = 0;
let errors = 0;
const end = performance.now() + job.durationMs;

function oneRequest(i: number): Promise<void> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-member-access -- the client is built from the ext_proc proto at run time
    const call = (client as any).Process() as grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      if (ok) latencies.push(performance.now() - t0);
      else errors++;
      call.end();
      resolve();
    };
    call.on('data', (match: ProcessingResponse) => {
      if (match.immediate_response) finish(false);
      const streamed = (
        match.request_body?.response.body_mutation as { streamed_response?: { end_of_stream: boolean } } | undefined
      )?.streamed_response;
      if (streamed?.end_of_stream) finish(true);
    });
    call.on('error', () => finish(false));
    call.write({
      request_headers: {
        headers: {
          headers: [
            { key: ':path', raw_value: Buffer.from('/v1/completions') },
            { key: 'x-request-id', raw_value: Buffer.from(`w-${i}`) },
          ],
        },
        end_of_stream: false,
      },
    });
    call.write({ request_body: { body: Buffer.from(job.bodies[i % job.bodies.length]), end_of_stream: true } });
  });
}

async function lane(): Promise<void> {
  while (performance.now() < end && started < job.maxRequests) await oneRequest(started++);
}

const t0 = performance.now();
await Promise.all(Array.from({ length: job.concurrency }, () => lane()));
const elapsed = performance.now() - t0;
client.close();
parentPort!.postMessage({ latencies, errors, elapsedMs: elapsed });
