/**
 * Flow-control priority benchmark: a high-priority objective's TTFT while a low-priority flood at twice the pool's
 * capacity is queued and shed, against its unloaded TTFT, through the gateway, the EPP (flowControl gate,
 * concurrency-detector at the simulator's max-num-seqs) and a step-engine simulator; and the same flood without flow
 * control. Timing ratios live here rather than in tests because a loaded 2-core CI machine cannot make them
 * deterministic. Bounded in count and time.
 *
 *   npm run build && node dist/bench/flow-control/main.js [--high 200] [--flood-seconds 60] [--engine step|request]
 *     [--holdback 0.75]
 *
 * Prints a second table with where each high-priority request's time went (gateway and EPP to the gate, queue wait
 * in the gate, gate to simulator, simulator to first token) and the process's event-loop delay.
 *
 * Target (issue 17): high-priority TTFT p99 under the flood within 2x its unloaded p99.
 */
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { eppConfig, startEpp } from '../../src/epp/index.js';
import { FlowControlGate } from '../../src/epp/flowcontrol/gate.js';
import { gatewayConfig, startGateway } from '../../src/gateway/index.js';
import { simConfig, startSimulator } from '../../src/sim/index.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
function text(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const HIGH = Math.min(flag('high', 200), 1000);
/** Upper bound of the flood; it runs until the last high-priority request is answered. */
const FLOOD_SECONDS = Math.min(flag('flood-seconds', 60), 120);
/** `step`: vLLM-like steps (prefills serialise and stall decodes); `request`: each request sleeps its own latencies. */
const ENGINE = text('engine', 'step') === 'request' ? 'request' : 'step';
/** priority-holdback-policy minCeiling for the low band (0: upstream's default static ceiling 1). */
const HOLDBACK = flag('holdback', 0);
const SEQS = 4;
const TTFT_MS = 100;
const ITL_MS = 10;
const TOKENS = 4;
// The pool's throughput: the request engine serves SEQS requests per TTFT + TOKENS x ITL; the step engine serialises
// prefills (one prefill step of TTFT_MS, plus an ITL of the decodes sharing it, per request).
const CAPACITY_PER_SECOND =
  ENGINE === 'request' ? (SEQS * 1000) / (TTFT_MS + TOKENS * ITL_MS) : 1000 / (TTFT_MS + ITL_MS);

const config = (gate: boolean) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [${gate ? 'flowControl' : ''}]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: ${SEQS}}}
${HOLDBACK > 0 ? `- {name: hold, type: priority-holdback-policy, parameters: {minCeiling: ${HOLDBACK}}}\n` : ''}schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  defaultRequestTTL: 2s
  saturationDetector: {pluginRef: sat}
  priorityBands: [{priority: 10}, {priority: -1, maxRequests: 16}]
