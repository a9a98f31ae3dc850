/**
 * A test ext_proc client built from the same Envoy protos the EPP serves: it plays Envoy over loopback, sending
 * ProcessingRequests and collecting ProcessingResponses.
 */
import * as grpc from '@grpc/grpc-js';
import {
  extProcClientConstructor,
  headerValueText,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../src/common/envoy/ext-proc.js';

export interface StreamEnd {
  code: number;
  details: string;
}

export class ExtProcCall {
  readonly responses: ProcessingResponse[] = [];
  readonly ended: Promise<StreamEnd>;
  private waiters: Array<() => void> = [];
  private done = false;

  constructor(private readonly call: grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>) {
    call.on('data', (response: ProcessingResponse) => {
      this.responses.push(response);
      for (const w of this.waiters.splice(0)) w();
    });
    this.ended = new Promise((resolve) => {
      call.on('status', (settings: grpc.StatusObject) => {
        this.done = true;
        for (const w of this.waiters.splice(0)) w();
        resolve({ code: settings.code, details: settings.details });
      });
      call.on('error', () => undefined);
    });
  }

  send(...messages: ProcessingRequest[]): this {
    for (const m of messages) this.call.write(m);
    return this;
  }

  /** Waits until at least `n` responses arrived in total (bounded). */
  async waitFor(count: number, timeoutMs = 5_000): Promise<ProcessingResponse[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.responses.length < count) {
      if (this.done) throw new Error(`stream ended after ${this.responses.length} of ${count} responses`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${count} responses (got ${this.responses.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.responses.slice(0, count);
  }

  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

export class ExtProcTestClient {
  private readonly client: grpc.Client;

  constructor(address: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {
    const Ctor = extProcClientConstructor();
    this.client = new Ctor(address, credentials);
  }

  open(): ExtProcCall {
    return new ExtProcCall((this.client as any).Process());
  }

  close(): void {
    this.client.close();
  }
}

export function headers(value: Record<string, string>, endOfStream = false): ProcessingRequest {
  return {
    request_headers: {
      headers: { headers: Object.entries(value).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) },
      end_of_stream: endOfStream,
    },
  };
}

export function body(right: string | Buffer, endOfStream: boolean): ProcessingRequest {
  return { request_body: { body: Buffer.from(right), end_of_stream: endOfStream } };
}

export function responseHeaders(value: Record<string, string>, endOfStream = false): ProcessingRequest {
  return {
    response_headers: {
      headers: { headers: Object.entries(value).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) },
      end_of_stream: endOfStream,
    },
  };
}

export function responseBody(right: string | Buffer, endOfStream: boolean): ProcessingRequest {
  return { response_body: { body: Buffer.from(right), end_of_stream: endOfStream } };
}

export function subsetHint(addresses: string[]): ProcessingRequest['metadata_context'] {
  return {
    filter_metadata: {
      'envoy.lb.subset_hint': {
        fields: {
          'x-gateway-destination-endpoint-subset': {
            listValue: { values: addresses.map((stringValue) => ({ stringValue })) },
          },
        },
      },
    },
  };
}

/** Header name → value of a header mutation's set list (values decoded). */
export function setHeadersOf(
  match:
    | {
        set_headers?: Array<{
          header: { key: string; raw_value?: Uint8Array; value?: string };
          append_action?: string;
        }>;
      }
    | null
    | undefined,
): Array<[string, string, string]> {
  return (match?.set_headers ?? []).map((headers) => [
    headers.header.key,
    headerValueText(headers.header),
    headers.append_action ?? '',
  ]);
}
