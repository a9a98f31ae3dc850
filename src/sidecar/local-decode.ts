/**
 * A request without a prefill target that the sidecar must rewrite before the local vLLM sees it (the others go through
 * passthrough.ts byte for byte): a KV cache source to pull cached prefix from (x-kv-cache-source-host-port, with the
 * offloading connector or nixlv2 --enable-p2p-pull), or chunked decode. As upstream's decodeWithP2PSource: the
 * body's kv_transfer_params become `{remote_kv_source: {...}}` alone, unless the source is this rank's own endpoint
 * (nothing to pull from oneself); then the decode runs chunked when --decode-chunk-size applies.
 */
import { REMOTE_KV_SOURCE } from '../common/pd-contract.js';
import { runChunkedDecode, chunkedDecodeApplies } from './chunked-decode.js';
import { runDecode } from './decode.js';
import { p2pPeerParams } from './kv-peer.js';
import type { Outcome } from './metrics.js';
import type { DecodeContext } from './pd-context.js';
import { withKvParams } from './request-bodies.js';

/** Whether a local request needs the rewriting path (else it is passed through unchanged). */
export function localNeedsRewrite(ctx: Pick<DecodeContext, 'config' | 'api' | 'kvCacheSource'>): boolean {
  return ctx.kvCacheSource !== undefined || chunkedDecodeApplies(ctx.config, ctx.api);
}

export async function serveLocalDecode(ctx: DecodeContext): Promise<Outcome> {
  ctx.metrics.modes.inc({ connector: ctx.config.kvConnector, mode: 'local' });
  let json = ctx.body;
  let bytes: Buffer | string = ctx.rawBody;
  const source = ctx.kvCacheSource;
  if (source && source.hostPort !== ctx.selfHostPort) {
    const pull = p2pPeerParams(ctx.config, source);
    json = withKvParams(ctx.body, { [REMOTE_KV_SOURCE]: pull });
    bytes = JSON.stringify(json);
    ctx.log.logger.info(
      { source: source.hostPort, kv_request_id: pull.kv_request_id, p2p_connector_port: pull.remote_port },
      'running P2P source protocol',
    );
  }
  if (chunkedDecodeApplies(ctx.config, ctx.api)) return runChunkedDecode(ctx, { json, body: bytes, mode: 'local' });
  return runDecode(ctx, { body: bytes, mode: 'local' });
}