${HOLDBACK > 0 ? '  usageLimitPolicyPluginRef: hold\n' : ''}`;

interface Answer {
  status: number;
  reason: string;
  ttftMs: number;
}

/**
 * Where one high-priority request's time goes (the high requests are sequential, so at most one is in flight): sent by
 * the client, admitted by the EPP's flow-control gate (gateway + ext_proc + parse), dispatched by the gate (queue
 * wait), received by the simulator (scheduling, routing, gateway to simulator), first token at the client (simulator
 * prefill and the way back). Date.now() throughout (the simulator records its arrival time in ms).
 */
interface Timeline {
  id?: string;
  sent: number;
  admitted?: number;
  dispatched?: number;
  queued?: boolean;
  first?: number;
  sim?: number;
}
let current: Timeline | undefined;
const timelines: Timeline[] = [];
const simArrival = new Map<string, number>();

// The gate's admit/resume, observed for priority-10 requests only (bench instrumentation, not a behaviour change).
// eslint-disable-next-line @typescript-eslint/unbound-method -- called with .call(this) below
const admit = FlowControlGate.prototype.admit;
FlowControlGate.prototype.admit = function (this: FlowControlGate, req, resume) {
  const t = req.priority === 10 ? current : undefined;
  if (t) t.admitted = Date.now();
  const ticket = admit.call(this, req, (err) => {
    if (t && !err) t.dispatched = Date.now();
    resume(err);
  });
  if (t) {
    t.queued = ticket !== undefined;
    if (!ticket) t.dispatched = t.admitted;
  }
  return ticket;
};

let serial = 0;
/** The first answer body of each 5xx status and of client errors: what produced them (printed at the end). */
const errorSamples = new Map<string, string>();

async function send(url: string, objective: string, timeline?: Timeline): Promise<Answer> {
  const t0 = performance.now();
  const id = `${objective}-${++serial}`;
  if (timeline) {
    timeline.id = id;
    timeline.sent = Date.now();
  }
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-gateway-inference-objective': objective,
        'x-gateway-inference-fairness-id': objective,
        'x-bench-id': id,
      },
      body: JSON.stringify({
        model: 'sim-model',
        messages: [{ role: 'user', content: `hello ${id}` }],
        max_tokens: TOKENS,
        stream: true,
        ignore_eos: true,
      }),
      signal: AbortSignal.timeout(30_000),
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let seen = '';
    let ttftMs = -1;
    for (;;) {
      const { done, value } = (await reader.read()) as { done: boolean; value: Uint8Array | undefined };
      // The first token is the first delta with content (the simulator sends the role chunk at once).
      if (ttftMs < 0 && value) {
        seen += decoder.decode(value, { stream: true });
        if (seen.includes('"content"')) {
          ttftMs = performance.now() - t0;
          if (timeline) timeline.first = Date.now();
        }
      }
      if (done) break;
    }
    if (ttftMs < 0) ttftMs = performance.now() - t0;
    if (res.status >= 500 && !errorSamples.has(String(res.status)))
      errorSamples.set(String(res.status), seen.slice(0, 300));
    return { status: res.status, reason: res.headers.get('x-llm-d-request-dropped-reason') ?? '', ttftMs };
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause;
    const what = `${(err as Error).name}: ${(err as Error).message}${cause ? ` (${cause.message})` : ''}`;
    if (!errorSamples.has(what)) errorSamples.set(what, '');
    return { status: 0, reason: 'client-error', ttftMs: performance.now() - t0 };
  }
}

const pct = (xs: number[], quantile: number) => {
  const s = [...xs].sort((left, right) => left - right);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((quantile / 100) * s.length) - 1)] : NaN;
};

interface RunResult {
  high: number[];
  low: Map<string, number>;
  timelines: Timeline[];
  loopDelayMs: { p50: number; p99: number; max: number };
}

async function run(gate: boolean, flood: boolean): Promise<RunResult> {
  timelines.length = 0;
  simArrival.clear();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const sim = await startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      engineModel: ENGINE,
      maxNumSeqs: SEQS,
      latencyCalculator: 'constant',
      timeToFirstToken: TTFT_MS,
      // The step engine's prefill cost (it ignores timeToFirstToken): TTFT_MS per request.
      prefillOverhead: TTFT_MS,
      interTokenLatency: ITL_MS,
      enableKvcache: false,
      recordRequests: 100_000,
    }),
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-fc-bench-'));
  const file = path.join(dir, 'endpoints.yaml');
  writeFileSync(
    file,
    `endpoints:\n- name: sim-0\n  namespace: default\n  address: "127.0.0.1"\n  port: "${sim.port}"\n  labels: {}\n`,
  );
  const epp = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      endpointsFile: file,
      configText: config(gate),
    }),
    {
      requestPolicies: {
        rewrite: () => undefined,
        priority: (text) => (text === 'high' ? 10 : text === 'low' ? -1 : 0),
      },
    },
  );
  const gateway = await startGateway(
    gatewayConfig({ host: '127.0.0.1', port: 0, eppTls: false, epp: `127.0.0.1:${epp.grpcPort}` }),
  );
  const low = new Map<string, number>();
  let stop = false;
  const floods: Array<Promise<void>> = [];
  if (flood) {
    // Open loop at twice the pool's throughput.
    const perSecond = 2 * CAPACITY_PER_SECOND;
    const t0 = performance.now();
    let sent = 0;
    floods.push(
      (async () => {
        const inflight: Array<Promise<void>> = [];
        while (!stop && performance.now() - t0 < FLOOD_SECONDS * 1000) {
          while (sent < ((performance.now() - t0) / 1000) * perSecond) {
            sent++;
            inflight.push(
              send(gateway.url, 'low').then(
                (answer) =>
                  void low.set(
                    `${answer.status} ${answer.reason}`.trim(),
                    (low.get(`${answer.status} ${answer.reason}`.trim()) ?? 0) + 1,
                  ),
              ),
            );
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await Promise.all(inflight);
      })(),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const high: number[] = [];
  loop.enable();
  for (let i = 0; i < HIGH; i++) {
    current = { sent: 0 };
    const t = current;
    const a = await send(gateway.url, 'high', t);
    current = undefined;
    if (a.status === 200) {
      high.push(a.ttftMs);
      timelines.push(t);
    } else low.set(`high ${a.status} ${a.reason}`, (low.get(`high ${a.status} ${a.reason}`) ?? 0) + 1);
  }
  loop.disable();
  stop = true;
  await Promise.all(floods);
  for (const r of sim.engine.recentRequests()) {
    const id = r.headers['x-bench-id'];
    if (typeof id === 'string' && id.startsWith('high-')) simArrival.set(id, Date.parse(r.receivedAt));
  }
  for (const t of timelines) t.sim = t.id === undefined ? undefined : simArrival.get(t.id);
  await gateway.close(1000);
  await epp.close(1000);
  await sim.close(1000);
  const ns = (nanos: number) => nanos / 1e6;
  return {
    high,
    low,
    timelines: [...timelines],
    loopDelayMs: { p50: ns(loop.percentile(50)), p99: ns(loop.percentile(99)), max: ns(loop.max) },
  };
}

console.log(
  `node ${process.version}, ${os.cpus().length} CPUs, load average ${os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')}`,
);
console.log(
  `simulator: ${ENGINE} engine, max-num-seqs ${SEQS}, ${ENGINE === 'step' ? 'prefill' : 'TTFT'} ${TTFT_MS} ms, ITL ${ITL_MS} ms, ${TOKENS} tokens; EPP concurrency-detector maxConcurrency ${SEQS}; low band maxRequests 16, TTL 2s; usage limit ${HOLDBACK > 0 ? `priority-holdback-policy minCeiling ${HOLDBACK} (low band ceiling)` : 'static 1.0 (upstream default)'}`,
);
console.log(
  `${HIGH} sequential high-priority (10) streaming requests; low-priority (-1) flood open-loop at 2x capacity (${(2 * CAPACITY_PER_SECOND).toFixed(1)}/s)\n`,
);
console.log('| run | high TTFT p50 | p90 | p99 | p99 / unloaded p99 | low-priority outcomes |');
console.log('|---|---:|---:|---:|---:|---|');
const unloaded = await run(true, false);
const base = pct(unloaded.high, 99);
const row = (name: string, result: RunResult) =>
  console.log(
    `| ${name} | ${pct(result.high, 50).toFixed(0)} ms | ${pct(result.high, 90).toFixed(0)} ms | ${pct(result.high, 99).toFixed(0)} ms | ${(pct(result.high, 99) / base).toFixed(2)} | ${[...result.low].map(([flow, count]) => `${flow}: ${count}`).join(', ') || '-'} |`,
  );
