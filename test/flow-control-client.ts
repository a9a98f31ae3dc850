/**
 * The client side of the flow-control tests (test/gateway/flow-control.test.ts, and the interop suite's
 * flow-control-objectives.test.ts against the real kube-apiserver): tagged requests through the gateway, a pool held by
 * "blockers" the simulator never answers, the EPP's queue gauges read in process, and the dispatch order read from the
 * simulator's request log. With one request in flight at a time that log is the order the EPP dispatched them, so the
 * assertions count dispatches, never time.
 */
import type { EppHandle } from '../src/epp/index.js';
import type { SimulatorHandle } from '../src/sim/index.js';
import { waitFor } from './helpers.js';

/** What a flow-control test drives: the gateway's URL, the EPP behind it and the simulator behind that. */
export interface FlowStack {
  readonly gatewayUrl: string;
  readonly epp: EppHandle;
  readonly sim: SimulatorHandle;
}

/** One answer: the request's tag, its status, the EPP's drop reason header, and the body. */
export interface Answer {
  tag: string;
  status: number;
  reason: string | null;
  body: string;
}

/**
 * One chat request tagged `tag` (x-test-tag) for fairness id `flow` and objective `objective` (none when empty),
 * bounded by `boundMs`. Marked handled at once, so a failed wait before it is awaited adds no unhandled rejection.
 */
export function send(
  stack: FlowStack,
  request: { tag: string; flow: string; objective?: string; signal?: AbortSignal },
  boundMs: number,
): Promise<Answer> {
  const answer = post(stack, request, boundMs);
  answer.catch(() => undefined);
  return answer;
}

async function post(
  stack: FlowStack,
  request: { tag: string; flow: string; objective?: string; signal?: AbortSignal },
  boundMs: number,
): Promise<Answer> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-gateway-inference-fairness-id': request.flow,
    'x-test-tag': request.tag,
  };
  if (request.objective) headers['x-gateway-inference-objective'] = request.objective;
  const bound = AbortSignal.timeout(boundMs);
  const res = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      model: 'sim-model',
      messages: [{ role: 'user', content: `hello ${request.tag}` }],
      max_tokens: 2,
    }),
    signal: request.signal ? AbortSignal.any([request.signal, bound]) : bound,
  });
  return {
    tag: request.tag,
    status: res.status,
    reason: res.headers.get('x-llm-d-request-dropped-reason'),
    body: await res.text(),
  };
}

/**
 * Sends `count` blockers the simulator holds (its hang fault, on for exactly the next `count` requests that reach it);
 * resolves once all are held there, so the EPP has them in flight and the pool is saturated. Aborting the returned
 * controller frees them.
 */
export async function block(stack: FlowStack, count: number, boundMs: number): Promise<AbortController> {
  let held = 0;
  Object.defineProperty(stack.sim.engine.faults, 'hang', {
    configurable: true,
    get: () => ++held <= count,
    set: () => undefined,
  });
  const controller = new AbortController();
  for (let i = 0; i < count; i++)
    void send(stack, { tag: `blocker${i}`, flow: 'blockers', signal: controller.signal }, boundMs);
  await waitFor(() => held >= count, boundMs, `${count} blockers held at the simulator`);
  return controller;
}

/** Requests of (fairness id, priority) in the EPP's queues, read in process (no /metrics scrape competing for CPU). */
export async function queued(epp: EppHandle, flow: string, priority: number | string): Promise<number> {
  const gauge = epp.metrics.registry.getSingleMetric('llm_d_epp_flow_control_queue_size');
  const values = gauge ? (await gauge.get()).values : [];
  return (
    values.find((sample) => sample.labels.fairness_id === flow && sample.labels.priority === String(priority))?.value ??
    0
  );
}

/** Tags in the order the simulator received them, blockers left out (a held request is not in its log anyway). */
export function arrivals(sim: SimulatorHandle, prefix = ''): string[] {
  return sim.engine
    .recentRequests()
    .map((record) => String(record.headers['x-test-tag']))
    .filter((tag) => !tag.startsWith('blocker') && tag.startsWith(prefix));
}
