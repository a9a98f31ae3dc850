/**
 * The closed-loop request pair of a P/D client without a sidecar, as autocannon request descriptors: the prefill
 * request (max tokens 1, do_remote_decode) to the simulator, then the client's request with the kv_transfer_params the
 * prefill returned. The operation's status is the decode's, or the prefill's when that failed. Used by bench/peers and
 * bench/sidecar-overhead to measure the same "direct" baseline the sidecar is compared with.
 */
type Ctx = Record<string, unknown>;

export function directPdRequests(options: {
  path: string;
  headers: Record<string, string>;
  /** The prefill leg's body (JSON text). */
  prefillBody: string;
  /** The client's request; the decode leg sends it with kv_transfer_params added. */
  body: Record<string, unknown>;
  /** Called as the operation starts (its first request is set up). */
  onStart: (ctx: Ctx) => void;
  /** Called when the operation ends: its status and response text (the prefill's when that failed). */
  onEnd: (status: number, text: string, ctx: Ctx) => void;
}): Array<Record<string, unknown>> {
  const { path, headers, prefillBody, body, onStart, onEnd } = options;
  return [
    {
      method: 'POST',
      path,
      headers,
      body: prefillBody,
      setupRequest: (req: Record<string, unknown>, ctx: Ctx) => {
        onStart(ctx);
        return req;
      },
      onResponse: (status: number, text: string, ctx: Ctx) => {
        ctx.prefillStatus = status;
        ctx.prefillText = text;
        try {
          ctx.kv = (JSON.parse(text) as { kv_transfer_params?: unknown }).kv_transfer_params;
        } catch {
          ctx.kv = null;
        }
      },
    },
    {
      method: 'POST',
      path,
      headers,
      setupRequest: (req: Record<string, unknown>, ctx: Ctx) => ({
        ...req,
        body: JSON.stringify({ ...body, kv_transfer_params: ctx.kv }),
      }),
      onResponse: (status: number, text: string, ctx: Ctx) =>
        ctx.prefillStatus === 200
          ? onEnd(status, text, ctx)
          : onEnd(ctx.prefillStatus as number, ctx.prefillText as string, ctx),
    },
  ];
}
