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
import {
  ConfigError,
  closeWithDeadline,
  fastifyBaseOptions,
  hostPort,
  listen,
  renderMetrics,
  serverTls,
  silentLogger,
  startTracing,
  type TlsMaterial,
} from '../common/index.js';
import { extProcServingDefinition } from '../common/envoy/ext-proc-codec.js';
import { loadEndpointPickerConfig, type LoadedEndpointPickerConfig } from './config/loader.js';
import { startDiscovery } from './datalayer/discovery.js';
import {
  startInferenceCrdWatcher,
  type InferenceCrdWatcher,
  type RequestPolicies,
} from './datalayer/inference-crds.js';
import { EndpointStore } from './datalayer/endpoint-store.js';
import { MetricsScraper } from './datalayer/metrics-scraper.js';
import { FlowControlGate } from './flowcontrol/gate.js';
import { gateSettings, saturationDetector } from './flowcontrol/from-config.js';
import { flowControlMetrics, programAwareMetrics } from './metrics/flow-control.js';
import { ModelsPoller } from './datalayer/models-poller.js';
import { RequestDirector } from './director.js';
import { ExtProcStream } from './extproc/stream.js';
import { RequestBufferBudget } from './extproc/request-buffer-budget.js';
import { ConnectionStreamGuard } from './extproc/connection-stream-guard.js';
import { ConnectionKeepalive } from './extproc/connection-keepalive.js';
import { watchHttp2Sessions } from './extproc/http2-sessions.js';
import { healthClientConstructor, healthImplementation } from './health.js';
import { EppMetrics } from './metrics.js';
import { kubeClientSettings, type EppConfig } from './options.js';
import { IdentityProvider } from './tls-provider.js';
import { startControlPlaneFeatures, type ControlPlaneFeatures } from './ha/index.js';

/** A running EPP: its ports, metrics, endpoints and config, and close(). */
export interface EppHandle {
  readonly grpcPort: number;
  readonly healthPort: number;
  readonly metricsPort: number;
  readonly store: EndpointStore;
  readonly config: LoadedEndpointPickerConfig;
  readonly metrics: EppMetrics;
  /** The serving certificate (PEM) when --secure-serving is on. */
  readonly certificate?: string;
  /** The pool's InferenceModelRewrites and InferenceObjectives (with --pool-name only). */
  readonly crds?: InferenceCrdWatcher;
  /** Discovery synced (and the pool's CRDs listed), not draining, and the leader (with leader election). */
  ready(): boolean;
  /** Leader election and /metrics auth, when enabled. */
  readonly controlPlane: ControlPlaneFeatures;
  close(deadlineMs?: number): Promise<void>;
}

/** What startEpp takes besides the options: a logger, and the pieces tests replace. */
export interface StartEppOptions {
  logger?: Logger;
  /** Random source for pickers and header-only routing (deterministic tests). */
  random?: () => number;
  /** Rewrites and objective priorities without Kubernetes (in-process stacks); the CRD watcher's when --pool-name is set. */
  requestPolicies?: RequestPolicies;
}

/**
 * The EndpointPickerConfig text: --config-text, else --config-file read up to --max-config-size (a larger file is
 * refused before it is parsed: YAML parsing costs about a second of CPU per MiB), else '' (llm-d's default config). An
 * empty file is an error: a mounted ConfigMap that lost its data must not silently run a non-P/D default.
 */
