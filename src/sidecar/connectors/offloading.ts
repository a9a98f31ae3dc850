/**
 * offloading (vLLM's OffloadingConnector P2P tier), as llm-d-router ebab687 drives it: the prefiller stores the KV
 * blocks under a kv_request_id, the decoder pulls them from the prefiller's P2P tier; both legs go out at once
 * (concurrent-legs.ts: the connector parks blocks stored before the decoder's fetch binds the session).
 *
 * - prefill leg: the client's body, kv_transfer_params {remote_decoder: {kv_request_id}} (no peer address), plus
 *   remote_kv_source {kv_request_id (its own), remote_host, remote_port} when x-kv-cache-source-host-port names
 *   another pod to pull cached prefix from; max_tokens 1 (max_completion_tokens 1 when sent), stream false, no
 *   stream_options;
 * - decode leg: the client's body with kv_transfer_params {remote_prefiller: {kv_request_id, remote_host: <prefill
 *   host>, remote_port: <its P2P tier port>}}.
 */
import { randomUUID } from 'node:crypto';
import { KV_REQUEST_ID, REMOTE_DECODER, REMOTE_PREFILLER } from '../../common/pd-contract.js';
import { runConcurrentLegs } from '../concurrent-legs.js';
import { p2pPeerParams, prefillPull } from '../kv-peer.js';
import type { Connector } from '../pd-context.js';
import { singleTokenPrefillBody, withKvParams } from '../request-bodies.js';

export const offloadingConnector: Connector = {
  name: 'offloading',
  async handle(ctx) {
    const kvRequestId = randomUUID();
    const prefillBody = singleTokenPrefillBody(ctx.body, {
      [REMOTE_DECODER]: { [KV_REQUEST_ID]: kvRequestId },
      ...prefillPull(ctx),
    });
    const decodeBody = withKvParams(ctx.body, {
      [REMOTE_PREFILLER]: p2pPeerParams(ctx.config, ctx.target, kvRequestId),
    });
    return runConcurrentLegs(ctx, {
      prefillBody: JSON.stringify(prefillBody),
      decodeBody: JSON.stringify(decodeBody),
    });
  },
};