row('unloaded, flow control on', unloaded);
const on = await run(true, true);
row('low flood, flow control on', on);
const off = await run(false, true);
row('low flood, flow control off', off);

// Where a high-priority request's time goes, by stage, p50 / p90 / max over the run's successful high requests.
console.log('\nHigh-priority request time by stage (ms, p50 / p90 / max); event-loop delay of the one process\n');
console.log(
  '| run | queued | client to EPP gate | gate queue wait | gate to simulator | simulator to first token | event-loop delay p50 / p99 / max |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|');
const stage = (xs: number[]) =>
  xs.length ? `${pct(xs, 50).toFixed(0)} / ${pct(xs, 90).toFixed(0)} / ${Math.max(...xs).toFixed(0)}` : '-';
const stages = (name: string, result: RunResult) => {
  const ts = result.timelines;
  const pick = (measure: (line: Timeline) => number | undefined) =>
    ts.map(measure).filter((value): value is number => value !== undefined && Number.isFinite(value));
  console.log(
    `| ${name} | ${ts.filter((line) => line.queued).length} of ${ts.length} | ${stage(pick((line) => (line.admitted ?? NaN) - line.sent))} | ${stage(
      pick((line) => (line.dispatched ?? NaN) - (line.admitted ?? NaN)),
    )} | ${stage(pick((line) => (line.sim ?? NaN) - (line.dispatched ?? NaN)))} | ${stage(
      pick((line) => (line.first ?? NaN) - (line.sim ?? NaN)),
    )} | ${result.loopDelayMs.p50.toFixed(0)} / ${result.loopDelayMs.p99.toFixed(0)} / ${result.loopDelayMs.max.toFixed(0)} |`,
  );
};
stages('unloaded, flow control on', unloaded);
stages('low flood, flow control on', on);
stages('low flood, flow control off', off);

if (errorSamples.size > 0) {
  console.log('\nFirst answer of each 5xx status and each client error seen\n');
  for (const [what, body] of errorSamples) console.log(`- ${what}${body ? `: \`${body.replace(/\s+/g, ' ')}\`` : ''}`);
}
