/**
 * Starts an EPP in-process: loads the EndpointPickerConfig, starts discovery and metrics scraping, and serves
 * ext_proc (TLS by default), gRPC health and Prometheus metrics. `close()` drains: health turns NOT_SERVING, open
 * streams may finish until the deadline, then everything is closed.
 */
import { open } from 'node:fs/promises';
import { applyConfigParams } from './config/config-params.js';
import * as grpc from '@grpc/grpc-js';
import Fastify from 'fastify';
import type { Logger } from 'pino';
import { ConfigError, closeWithDeadline, fastifyBaseOptions, hostPort, listen, renderMetrics, serverTls, silentLogger, type TlsMaterial } from '../common/index.js';
import { extProcServiceDefinition } from '../common/envoy/ext-proc.js';
import { loadEndpointPickerConfig, type LoadedEndpointPickerConfig } from './config/loader.js';
import { startDiscovery } from './datalayer/discovery.js';
import { EndpointStore } from './datalayer/endpoint-store.js';
import { MetricsScraper } from './datalayer/metrics-scraper.js';
import { RequestDirector } from './director.js';
import { ExtProcStream } from './extproc/stream.js';
import { RequestBufferBudget } from './extproc/request-buffer-budget.js';
import { ConnectionStreamGuard } from './extproc/connection-stream-guard.js';
import { healthClientConstructor, healthImplementation } from './health.js';
import { EppMetrics } from './metrics.js';
import type { EppConfig } from './options.js';
import { IdentityProvider } from './tls-provider.js';

export interface EppHandle {
  readonly grpcPort: number;
  readonly healthPort: number;
  readonly metricsPort: number;
  readonly store: EndpointStore;
  readonly config: LoadedEndpointPickerConfig;
  readonly metrics: EppMetrics;
  /** The serving certificate (PEM) when --secure-serving is on. */
  readonly certificate?: string;
  /** Discovery synced and not draining. */
  ready(): boolean;
  close(deadlineMs?: number): Promise<void>;
}

export interface StartEppOptions {
  logger?: Logger;
  /** Random source for pickers and header-only routing (deterministic tests). */
  random?: () => number;
}

/**
 * The EndpointPickerConfig text: --config-text, else --config-file read up to --max-config-size (a larger file is
 * refused before it is parsed: YAML parsing costs about a second of CPU per MiB), else '' (llm-d's default config). An
 * empty file is an error: a mounted ConfigMap that lost its data must not silently run a non-P/D default.
 */
