/**
 * Mooncake (vLLM's MooncakeConnector), as llm-d-router ebab687 drives it: the prefiller's engine ids come from its
 * bootstrap server (mooncake-bootstrap.ts, cached); one data-parallel rank is picked at random (upstream: Go's map
 * order) to spread load; both legs carry one transfer_id ("xfer-<uuid>") and go out at once (concurrent-legs.ts).
 *
 * - prefill leg: the client's body, kv_transfer_params {do_remote_prefill: false, do_remote_decode: true,
 *   transfer_id}, max_tokens 1 (max_completion_tokens 1 when sent), stream false, no stream_options, and the header
 *   X-data-parallel-rank: <rank>, so the KV lands on the engine the decoder pulls from;
 * - decode leg: the client's body with kv_transfer_params {do_remote_prefill: true, do_remote_decode: false,
 *   transfer_id, remote_bootstrap_addr: "http://<prefill host>:<port>", remote_engine_id: <the rank's engine id>}.
 *
 * A failed bootstrap query is a 502 before either leg is sent.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { DATA_PARALLEL_RANK, REMOTE_BOOTSTRAP_ADDR, TRANSFER_ID } from '../../common/pd-contract.js';
import { runConcurrentLegs } from '../concurrent-legs.js';
import { answerBootstrapFailure } from '../failures.js';
import { bootstrapAddr, mooncakeEngines } from '../mooncake-bootstrap.js';
import type { Connector } from '../pd-context.js';
import { singleTokenPrefillBody, withKvParams } from '../request-bodies.js';

export const mooncakeConnector: Connector = {
  name: 'mooncake',
  async handle(ctx) {
    const engines = await mooncakeEngines(ctx);
    if (!engines.ok) return answerBootstrapFailure(ctx, engines);
    const [rank, engineId] = engines.engines[randomInt(0, engines.engines.length)];
    const transferId = `xfer-${randomUUID()}`;
    const prefillBody = singleTokenPrefillBody(ctx.body, {
      do_remote_prefill: false,
      do_remote_decode: true,
      [TRANSFER_ID]: transferId,
    });
    const decodeBody = withKvParams(ctx.body, {
      do_remote_prefill: true,
      do_remote_decode: false,
      [TRANSFER_ID]: transferId,
      [REMOTE_BOOTSTRAP_ADDR]: bootstrapAddr(ctx),
      remote_engine_id: engineId,
    });
    return runConcurrentLegs(ctx, {
      prefillBody: JSON.stringify(prefillBody),
      decodeBody: JSON.stringify(decodeBody),
      prefillHeaders: { [DATA_PARALLEL_RANK]: rank },
    });
  },
};
