/**
 * The OffloadingConnector P2P tier (llm-d-router ebab687 connector_p2p.go): where a KV pull goes. The EPP names the pod
 * holding the most cached prefix blocks in x-kv-cache-source-host-port; the sidecar turns it into a `remote_kv_source`
 * block ({kv_request_id, remote_host, remote_port}) on the leg that computes the prompt: the prefill leg under P/D, the
 * local request without one. The port is the peer's P2P tier (--p2p-connector-port), offset by the peer's
 * data-parallel rank, read from its serving port as upstream does.
 *
 * The header is used only when the tier exists (--kv-connector=offloading, or nixlv2 with --enable-p2p-pull), names a
 * valid host:port, and passes the SSRF allowlist; otherwise it is ignored (logged), as upstream.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { parseTarget, type Target } from '../common/index.js';
import { KV_REQUEST_ID, REMOTE_KV_SOURCE } from '../common/pd-contract.js';
import type { JsonObject } from '../common/json.js';
import type { SidecarConfig } from './options.js';
import type { PdContext } from './pd-context.js';
import type { TargetGuard } from './ssrf-guard.js';

type P2pConfig = Pick<
  SidecarConfig,
  'kvConnector' | 'enableP2pPull' | 'p2pConnectorPort' | 'dataParallelSize' | 'port'
>;

/** Whether the engines have a P2P tier to pull cached prefix from. */
export function p2pPullAvailable(config: P2pConfig): boolean {
  return config.kvConnector === 'offloading' || (config.enableP2pPull && config.kvConnector === 'nixlv2');
}

/**
 * The P2P tier port of `target`: --p2p-connector-port plus the rank its serving port encodes (port - --port), when
 * that rank is in range; the base port otherwise, with one rank, or when --port is 0 (nothing to derive from).
 */
export function p2pPortFor(config: P2pConfig, target: Target): number {
  const base = config.p2pConnectorPort;
  if (config.dataParallelSize <= 1 || config.port === 0) return base;
  const rank = target.port - config.port;
  return rank >= 0 && rank < config.dataParallelSize ? base + rank : base;
}

/** A `remote_kv_source` (or `remote_prefiller`) block naming `peer`'s P2P tier, with a fresh kv_request_id. */
export function p2pPeerParams(config: P2pConfig, peer: Target, kvRequestId: string = randomUUID()): JsonObject {
  return { [KV_REQUEST_ID]: kvRequestId, remote_host: peer.host, remote_port: p2pPortFor(config, peer) };
}

/** The validated x-kv-cache-source-host-port, or undefined when absent or ignored (the reason is logged). */
export function kvCacheSourceOf(
  value: string | undefined,
  config: P2pConfig,
  guard: TargetGuard,
  logger: () => Logger,
): Target | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (!p2pPullAvailable(config)) {
    logger().debug(
      { connector: config.kvConnector },
      'ignoring KV cache source header: connector does not support P2P pulls',
    );
    return undefined;
  }
  const target = parseTarget(v);
  if (!target) {
    logger().info({ value: v.slice(0, 256) }, 'ignoring malformed KV cache source header');
    return undefined;
  }
  if (!guard.allowed(target.host, target.port)) {
    logger().info({ target: target.hostPort }, 'SSRF protection: KV cache source not in allowlist, ignoring');
    return undefined;
  }
  return target;
}

/**
 * The remote_kv_source pull a prefill leg carries (offloading; nixlv2 with --enable-p2p-pull): none without a source,
 * or when the source is the prefiller itself (nothing to pull from oneself), as upstream's addP2PPullToPrefill.
 */
export function prefillPull(ctx: PdContext): JsonObject | undefined {
  const source = ctx.kvCacheSource;
  if (!source || source.hostPort === ctx.target.hostPort) return undefined;
  return { [REMOTE_KV_SOURCE]: p2pPeerParams(ctx.config, source) };
}
