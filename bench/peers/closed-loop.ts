/**
 * One closed-loop run of the P/D operation with autocannon (in this process, on CPU 0): `concurrency` connections, each
 * sending its next operation as soon as the last one ends. Two ways to do the operation:
 *   direct  — as a client without a sidecar would: the prefill request (max tokens 1, do_remote_decode) to the
 *             simulator, then the original request with the returned kv_transfer_params;
 *   sidecar — the original request to a sidecar with x-prefiller-host-port naming the simulator.
 * Latency is per operation (both legs in direct mode). The measured window opens once every connection has had its
 * first answer (at least `warmupS` in, at most `warmupMaxS`), lasts `durationS`, and only operations started inside
 * it count (as bench/sidecar-overhead, whose notes explain why). The load goes on after the window until every
 * operation started inside it has ended (at least `cooldownS`, at most `drainMaxS`): stopping at a fixed time would
 * drop the slowest ones, which under saturation are most of them. One still open then counts as an error.
 */
import autocannon from 'autocannon';
import { nixlPrefillBody } from '../../src/sidecar/index.js';
import { directPdRequests } from '../common/pd-client.js';

export interface LoopTiming {
  durationS: number;
  warmupS: number;
  warmupMaxS: number;
  cooldownS: number;
  /** Longest wait after the window for its operations to end (default 35 s: autocannon's request timeout is 30 s). */
  drainMaxS?: number;
}

export interface LoopResult {
  /** Operations started in the window, with their latencies (ms, sorted). */
  latencies: number[];
  /** Operations completed over the whole run (for CPU per operation). */
  allOps: number;
  errors: number;
  /** Operations started in the window still open when the drain bound ran out (counted in errors too). */
  unfinished: number;
  /** Connections that had answered when the window opened. */
  connectionsUp: number;
  /** Sample of a failed operation's status and body. */
  errorSample?: string;
}

const PROMPT = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
export const MODEL = 'bench-model';

/** The client's request: chat, 200-word prompt, 16 output tokens (as bench/sidecar-overhead), streamed or not. */
export function clientBody(stream: boolean): Record<string, unknown> {
  return {
    model: MODEL,
    messages: [{ role: 'user', content: PROMPT }],
    max_tokens: 16,
    ignore_eos: true,
    ...(stream ? { stream: true } : {}),
  };
}

const HEADERS = { 'content-type': 'application/json' };

export async function closedLoop(
  target: { kind: 'direct' } | { kind: 'sidecar'; url: string },
  simUrl: string,
  stream: boolean,
  concurrency: number,
  timing: LoopTiming,
): Promise<LoopResult> {
  const body = clientBody(stream);
  const prefillBody = JSON.stringify(nixlPrefillBody('chat', body));
  const simHostPort = simUrl.replace('http://', '');
  const latencies: number[] = [];
  let errors = 0;
  let allOps = 0;
  let errorSample: string | undefined;
  const now = () => performance.now();
  let windowStart = Infinity;
  let windowEnd = Infinity;
  /** Operations started in the window and not ended yet. */
  let open = 0;
  let onDrained: (() => void) | undefined;
  const finish = (status: number, text: string, ctx: Record<string, unknown>) => {
    allOps++;
    if (!ctx.inWindow) return;
    ctx.inWindow = false;
    open--;
    if (open === 0 && now() >= windowEnd) onDrained?.();
    const t0 = ctx.t0 as number;
    if (status !== 200) {
      errors++;
      errorSample ??= `${status} ${text.slice(0, 300)}`;
      return;
    }
    latencies.push(now() - t0);
  };
  const start = (req: Record<string, unknown>, ctx: Record<string, unknown>) => {
    const startedAt = now();
    ctx.t0 = startedAt;
    ctx.inWindow = startedAt >= windowStart && startedAt < windowEnd;
    if (ctx.inWindow) open++;
    return req;
  };
  const requests =
    target.kind === 'direct'
      ? directPdRequests({
          path: '/v1/chat/completions',
          headers: HEADERS,
          prefillBody,
          body,
          onStart: (ctx) => start({}, ctx),
          onEnd: finish,
        })
      : [
          {
            method: 'POST',
            path: '/v1/chat/completions',
            headers: { ...HEADERS, 'x-prefiller-host-port': simHostPort },
            body: JSON.stringify(body),
            setupRequest: start,
            onResponse: (status: number, text: string, ctx: Record<string, unknown>) => finish(status, text, ctx),
          },
        ];
  const url = target.kind === 'direct' ? simUrl : target.url;
  const t0 = now();
  const answered = new Set<unknown>();
  let connectionsUp = 0;
  const timers: NodeJS.Timeout[] = [];
  const instance = autocannon({
    url,
    connections: concurrency,
    duration: timing.warmupMaxS + timing.durationS + (timing.drainMaxS ?? 35) + 5,
    requests: requests,
    timeout: 30,
  });
  let unfinished = 0;
  const openWindow = () => {
    if (windowStart !== Infinity) return;
    windowStart = now();
    windowEnd = windowStart + timing.durationS * 1000;
    connectionsUp = answered.size;
    timers.push(
      setTimeout(
        () => {
          // Keep the load on until the window's operations have ended, within the drain bound.
          const stop = () => {
            onDrained = undefined;
            clearTimeout(bound);
            unfinished = open;
            instance.stop();
          };
          const bound = setTimeout(stop, Math.max(0, (timing.drainMaxS ?? 35) - timing.cooldownS) * 1000);
          if (open === 0) stop();
          else onDrained = stop;
        },
        (timing.durationS + timing.cooldownS) * 1000,
      ),
    );
  };
  void instance.on('response', (client: unknown) => {
    if (windowStart !== Infinity) return;
    answered.add(client);
    if (answered.size >= concurrency && now() - t0 >= timing.warmupS * 1000) openWindow();
  });
  timers.push(setTimeout(() => answered.size >= concurrency && openWindow(), timing.warmupS * 1000));
  timers.push(setTimeout(openWindow, timing.warmupMaxS * 1000));
  const r = await instance;
  for (const x of timers) clearTimeout(x);
  latencies.sort((left, right) => left - right);
  return {
    latencies,
    allOps,
    errors: errors + r.errors + r.timeouts + unfinished,
    unfinished,
    connectionsUp,
    errorSample,
  };
}
