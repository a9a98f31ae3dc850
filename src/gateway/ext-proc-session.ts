/**
 * One ext_proc stream, as Envoy opens one per HTTP request: messages go out with `send`, answers are read in order with
 * `next`, each bounded by the message timeout (Envoy's message_timeout). A stream error, an early end or a timeout
 * surfaces as an EppUnavailable error, which the gateway turns into fail-open or fail-closed handling.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ProcessingRequest, ProcessingResponse } from '../common/envoy/ext-proc.js';

export class EppUnavailable extends Error {
  constructor(
    message: string,
    readonly stage: string,
  ) {
    super(message);
  }
}

type Waiter = { resolve: (response: ProcessingResponse) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };

export class ExtProcSession {
  private readonly call: grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
  private readonly queue: ProcessingResponse[] = [];
  private waiter?: Waiter;
  private failure?: Error;
  private closed = false;
  private onUnsolicited?: () => void;

  constructor(
    client: grpc.Client & {
      Process: (opts?: grpc.CallOptions) => grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
    },
    private readonly messageTimeoutMs: number,
  ) {
    this.call = client.Process();
    this.call.on('data', (response: ProcessingResponse) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        clearTimeout(w.timer);
        w.resolve(response);
      } else {
        this.queue.push(response);
        if (response.immediate_response) this.onUnsolicited?.();
      }
    });
    const fail = (err: Error) => {
      if (this.failure) return;
      this.failure = err;
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        clearTimeout(w.timer);
        w.reject(err);
      }
    };
    this.call.on('error', (err: grpc.ServiceError) =>
      fail(new EppUnavailable(`ext_proc stream failed: ${err.details || err.message}`, 'stream')),
    );
    this.call.on('end', () => fail(new EppUnavailable('ext_proc stream ended by the EPP', 'stream')));
  }

  /**
   * Calls `listener` when an immediate response arrives that no `next` is waiting for: the EPP ending the exchange on
   * its own while the request is upstream (llm-d-router's eviction answers 429 so). It stays queued for the next `next`.
   */
  watchUnsolicited(listener: () => void): void {
    this.onUnsolicited = listener;
  }

  send(msg: ProcessingRequest): void {
    if (this.failure || this.closed) return;
    this.call.write(msg);
  }

  /** The next answer from the EPP, within the message timeout. */
  next(stage: string): Promise<ProcessingResponse> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        const err = new EppUnavailable(`no answer from the EPP within ${this.messageTimeoutMs}ms (${stage})`, stage);
        this.failure = err;
        this.call.cancel();
        reject(err);
      }, this.messageTimeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  /**
   * Half-closes the stream after the last message and lets the EPP end it: Envoy's graceful_grpc_close. (Envoy's
   * default also resets the stream right after the half-close; the EPP's connection stream guard allows for that.)
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.failure) this.call.end();
  }

  /**
   * Cancels the stream (client gone, or the exchange failed) as Envoy does when its client disconnects: a half-close,
   * then RST_STREAM CANCEL (grpc-js's cancel).
   */
  cancel(): void {
    this.closed = true;
    if (this.waiter) clearTimeout(this.waiter.timer);
    this.call.cancel();
  }
}
