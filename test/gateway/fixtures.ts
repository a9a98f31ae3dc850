/**
 * The gateway in-process on loopback, in front of recording upstreams that stand where the decode sidecar (or a model
 * server) stands: they keep every request exactly as it arrived, so a test sees what the sidecar would see.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { extProcServiceDefinition } from '../../src/common/envoy/ext-proc.js';
import { gatewayConfig, startGateway, type GatewayConfig, type GatewayHandle } from '../../src/gateway/index.js';
import { startEpp, type EppConfig, type EppHandle } from '../../src/epp/index.js';
import { PD_EPP_CONFIG, loopbackEppConfig, seeded, spec } from '../epp/fixtures.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Recorder {
  port: number;
  hostPort: string;
  requests: RecordedRequest[];
  /** Resolves with the next request that arrives (its headers; the body may still be coming). */
  nextArrival(): Promise<http.IncomingMessage>;
  /** Replaces the default answer (a small OpenAI completion). */
  handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;
  close(): Promise<void>;
}

const COMPLETION = JSON.stringify({
  id: 'cmpl-1',
  object: 'text_completion',
  model: 'food-review',
  choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});

/** An HTTP server on 127.0.0.1 recording every request (but the EPP's metrics scrapes) and answering a small completion. */
export async function startRecorder(): Promise<Recorder> {
  const arrivals: Array<(req: http.IncomingMessage) => void> = [];
  const rec: Recorder = {
    port: 0,
    hostPort: '',
    requests: [],
    nextArrival: () => new Promise((resolve) => arrivals.push(resolve)),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    // The EPP scrapes every endpoint: those are not requests the gateway sent.
    if (req.url === '/metrics') return void res.writeHead(404).end();
    arrivals.shift()?.(req);
    const parts: Buffer[] = [];
    req.on('data', (chunk: Buffer) => parts.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      rec.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body: body.toString() });
      if (rec.handler) {
        rec.handler(req, res, body);
        return;
      }
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(req.method === 'GET' ? '{"object":"list","data":[]}' : COMPLETION);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  rec.port = (server.address() as AddressInfo).port;
  rec.hostPort = `127.0.0.1:${rec.port}`;
  return rec;
}

export interface GatewayStack {
  epp?: EppHandle;
  gateway: GatewayHandle;
  prefill: Recorder;
  decode: Recorder;
  close(): Promise<void>;
}

/**
 * EPP (llm-d's P/D config; one prefill and one decode endpoint, both recorders) and a gateway in front of it. With
 * `epp: false` the gateway points at `eppAddress` (default: a closed port) instead, for fail-open and fail-closed.
 */
export async function startGatewayStack(
  options: {
    /** Gateway overrides, or a function of the recorders (e.g. to name one as the fallback endpoint). */
    gateway?: Partial<GatewayConfig> | ((result: { prefill: Recorder; decode: Recorder }) => Partial<GatewayConfig>);
    epp?: Partial<EppConfig> | false;
    eppAddress?: string;
  } = {},
): Promise<GatewayStack> {
  const prefill = await startRecorder();
  const decode = await startRecorder();
  let epp: EppHandle | undefined;
  if (options.epp !== false) {
    const specs = [
      spec('prefill-0', '127.0.0.1', 'prefill', {}, prefill.port),
      spec('decode-0', '127.0.0.1', 'decode', {}, decode.port),
    ];
    epp = await startEpp(loopbackEppConfig(PD_EPP_CONFIG, specs, options.epp), { random: seeded() });
  }
  const overrides = typeof options.gateway === 'function' ? options.gateway({ prefill, decode }) : options.gateway;
  const gateway = await startGateway(
    gatewayConfig({
      host: '127.0.0.1',
      port: 0,
      eppTls: false,
      epp: epp ? `127.0.0.1:${epp.grpcPort}` : (options.eppAddress ?? (await closedPort())),
      ...overrides,
    }),
  );
  return {
    epp,
    gateway,
    prefill,
    decode,
    async close() {
      await gateway.close(1_000);
      await epp?.close(1_000);
      await Promise.all([prefill.close(), decode.close()]);
    },
  };
}

/** A loopback address nothing listens on (bound, then released). */
export async function closedPort(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** An ext_proc server that fails every stream with INTERNAL at its first message: an EPP that is up but broken. */
export async function startFailingEpp(): Promise<{ address: string; close(): Promise<void> }> {
  const server = new grpc.Server();
  server.addService(extProcServiceDefinition(), {
    Process: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      call.once('data', () => call.emit('error', { code: grpc.status.INTERNAL, details: 'broken on purpose' }));
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, quantile) =>
      err ? reject(err) : resolve(quantile),
    ),
  );
  return { address: `127.0.0.1:${port}`, close: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

/** How a client saw one exchange through the gateway: status, headers, body text, and 'end' or the error that cut it. */
export interface ClientView {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  ending: string;
}

/**
 * POSTs a completion (`body`, JSON) to the gateway at `url`. `started` resolves with the first body bytes, `done` with
 * the client's view once the response ends or is cut; the whole exchange is bounded by `boundMs`.
 */
export function postCompletion(
  url: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
  boundMs = 30_000,
): { started: Promise<void>; done: Promise<ClientView> } {
  const u = new URL(url);
  let onStart!: () => void;
  const started = new Promise<void>((resolve) => (onStart = resolve));
  const done = new Promise<ClientView>((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: '/v1/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        timeout: boundMs,
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          onStart();
        });
        const view = (ending: string) => ({ status: res.statusCode!, headers: res.headers, text, ending });
        res.on('end', () => resolve(view('end')));
        res.on('error', (err) => resolve(view(err.message)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${boundMs} ms`)));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
  return { started, done };
}