async function configText(o: EppConfig): Promise<string> {
  const tooLarge = (what: string) => new ConfigError(`${what} is larger than --max-config-size (${o.maxConfigSize} bytes)`);
  if (o.configText) {
    if (Buffer.byteLength(o.configText) > o.maxConfigSize) throw tooLarge('--config-text');
    return o.configText;
  }
  if (!o.configFile) return '';
  let text: string;
  try {
    const file = await open(o.configFile, 'r');
    try {
      // One byte more than allowed tells a file at the limit from a larger one, without reading the rest.
      const buf = Buffer.alloc(o.maxConfigSize + 1);
      let n = 0;
      for (let r = 1; r > 0 && n < buf.length; n += r) r = (await file.read(buf, n, buf.length - n, null)).bytesRead;
      if (n > o.maxConfigSize) throw tooLarge(`--config-file ${o.configFile}`);
      text = buf.toString('utf8', 0, n);
    } finally {
      await file.close();
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cannot read --config-file ${o.configFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (text.trim() === '') throw new ConfigError(`--config-file ${o.configFile} is empty; give an EndpointPickerConfig (or no --config-file for llm-d's default single-profile config)`);
  return text;
}

function bindGrpc(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
}

export async function startEpp(o: EppConfig, opts: StartEppOptions = {}): Promise<EppHandle> {
  const logger = opts.logger ?? silentLogger();
  const metrics = new EppMetrics(undefined, o.metricsFamily);
  const config = loadEndpointPickerConfig(applyConfigParams(await configText(o), o.configParam), { metrics, logger, random: opts.random });
  const store = new EndpointStore();
  store.on('removed', (e) => {
    for (const p of config.endpointRemoved) p.endpointRemoved(e.id);
  });
  metrics.registerPoolGauges(o.poolName || 'epp', () => {
    const now = Date.now();
    return store.all().map((e) => ({
      name: e.name,
      waiting: e.metrics.waitingQueueSize,
      running: e.metrics.runningRequests,
      kv: e.metrics.kvCacheUsage,
      fresh: e.metrics.updatedAt > 0 && now - e.metrics.updatedAt <= o.metricsStalenessThreshold,
    }));
  });

  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  try {
    // Plugins with sockets or timers (precise prefix cache: KV-event subscribers) start before discovery, so they see
    // every endpoint join.
    const runtime = {
      pool: store,
      logger,
      limits: {
        kvIndexMaxEntries: o.kvIndexMaxEntries,
        kvEventsMaxMessageSize: o.kvEventsMaxMessageSize,
        kvEventsMaxMessageRate: o.kvEventsMaxMessageRate,
        kvEventsReceiveHwm: o.kvEventsReceiveHwm,
        kvEventsRequired: o.kvEventsRequired,
        tokenizerCacheTokens: o.tokenizerCacheTokens,
      },
    };
    for (const p of config.lifecycle) {
      cleanups.push(() => p.close());
      await p.start(runtime);
    }
    const discovery = await startDiscovery(o, config, store, metrics, logger);
    cleanups.push(() => discovery.stop());
    if (config.metricsSource) {
      const scraper = new MetricsScraper(
        store,
        { source: config.metricsSource, engines: config.metricsEngines, intervalMs: o.refreshMetricsInterval, timeoutMs: o.metricsScrapeTimeout, stalenessMs: o.metricsStalenessThreshold, maxResponseBytes: o.maxMetricsResponseSize },
        metrics,
        logger,
      );
      scraper.start();
      cleanups.push(() => scraper.stop());
    }

    let draining = false;
    const ready = () => store.synced && !draining && config.lifecycle.every((p) => p.ready?.() ?? true);
    const director = new RequestDirector(config, store, metrics, logger);
    const maxMessage = Math.max(o.maxRequestBodySize, o.maxResponseBodyBuffer) + 1024 * 1024;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': maxMessage,
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    const settings = {
      maxRequestBodyBytes: o.maxRequestBodySize,
      maxResponseBodyBytes: o.maxResponseBodyBuffer,
      idleTimeoutMs: o.streamIdleTimeout,
      requestBodyTimeoutMs: o.requestBodyTimeout,
      budget: new RequestBufferBudget(o.requestBufferBudget, metrics.requestBufferBytes),
      decisionHeader: o.decisionHeader,
    };
    new ConnectionStreamGuard({ burst: o.connectionStreamBurst, ratePerSecond: o.connectionStreamRate }, metrics, logger).attach(server);
    server.addService(extProcServiceDefinition(), {
      Process: (call: grpc.ServerDuplexStream<any, any>) => new ExtProcStream(call, { director, metrics, logger, settings }),
    });
    let credentials = grpc.ServerCredentials.createInsecure();
    let certificate: string | undefined;
    if (o.secureServing) {
      const provider = new IdentityProvider();
      const tls = await serverTls(o.certPath, logger, (m: TlsMaterial) => provider.update(m));
      provider.update(tls.material);
      certificate = tls.material.cert;
      cleanups.push(() => tls.close());
      credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, null, false);
    }
    cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
    const grpcPort = await bindGrpc(server, hostPort(o.host, o.grpcPort), credentials);

    const health = new grpc.Server();
    health.addService(healthClientConstructor().service, healthImplementation(ready));
    cleanups.push(() => void health.forceShutdown());
    const healthPort = await bindGrpc(health, hostPort(o.host, o.grpcHealthPort), grpc.ServerCredentials.createInsecure());

    const app = Fastify(fastifyBaseOptions({ logger, bodyLimit: 1024 }));
    app.get('/metrics', async (_req, reply) => {
      const { contentType, body } = await renderMetrics([metrics.registry]);
      return reply.type(contentType).send(body);
    });
    cleanups.push(() => closeWithDeadline(app, 1000));
    const metricsPort = await listen(app, o.host, o.metricsPort);

    logger.info({ grpcPort, healthPort, metricsPort, tls: o.secureServing, discovery: discovery.description, profiles: [...config.profiles.keys()] }, 'epp listening');
    let closing: Promise<void> | undefined;
    return {
      grpcPort,
      healthPort,
      metricsPort,
      store,
      config,
      metrics,
      certificate,
      ready,
      close(deadlineMs = 5_000) {
        closing ??= (async () => {
          draining = true;
          // Open streams (requests in flight) may finish until the deadline; then they are cut.
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
            new Promise<void>((resolve) => {
              timer = setTimeout(() => {
                server.forceShutdown();
                resolve();
              }, deadlineMs);
            }),
          ]);
          clearTimeout(timer);
          await cleanup();
        })();
        return closing;
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
