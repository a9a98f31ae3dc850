/**
 * SGLang: one body for both legs (the client's plus bootstrap_host, bootstrap_port, bootstrap_room), sent
 * concurrently; the decode engine pulls the KV cache from the prefill engine's bootstrap server, so the decode answer
 * can stream before the prefill answer is back (no +200ms as in routers that wait for it).
 *
 * Unlike upstream (fire-and-forget prefill whose failure the client never sees, while decode waits up to SGLang's 300s
 * bootstrap timeout), a failed prefill stops the decode leg and the client gets a 502 saying why (or an SSE error
 * event if the stream had started); a failed decode or a client that leaves stops the prefill leg.
 */
import { randomInt } from 'node:crypto';
import { runConcurrentLegs } from '../concurrent-legs.js';
import type { Connector } from '../pd-context.js';
import { sglangBody } from '../request-bodies.js';

/** A random room id below 2^53, so it survives JSON number handling on every side. */
export function bootstrapRoom(): number {
  return randomInt(0, 2 ** 47) * 64 + randomInt(0, 64);
}

export const sglangConnector: Connector = {
  name: 'sglang',
  handle(ctx) {
    const body = JSON.stringify(sglangBody(ctx.body, ctx.target.host, ctx.config.sglangBootstrapPort, bootstrapRoom()));
    // A bootstrap room is single-use: runConcurrentLegs never retries the prefill.
    return runConcurrentLegs(ctx, { prefillBody: body, decodeBody: body });
  },
};
