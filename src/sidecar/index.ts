/** Decode-pod routing sidecar: `pd-router sidecar`. */
import {
  closeWithDeadline,
  dialableHost,
  fastifyBaseOptions,
  hostPort,
  listen,
  renderMetrics,
  serverTls,
  type ListeningApp,
  silentLogger,
  startTracing,
  type Logger,
} from '../common/index.js';
import { SidecarMetrics } from './metrics.js';
import type { SidecarConfig } from './options.js';
import { buildSidecarServer, type SidecarRank } from './server.js';
import { InferencePoolAllowlist, StaticAllowlist, allowAll, type TargetGuard } from './ssrf-guard.js';
import { UpstreamAgents } from './upstream.js';

export { sidecarCommand, sidecarOptions, sidecarConfig, type SidecarConfig } from './options.js';
export { sidecarUpstream } from './upstream-flags.js';
export { SidecarMetrics } from './metrics.js';
export { SseCachedTokensRewriter, rewriteJsonBody } from './cached-tokens-rewriter.js';
export { nixlPrefillBody, nixlDecodeBody } from './request-bodies.js';
export { parseTarget } from '../common/index.js';

/** A running sidecar: its ports (one per rank), metrics, guard, and close(). */
export interface SidecarHandle {
  /** Listening ports, one per data-parallel rank. */
  ports: number[];
  /** Base URL of rank 0. */
  url: string;
  metricsPort?: number;
  metrics: SidecarMetrics;
  guard: TargetGuard;
  close(deadlineMs?: number): Promise<void>;
}

/**
 * The metrics port's fastify instance without fastify's JSON-schema compilers: its one route has no schema, and the
 * default compilers load ajv, ajv-formats, fast-uri and fast-json-stringify (~100 modules, ~5 MB). A schema added
 * later fails loudly instead of going unchecked.
 */
const NO_SCHEMA_COMPILERS = {
  schemaController: { compilersFactory: { buildValidator: noSchemaCompilers, buildSerializer: noSchemaCompilers } },
};
function noSchemaCompilers(): never {
  throw new Error('the sidecar compiles no JSON schemas');
}

async function buildGuard(optionValues: SidecarConfig, logger: Logger): Promise<TargetGuard> {
  if (!optionValues.enableSsrfProtection) return allowAll;
  if (optionValues.ssrfAllowlist.length > 0 || optionValues.ssrfAllowlistFile)
    return new StaticAllowlist(optionValues.ssrfAllowlist, optionValues.ssrfAllowlistFile, logger);
  const guard = await InferencePoolAllowlist.create(
    optionValues.inferencePool,
    optionValues.poolGroup,
    {
      server: optionValues.kubeApiServer || undefined,
      kubeconfig: optionValues.kubeconfig || undefined,
      requestTimeoutMs: optionValues.kubeApiTimeout,
      maxResponseBytes: optionValues.kubeMaxResponseSize,
    },
    logger,
  );
  guard.start(optionValues.ssrfSyncTimeout);
  return guard;
}

/** Starts the sidecar: one HTTP server per data-parallel rank, the SSRF guard, the upstream agents. */
export async function startSidecar(config: SidecarConfig, logger: Logger = silentLogger()): Promise<SidecarHandle> {
  const metrics = new SidecarMetrics();
  // First: a bad allowlist file is a configuration error (exit 2), with nothing opened yet.
  const guard = await buildGuard(config, logger);
  // ebab687's service name and instrumentation scope (v0.7.1: llm-d-inference-scheduler for both).
  const tracing = await startTracing(config, {
    serviceName: 'llm-d-disagg-sidecar',
    scope: 'llm-d-router/pkg/sidecar/proxy',
    metricPrefix: 'pd_router_sidecar',
    registry: metrics.registry,
    logger,
  });
  const agents = new UpstreamAgents({
    enableTls: config.enableTls,
    tlsInsecureSkipVerify: config.tlsInsecureSkipVerify,
    maxConnsPerHost: config.maxIdleConnsPerHost,
  });
  const apps: ListeningApp[] = [];
  const ports: number[] = [];
  let stopTls: () => void = () => undefined;
  try {
    let tls: { key: string; cert: string } | undefined;
    if (config.secureProxy) {
      const t = await serverTls(config.certPath, logger, (tlsMaterial) => {
        for (const app of apps)
          // eslint-disable-next-line no-restricted-syntax -- buildSidecarServer made an https server, typed as the http.Server it also is
          (app.server as unknown as import('node:tls').Server).setSecureContext({
            key: tlsMaterial.key,
            cert: tlsMaterial.cert,
          });
      });
      tls = t.material;
      stopTls = t.close;
    }
    const decoderScheme = agents.scheme('decoder');
    const decoderOrigin = (rank: number) =>
      `${decoderScheme}://${hostPort(config.modelServerHost, config.modelServerPort + rank)}`;
    const dpRoutes = new Map<string, string>();
    for (let rank = 0; rank < config.dataParallelSize; rank++) {
      const rankInfo: SidecarRank = {
        rank,
        config,
        decoderOrigin: decoderOrigin(rank),
        dataParallelRoutes: rank === 0 && config.dataParallelSize > 1 ? dpRoutes : undefined,
        agents,
        metrics,
        guard,
        logger: config.dataParallelSize > 1 ? logger.child({ rank }) : logger,
        tracing,
      };
      const app = buildSidecarServer(rankInfo, tls);
      apps.push(app);
      const port = await listen(app, config.host, config.port === 0 ? 0 : config.port + rank);
      ports.push(port);
      rankInfo.port = port;
      if (config.podIp) dpRoutes.set(hostPort(config.podIp, port), rankInfo.decoderOrigin);
    }
    let metricsPort: number | undefined;
    if (config.metricsPort > 0) {
      // The separate metrics port (off by default) is still a fastify instance, loaded only when it is asked for.
      const { default: Fastify } = await import('fastify');
      const m = Fastify({ ...fastifyBaseOptions({ logger, bodyLimit: 1024 }), ...NO_SCHEMA_COMPILERS });
      m.get('/metrics', async (_req, reply) => {
        const { contentType, body } = await renderMetrics([metrics.registry]);
        return reply.header('content-type', contentType).send(body);
      });
      apps.push(m);
      metricsPort = await listen(m, config.host, config.metricsPort);
    }
    const scheme = config.secureProxy ? 'https' : 'http';
    let closed: Promise<void> | undefined;
    const host = dialableHost(config.host);
    return {
      ports,
      url: `${scheme}://${hostPort(host, ports[0])}`,
      metricsPort,
      metrics,
      guard,
      close: (deadlineMs = 5_000) =>
        // Idempotent: a second call waits for the first.
        (closed ??= (async () => {
          await Promise.all(apps.map((instance) => closeWithDeadline(instance, deadlineMs)));
          stopTls();
          await guard.close();
          await agents.close();
          await tracing.shutdown(deadlineMs);
        })()),
    };
  } catch (e) {
    await Promise.all(apps.map((instance) => instance.close()));
    stopTls();
    await guard.close();
    await agents.close();
    await tracing.shutdown(0);
    throw e;
  }
}
