/** Development/test stand-in for Envoy: `pd-router gateway`. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import Fastify from 'fastify';
import type { Readable } from 'node:stream';
import { Agent } from 'undici';
import {
  Cancellation,
  closeWithDeadline,
  dialableHost,
  fastifyBaseOptions,
  hostPort,
  listen,
  renderMetrics,
  silentLogger,
  startTracing,
  traceparentOf,
  failSpan,
  type Logger,
  type Span,
  type Tracing,
} from '../common/index.js';
import { extProcClientConstructor } from '../common/envoy/ext-proc.js';
import type { ExtProcSession } from './ext-proc-session.js';
import { EppReplicas } from './epp-replicas.js';
import { GatewayMetrics } from './metrics.js';
import { eppAddresses, type GatewayConfig } from './options.js';
import { proxyExchange } from './proxy.js';

export { gatewayCommand, gatewayOptions, gatewayConfig, type GatewayConfig } from './options.js';
export { GatewayMetrics } from './metrics.js';

/** A running gateway: its URL, metrics, and close(). */
export interface GatewayHandle {
  url: string;
  port: number;
  metrics: GatewayMetrics;
  close(deadlineMs?: number): Promise<void>;
}

/** Starts the gateway: an HTTP proxy that asks the EPP over ext_proc where each request goes. */
export async function startGateway(config: GatewayConfig, logger: Logger = silentLogger()): Promise<GatewayHandle> {
  const metrics = new GatewayMetrics();
  const tracing = await startTracing(config, {
    serviceName: 'pd-router-gateway',
    scope: 'pd-router/gateway',
    metricPrefix: 'pd_router_gateway',
    registry: metrics.registry,
    logger,
  });
  const credentials = config.eppTls
    ? grpc.credentials.createSsl(
        null,
        null,
        null,
        config.eppTlsInsecureSkipVerify
          ? { checkServerIdentity: () => undefined, rejectUnauthorized: false }
          : undefined,
      )
    : grpc.credentials.createInsecure();
  const Client = extProcClientConstructor();
  const addresses = eppAddresses(config.epp);
  const clients = addresses.map(
    (address) =>
      // eslint-disable-next-line no-restricted-syntax -- the client is built from the ext_proc proto at run time; ExtProcSession names the one method it calls
      new Client(address, credentials, {
        // Reconnect quickly after an EPP restart; requests in between go to another replica, or fail open or closed.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2000,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      }) as unknown as ConstructorParameters<typeof ExtProcSession>[0],
  );
  const epps = new EppReplicas(addresses, clients, config.eppMessageTimeout);
  const agent = new Agent({
    connect: { timeout: config.upstreamConnectTimeout },
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 4_000,
  });
  let fallbackIndex = 0;
  const app = Fastify(fastifyBaseOptions({ logger, bodyLimit: config.maxRequestBodySize }));
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  app.get('/gateway/metrics', async (_req, reply) => {
    const { contentType, body } = await renderMetrics([metrics.registry]);
    return reply.header('content-type', contentType).send(body);
  });
  // The same for every exchange.
  const deps = {
    config,
    agent,
    metrics,
    epps,
    nextFallback: () =>
      config.fallbackEndpoints.length === 0
        ? undefined
        : config.fallbackEndpoints[fallbackIndex++ % config.fallbackEndpoints.length],
  };
  const handler = async (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    reply.hijack();
    const res = reply.raw;
    const clientGone = new Cancellation();
    res.once('close', () => {
      if (!res.writableFinished) clientGone.abort();
    });
    // As Envoy with tracing: one span per request, continuing the client's traceparent; the EPP and the upstream
    // see this span as their parent.
    const span = tracing.enabled ? startExchangeSpan(tracing, request) : undefined;
    const status = await proxyExchange(
      {
        method: request.method,
        url: request.url,
        headers: span ? { ...request.headers, traceparent: traceparentOf(span) } : request.headers,
        body: request.body as Readable | undefined,
        res,
        signal: clientGone,
        logger: request.log as Logger,
      },
      deps,
    ).catch((err: unknown) => {
      request.log.error({ err }, 'gateway exchange failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end('internal gateway error');
      else res.destroy();
      return 500;
    });
    metrics.requests.inc({ code: String(status) });
    if (span) endExchangeSpan(span, status);
  };
  app.all('/*', handler);
  app.all('/', handler);
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    // Expect: 100-continue, answered as Envoy does: the final status at once when the declared body is too large
    // (the client then never sends it), else 100 Continue and on as any request (the header is not passed on).
    const declared = Number(req.headers['content-length']);
    if (declared > config.maxRequestBodySize) {
      const body = `request body exceeds ${config.maxRequestBodySize} bytes`;
      res
        .writeHead(413, {
          'content-type': 'text/plain',
          'content-length': Buffer.byteLength(body),
          connection: 'close',
        })
        .end(body);
      metrics.requests.inc({ code: '413' });
      return;
    }
    res.writeContinue();
    app.server.emit('request', req, res);
  });
  const port = await listen(app, config.host, config.port);
  const host = dialableHost(config.host);
  return {
    url: `http://${hostPort(host, port)}`,
    port,
    metrics,
    close: async (deadlineMs = 5_000) => {
      await closeWithDeadline(app, deadlineMs);
      epps.close();
      await agent.close();
      await tracing.shutdown(deadlineMs);
    },
  };
}

function startExchangeSpan(tracing: Tracing, request: import('fastify').FastifyRequest): Span {
  const { traceparent, tracestate } = request.headers;
  return tracing.start(
    'pd_router.gateway.request',
    typeof traceparent === 'string' ? traceparent : undefined,
    'server',
    { 'http.request.method': request.method, 'url.path': request.url.split('?')[0] },
    { tracestate: typeof tracestate === 'string' ? tracestate : undefined },
  );
}

function endExchangeSpan(span: Span, status: number): void {
  span.setAttribute('http.response.status_code', status);
  if (status === 0 || status >= 500) failSpan(span, status === 0 ? 'client gone' : `status ${status}`);
  span.end();
}
