/**
 * The EPP's Kubernetes control-plane features beside discovery: leader election (--ha-enable-leader-election) and
 * /metrics authentication (--metrics-endpoint-auth). Built from the EPP's flags; both are optional.
 */
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { ConfigError } from '../../common/index.js';
import { loadKubeConfig } from '../../common/kubernetes/index.js';
import { InferenceError } from '../framework/errors.js';
import { kubeClientSettings, type EppConfig } from '../options.js';
import { LeaseElector } from './lease-elector.js';
import { MetricsAuthorizer } from './metrics-auth.js';

export { LeaseElector, type LeaseElectorSettings } from './lease-elector.js';
export { MetricsAuthorizer, type AuthOutcome } from './metrics-auth.js';

/** GAIE's Lease name (pkg/epp/server/controller_manager.go); llm-d-router ebab687 names it `epp-<ns>-<name>.llm-d.ai`. */
export function upstreamLeaseName(namespace: string, name: string): string {
  return `epp-${namespace}-${name}.gateway-api-inference-extension.sigs.k8s.io`;
}

/**
 * The Lease name, as upstream derives it: from the pool, or with --endpoint-selector from $POD_NAME's Deployment name
 * (`<deployment>-<replicaset hash>-<suffix>`); --ha-lease-name overrides both.
 */
export function leaseNameFor(optionValues: EppConfig, podName = process.env.POD_NAME ?? ''): string {
  if (optionValues.haLeaseName) return optionValues.haLeaseName;
  const namespace = optionValues.poolNamespace || 'default';
  if (optionValues.poolName) return upstreamLeaseName(namespace, optionValues.poolName);
  if (optionValues.endpointSelector) {
    const m = /^(.+)-[a-z0-9]+-[a-z0-9]+$/.exec(podName);
    if (!m)
      throw new ConfigError(
        `--ha-enable-leader-election with --endpoint-selector names the Lease after $POD_NAME's Deployment, but POD_NAME is ${podName ? `"${podName}", not <deployment>-<hash>-<suffix>` : 'not set'}; set POD_NAME or --ha-lease-name`,
      );
    return upstreamLeaseName(namespace, m[1]);
  }
  throw new ConfigError(
    '--ha-enable-leader-election needs a Lease name: give --pool-name, --endpoint-selector with $POD_NAME, or --ha-lease-name',
  );
}

/** The EPP talks to the Kubernetes API (discovery or leader election), so /metrics auth applies by default. */
export function usesKubernetes(optionValues: EppConfig): boolean {
  return Boolean(optionValues.poolName || optionValues.endpointSelector || optionValues.haEnableLeaderElection);
}

export interface ControlPlaneFeatures {
  elector?: LeaseElector;
  metricsAuth?: MetricsAuthorizer;
  /** Why this replica may not serve now (not the leader, auth cannot review), or undefined. */
  notServingReason(): string | undefined;
  /** The ext_proc answer of a replica that is not the leader, or undefined on the leader (or without election). */
  followerRejection(): InferenceError | undefined;
  stop(): Promise<void>;
}

/**
 * controller-runtime's `leader_election_master_status{name=<lease>}` (1 on the leader, 0 on a follower), which
 * upstream's EPP serves on /metrics; read at scrape time, so it never lags the elector.
 */
function leaderGauge(registry: Registry, elector: LeaseElector): void {
  const name = elector.settings.name;
  new Gauge({
    name: 'leader_election_master_status',
    help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
    labelNames: ['name'],
    registers: [registry],
    collect() {
      this.set({ name }, elector.isLeader() ? 1 : 0);
    },
  });
}

export function startControlPlaneFeatures(
  optionValues: EppConfig,
  logger: Logger,
  registry?: Registry,
): ControlPlaneFeatures {
  let elector: LeaseElector | undefined;
  let metricsAuth: MetricsAuthorizer | undefined;
  const authOn =
    optionValues.metricsEndpointAuth && (usesKubernetes(optionValues) || optionValues.metricsEndpointAuthAlways);
  if (optionValues.haEnableLeaderElection || authOn) {
    const kc = loadKubeConfig(kubeClientSettings(optionValues));
    if (optionValues.haEnableLeaderElection) {
      elector = new LeaseElector(
        kc,
        {
          namespace: optionValues.poolNamespace || 'default',
          name: leaseNameFor(optionValues),
          leaseDurationMs: optionValues.haLeaseDuration,
          renewDeadlineMs: optionValues.haRenewDeadline,
          retryPeriodMs: optionValues.haRetryPeriod,
        },
        logger,
      );
    }
    if (authOn)
      metricsAuth = new MetricsAuthorizer(
        kc,
        {
          cacheTtlMs: optionValues.metricsAuthCacheTtl,
          cacheSize: optionValues.metricsAuthCacheSize,
          timeoutMs: optionValues.metricsAuthTimeout,
        },
        logger,
      );
  }
  if (optionValues.metricsEndpointAuth && !authOn)
    logger.info(
      'metrics endpoint auth is off: the EPP reads an endpoints file and has no Kubernetes API (--metrics-endpoint-auth-always to require tokens anyway)',
    );
  if (elector && registry) leaderGauge(registry, elector);
  elector?.start();
  metricsAuth?.start();
  return {
    elector,
    metricsAuth,
    // /metrics auth does not gate readiness: GAIE's chart with its default values turns auth on but grants the
    // reviews only with Prometheus monitoring enabled, and upstream's EPP is ready there (its /metrics answers 500).
    // A missing permission is logged by name and retried; scrapes get 500 until it is granted.
    notServingReason() {
      if (elector && !elector.isLeader())
        return elector.problem() ?? `not the leader (leader: ${elector.leader() || 'none'})`;
      return undefined;
    },
    followerRejection() {
      if (!elector || elector.isLeader()) return undefined;
      const leader = elector.leader();
      return new InferenceError(
        'ServiceUnavailable',
        `this EPP replica is not the leader${leader ? ` (the leader is ${leader})` : ' (no leader yet)'}`,
        'rejected-not-leader',
      );
    },
    async stop() {
      metricsAuth?.stop();
      await elector?.stop();
    },
  };
}