async function configText(optionValues: EppConfig): Promise<string> {
  const tooLarge = (what: string) =>
    new ConfigError(`${what} is larger than --max-config-size (${optionValues.maxConfigSize} bytes)`);
  if (optionValues.configText) {
    if (Buffer.byteLength(optionValues.configText) > optionValues.maxConfigSize) throw tooLarge('--config-text');
    return optionValues.configText;
  }
  if (!optionValues.configFile) return '';
  let text: string;
  try {
    const file = await open(optionValues.configFile, 'r');
    try {
      // One byte more than allowed tells a file at the limit from a larger one, without reading the rest.
      const buf = Buffer.alloc(optionValues.maxConfigSize + 1);
      let n = 0;
      for (let r = 1; r > 0 && n < buf.length; n += r) r = (await file.read(buf, n, buf.length - n, null)).bytesRead;
      if (n > optionValues.maxConfigSize) throw tooLarge(`--config-file ${optionValues.configFile}`);
      text = buf.toString('utf8', 0, n);
    } finally {
      await file.close();
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(
      `cannot read --config-file ${optionValues.configFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (text.trim() === '')
    throw new ConfigError(
      `--config-file ${optionValues.configFile} is empty; give an EndpointPickerConfig (or no --config-file for llm-d's default single-profile config)`,
    );
  return text;
}

function bindGrpc(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/** Starts the EPP: loads the config, starts discovery and scraping, serves ext_proc, health and metrics. */
export async function startEpp(optionValues: EppConfig, opts: StartEppOptions = {}): Promise<EppHandle> {
  const logger = opts.logger ?? silentLogger();
  const metrics = new EppMetrics(undefined, optionValues.metricsFamily);
  const config = loadEndpointPickerConfig(applyConfigParams(await configText(optionValues), optionValues.configParam), {
    metrics,
    logger,
    random: opts.random,
  });
  const store = new EndpointStore();
  store.on('removed', (endpoint) => {
    for (const p of config.endpointRemoved) p.endpointRemoved(endpoint.id);
  });
  metrics.registerPoolGauges(optionValues.poolName || 'epp', () => {
    const now = Date.now();
    return store.all().map((endpoint) => ({
      name: endpoint.name,
      waiting: endpoint.metrics.waitingQueueSize,
      running: endpoint.metrics.runningRequests,
      kv: endpoint.metrics.kvCacheUsage,
      fresh:
        endpoint.metrics.updatedAt > 0 && now - endpoint.metrics.updatedAt <= optionValues.metricsStalenessThreshold,
    }));
  });

  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  // llm-d-router's service name and scope; the counters sit with the EPP's other extensions (llm_d_epp_extproc_*).
  const tracing = await startTracing(optionValues, {
    serviceName: 'llm-d-epp',
    scope: 'llm-d-router/pkg/epp/handlers',
    metricPrefix: 'llm_d_epp',
    registry: metrics.registry,
    logger,
  });
  // Last out: spans of the requests drained before it are still exported.
  cleanups.push(() => tracing.shutdown(Math.min(optionValues.tracingExportTimeout, 5_000)));
  // Flow control (the flowControl feature gate): requests wait while the saturation detector says the pool is full.
  const gate = config.flowControl.enabled
    ? new FlowControlGate(
        gateSettings(config.flowControl, optionValues, () =>
          programAwareMetrics(metrics.registry, optionValues.metricsFamily),
        ),
        saturationDetector(config.flowControl, () => store.all()),
        flowControlMetrics(metrics.registry, optionValues.metricsFamily, optionValues.poolName || 'epp'),
      )
    : undefined;
  try {
    // Plugins with sockets or timers (precise prefix cache: KV-event subscribers) start before discovery, so they see
    // every endpoint join.
    const runtime = {
      pool: store,
      logger,
      limits: {
        kvIndexMaxEntries: optionValues.kvIndexMaxEntries,
        kvEventsMaxMessageSize: optionValues.kvEventsMaxMessageSize,
        kvEventsMaxMessageRate: optionValues.kvEventsMaxMessageRate,
        kvEventsReceiveHwm: optionValues.kvEventsReceiveHwm,
        kvEventsRequired: optionValues.kvEventsRequired,
        tokenizerCacheTokens: optionValues.tokenizerCacheTokens,
      },
    };
    for (const plugin of config.lifecycle) {
      cleanups.push(() => plugin.close());
      await plugin.start(runtime);
    }
    const discovery = await startDiscovery(optionValues, config.discovery, store, metrics, logger);
    cleanups.push(() => discovery.stop());
    if (config.metricsSource) {
      const scraper = new MetricsScraper(
        store,
        {
          source: config.metricsSource,
          engines: config.metricsEngines,
          intervalMs: optionValues.refreshMetricsInterval,
          timeoutMs: optionValues.metricsScrapeTimeout,
          stalenessMs: optionValues.metricsStalenessThreshold,
          maxResponseBytes: optionValues.maxMetricsResponseSize,
          onUpdate: gate && (() => gate.pump()),
        },
        metrics,
        logger,
      );
      scraper.start();
      cleanups.push(() => scraper.stop());
    }
    if (config.modelsSource) {
      const poller = new ModelsPoller(
        store,
        {
          source: config.modelsSource,
          intervalMs: optionValues.refreshMetricsInterval,
          timeoutMs: optionValues.metricsScrapeTimeout,
          maxResponseBytes: optionValues.maxMetricsResponseSize,
        },
        metrics,
        logger,
      );
      poller.start();
      cleanups.push(() => poller.stop());
    }

    // As llm-d-router: the CRD reconcilers run with an InferencePool, not in selector or file mode.
    let crds: InferenceCrdWatcher | undefined;
    if (optionValues.poolName) {
      const pool = {
        namespace: optionValues.poolNamespace || 'default',
        name: optionValues.poolName,
        group: optionValues.poolGroup,
        kube: kubeClientSettings(optionValues),
      };
      const watcher = startInferenceCrdWatcher(pool, logger, {
        random: opts.random,
        onConfiguredModels: (models) => metrics.pinModelNames(models),
      });
      cleanups.push(() => watcher.stop());
      crds = watcher;
    }
    // Leader election and /metrics auth; followers run discovery and scraping too, so a takeover starts warm.
    const controlPlane = startControlPlaneFeatures(optionValues, logger, metrics.registry);
    cleanups.push(() => controlPlane.stop());

    let draining = false;
    const ready = () =>
      store.synced &&
      (crds?.ready() ?? true) &&
      !draining &&
      controlPlane.notServingReason() === undefined &&
      config.lifecycle.every((plugin) => plugin.ready?.() ?? true);
    const director = new RequestDirector(config, store, metrics, logger, crds ?? opts.requestPolicies);
    const maxMessage = Math.max(optionValues.maxRequestBodySize, optionValues.maxResponseBodyBuffer) + 1024 * 1024;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': maxMessage,
    });
    const settings = {
      maxRequestBodyBytes: optionValues.maxRequestBodySize,
      maxResponseBodyBytes: optionValues.maxResponseBodyBuffer,
      idleTimeoutMs: optionValues.streamIdleTimeout,
      requestBodyTimeoutMs: optionValues.requestBodyTimeout,
      budget: new RequestBufferBudget(optionValues.requestBufferBudget, metrics.requestBufferBytes),
      decisionHeader: optionValues.decisionHeader,
    };
    // The EPP's own keepalive, not grpc-js's (connection-keepalive.ts says why).
    watchHttp2Sessions(server, [
      new ConnectionStreamGuard(
        { burst: optionValues.connectionStreamBurst, ratePerSecond: optionValues.connectionStreamRate },
        metrics,
        logger,
      ),
      new ConnectionKeepalive(
        { timeMs: optionValues.grpcKeepaliveTime, timeoutMs: optionValues.grpcKeepaliveTimeout },
        metrics,
        logger,
      ),
    ]);
    server.addService(extProcServingDefinition(), {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- messages decoded from the ext_proc proto at run time; ExtProcStream types what it reads
      Process: (call: grpc.ServerDuplexStream<any, any>) =>
        new ExtProcStream(call, {
          director,
          metrics,
          logger,
          settings,
          admission: () => controlPlane.followerRejection(),
          gate,
          tracing,
        }),
    });
    let credentials = grpc.ServerCredentials.createInsecure();
    let certificate: string | undefined;
    if (optionValues.secureServing) {
      const provider = new IdentityProvider();
      const tls = await serverTls(optionValues.certPath, logger, (tlsMaterial: TlsMaterial) =>
        provider.update(tlsMaterial),
      );
      provider.update(tls.material);
      certificate = tls.material.cert;
      cleanups.push(() => tls.close());
      credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, null, false);
    }
    cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
    const grpcPort = await bindGrpc(server, hostPort(optionValues.host, optionValues.grpcPort), credentials);

    const health = new grpc.Server();
    health.addService(
      healthClientConstructor().service,
      healthImplementation(ready, () => !draining, optionValues.haEnableLeaderElection),
    );
    cleanups.push(() => health.forceShutdown());
    const healthPort = await bindGrpc(
      health,
      hostPort(optionValues.host, optionValues.grpcHealthPort),
      grpc.ServerCredentials.createInsecure(),
    );

    const app = Fastify(fastifyBaseOptions({ logger, bodyLimit: 1024 }));
    const auth = controlPlane.metricsAuth;
    app.get('/metrics', async (req, reply) => {
      if (auth) {
        const outcome = await auth.check(req.headers.authorization, req.method, '/metrics');
        if (outcome.status !== 200)
          return reply
            .code(outcome.status)
            .type('text/plain; charset=utf-8')
            .header('x-content-type-options', 'nosniff')
            .send(`${outcome.message}\n`);
      }
      const { contentType, body } = await renderMetrics([metrics.registry]);
      return reply.type(contentType).send(body);
    });
    cleanups.push(() => closeWithDeadline(app, 1000));
    const metricsPort = await listen(app, optionValues.host, optionValues.metricsPort);

    logger.info(
      {
        grpcPort,
        healthPort,
        metricsPort,
        tls: optionValues.secureServing,
        discovery: discovery.description,
        profiles: [...config.profiles.keys()],
        leaderElection: controlPlane.elector ? controlPlane.elector.lease : false,
        metricsAuth: auth !== undefined,
      },
      'epp listening',
    );
    let closing: Promise<void> | undefined;
    return {
      grpcPort,
      healthPort,
      metricsPort,
      store,
      config,
      metrics,
      certificate,
      crds,
      ready,
      controlPlane,
      close(deadlineMs = 5_000) {
        closing ??= (async () => {
          draining = true;
          // The Lease goes first and at once (ReleaseOnCancel), so a follower takes over while our streams drain; from
          // here on this replica routes nothing new (isLeader() is false).
          const released = controlPlane.elector?.release();
          // Queued requests get 503 rejected-shutting-down at once rather than waiting out the drain.
          gate?.close();
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
          await released;
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
