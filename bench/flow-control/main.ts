/**
 * Flow-control priority benchmark: a high-priority objective's TTFT while a low-priority flood at twice the pool's
 * capacity is queued and shed, against its unloaded TTFT, through the gateway, the EPP (flowControl gate,
 * concurrency-detector at the simulator's max-num-seqs) and a step-engine simulator; and the same flood without flow
 * control. Timing ratios live here rather than in tests because a loaded 2-core CI machine cannot make them
 * deterministic. Bounded in count and time.
 *
 *   npm run build && node dist/bench/flow-control/main.js [--high 60] [--flood-seconds 8]
 *
 * Target (issue 17): high-priority TTFT p99 under the flood within 2x its unloaded p99.
 */
import os from 'node:os';
import { eppConfig, startEpp } from '../../src/epp/index.js';
import { gatewayConfig, startGateway } from '../../src/gateway/index.js';
import { simConfig, startSimulator } from '../../src/sim/index.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const HIGH = Math.min(flag('high', 60), 1000);
const FLOOD_SECONDS = Math.min(flag('flood-seconds', 8), 60);
const SEQS = 4;
const TTFT_MS = 100;
const ITL_MS = 10;
const TOKENS = 4;

const config = (gate: boolean) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [${gate ? 'flowControl' : ''}]
plugins:
- {type: queue-scorer}
- {type: max-score-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: ${SEQS}}}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
flowControl:
  defaultRequestTTL: 2s
  saturationDetector: {pluginRef: sat}
  defaultNegativePriorityBand: {maxRequests: 16}
`;

interface Answer {
  status: number;
  reason: string;
  ttftMs: number;
}

let serial = 0;

async function send(url: string, objective: string): Promise<Answer> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-gateway-inference-objective': objective,
        'x-gateway-inference-fairness-id': objective,
      },
      body: JSON.stringify({
        model: 'sim-model',
        messages: [{ role: 'user', content: `hello ${objective} ${++serial}` }],
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
        if (seen.includes('"content"')) ttftMs = performance.now() - t0;
      }
      if (done) break;
    }
    if (ttftMs < 0) ttftMs = performance.now() - t0;
    return { status: res.status, reason: res.headers.get('x-llm-d-request-dropped-reason') ?? '', ttftMs };
  } catch {
    return { status: 0, reason: 'client-error', ttftMs: performance.now() - t0 };
  }
}

const pct = (xs: number[], quantile: number) => {
  const s = [...xs].sort((left, right) => left - right);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((quantile / 100) * s.length) - 1)] : NaN;
};

async function run(gate: boolean, flood: boolean): Promise<{ high: number[]; low: Map<string, number> }> {
  const sim = await startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      engineModel: 'step',
      maxNumSeqs: SEQS,
      latencyCalculator: 'constant',
      timeToFirstToken: TTFT_MS,
      interTokenLatency: ITL_MS,
      enableKvcache: false,
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
    // Open loop at twice the pool's throughput: SEQS requests per (TTFT + tokens x ITL), doubled.
    const perSecond = (2 * SEQS * 1000) / (TTFT_MS + TOKENS * ITL_MS);
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
  for (let i = 0; i < HIGH; i++) {
    const a = await send(gateway.url, 'high');
    if (a.status === 200) high.push(a.ttftMs);
    else low.set(`high ${a.status} ${a.reason}`, (low.get(`high ${a.status} ${a.reason}`) ?? 0) + 1);
  }
  stop = true;
  await Promise.all(floods);
  await gateway.close(1000);
  await epp.close(1000);
  await sim.close(1000);
  return { high, low };
}

console.log(
  `node ${process.version}, ${os.cpus().length} CPUs, load average ${os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')}`,
);
console.log(
  `simulator: step engine, max-num-seqs ${SEQS}, TTFT ${TTFT_MS} ms, ITL ${ITL_MS} ms, ${TOKENS} tokens; EPP concurrency-detector maxConcurrency ${SEQS}; low band maxRequests 16, TTL 2s`,
);
console.log(
  `${HIGH} sequential high-priority (10) streaming requests; low-priority (-1) flood open-loop at 2x capacity\n`,
);
console.log('| run | high TTFT p50 | p90 | p99 | p99 / unloaded p99 | low-priority outcomes |');
console.log('|---|---:|---:|---:|---:|---|');
const unloaded = await run(true, false);
const base = pct(unloaded.high, 99);
const row = (name: string, result: { high: number[]; low: Map<string, number> }) =>
  console.log(
    `| ${name} | ${pct(result.high, 50).toFixed(0)} ms | ${pct(result.high, 90).toFixed(0)} ms | ${pct(result.high, 99).toFixed(0)} ms | ${(pct(result.high, 99) / base).toFixed(2)} | ${[...result.low].map(([flow, count]) => `${flow}: ${count}`).join(', ') || '-'} |`,
  );
row('unloaded, flow control on', unloaded);
row('low flood, flow control on', await run(true, true));
row('low flood, flow control off', await run(false, true));
