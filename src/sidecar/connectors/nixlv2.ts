/**
 * NIXL v2 (the default connector), llm-d's serial protocol: the prefill leg with max tokens 1 and
 * kv_transfer_params.do_remote_decode=true, then the client's request with the prefiller's kv_transfer_params to the
 * local vLLM, whose answer is streamed back with the prefiller's cached_tokens.
 *
 * Failures follow --prefill-failure-policy: `fail` relays the prefiller's error (connection failure 502, timeout 504,
 * malformed 2xx or a redirect 502; the messages never carry the prefiller's address, the log line does); `retry` also
 * retries connection errors and timeouts; `local` serves the request with local prefill on the decode vLLM after a
 * server-side prefill failure (4xx answers are the client's fault and are relayed in every mode).
 *
 * With --enable-p2p-pull (engines running MultiConnector(NixlConnector + OffloadingConnector)), a KV cache source
 * (x-kv-cache-source-host-port) adds a remote_kv_source pull to the prefill leg's kv_transfer_params. With
 * --decode-chunk-size, a chat decode runs chunked (chunked-decode.ts).
 */
import { KV_TRANSFER_PARAMS } from '../../common/pd-contract.js';
import { runChunkedDecode, chunkedDecodeApplies } from '../chunked-decode.js';
import { runDecode } from '../decode.js';
import { prefillPull } from '../kv-peer.js';
import { prefillRequest, timedPrefill } from '../legs.js';
import type { Connector } from '../pd-context.js';
import { afterPrefillFailure } from '../prefill-fallback.js';
import { cachedTokensOf, nixlDecodeBody, nixlDecodeBytes, nixlPrefillBody } from '../request-bodies.js';

export const nixlv2Connector: Connector = {
  name: 'nixlv2',
  async handle(ctx) {
    const prefill = await timedPrefill(
      ctx,
      prefillRequest(ctx, JSON.stringify(nixlPrefillBody(ctx.api, ctx.body, prefillPull(ctx))), 'kv-params'),
    );
    if (prefill.kind !== 'ok') return afterPrefillFailure(ctx, prefill);
    ctx.metrics.modes.inc({ connector: 'nixlv2', mode: 'disaggregated' });
    const kv = prefill.json[KV_TRANSFER_PARAMS];
    const decodeBody = nixlDecodeBytes(ctx.rawBody, ctx.body, kv);
    const step = { body: decodeBody, mode: 'disaggregated', rewriteCached: cachedTokensOf(prefill.json) } as const;
    if (chunkedDecodeApplies(ctx.config, ctx.api))
      return runChunkedDecode(ctx, { ...step, json: nixlDecodeBody(ctx.body, kv) });
    return runDecode(ctx, step);
  },
};
