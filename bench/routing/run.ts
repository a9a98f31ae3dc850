/**
 * bench/routing: routing quality of the prefix-cache routers on simulated pods, in one run.
 *
 * Pods: `--pods` (8) pd-router simulators, each a process on its own loopback address (127.0.0.2, .3, ...), step
 * engine, the 8B-on-H100 latency profile (`--profile`), KV cache of that profile. Routers, each against fresh pods:
 *
 *   rr       a Kubernetes Service: the gateway with no EPP (fail-open to the pods, round-robin);
 *   approx   pd-router's EPP, approx-prefix-cache-producer + prefix-cache-scorer (weight 2), kv-cache-utilization and
 *            queue scorers (1 each): llm-d's estimate config;
 *   precise  pd-router's EPP, the same scorers with precise-prefix-cache-producer fed by the pods' KV events (ZMQ) and
 *            token-producer tokenizing with the pods (llm-d's precise config).
 *
 * Workload, Poisson arrivals at each `--rates` level (lowest first, caches warm from level to level):
 *   chat 80%: one of `--groups` (32) shared system prompts of 2048 tokens + a unique 128–512 token turn;
 *   docs 20%: a unique 2000–4000 token document.
 *   Every answer 64–192 tokens.
 * Reported per router and level: the pods' prefix-cache hit rate (sum of vllm:prefix_cache_hits_total / _queries_total
 * over the level), TTFT p50/p90/p99 (simulated seconds), output tokens/s, requests served. The ideal hit rate of the
 * workload is the share of prompt tokens in shared prefixes whose group was seen before (what a perfect router with
 * enough cache would serve from cache), estimated from the chat share and sizes.
 *
 * Not in this run (see bench/results/routing.md): llm-d-router's EPP, the P/D variant.
 *
 * Usage: node dist/bench/routing/run.js [--routers rr,approx,precise] [--rates 4,8,16] [--seconds 40] [--pods 8]
 *        [--groups 32] [--profile 8b-h100] [--time-scale 0.5] [--response-body-mode none|streamed] [--seed 1]
 *        [--out bench/results]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { Launcher, type Component } from '../../src/dev/launcher.js';
import { LATENCY_PROFILES, type ProfileName } from '../../src/dev/profiles.js';
import { eppConfig } from '../../src/epp/index.js';
import { gatewayConfig } from '../../src/gateway/index.js';
import {
  runLoad,
  summarize,
  type RequestSample,
  type RunSummary,
  type WorkloadProfile,
} from '../../src/loadgen/index.js';
import { simConfig } from '../../src/sim/index.js';
import { Rng, silentLogger } from '../../src/common/index.js';
import { fmt, table } from '../common/processes.js';
import { arg } from '../common/args.js';
import { samplesOf, scrape } from '../common/prometheus.js';

type Router = 'rr' | 'approx' | 'precise';
const ROUTERS = arg('routers', 'rr,approx,precise').split(',') as Router[];
const RATES = arg('rates', '4,8,16').split(',').map(Number);
const SECONDS = Number(arg('seconds', '40'));
const PODS = Number(arg('pods', '8'));
const GROUPS = Number(arg('groups', '32'));
const PROFILE = arg('profile', '8b-h100') as ProfileName;
const TIME_SCALE = Number(arg('time-scale', '0.5'));
const SEED = Number(arg('seed', '1'));
const OUT = arg('out', 'bench/results');
/** Response bodies through the EPP (`streamed`, Envoy's FULL_DUPLEX_STREAMED) or not (`none`): on a small shared machine the EPP relaying every SSE chunk is the bottleneck, not the routing. */
const RESPONSE_BODY_MODE = arg('response-body-mode', 'none') as 'none' | 'streamed';
const MODEL = 'sim-model';
const PREFIX = 2048;

const OUTPUT = { kind: 'uniform', min: 64, max: 192 } as const;
const STREAMS: Array<{ share: number; profile: WorkloadProfile }> = [
  {
    share: 0.8,
    profile: {
      name: 'chat',
      description: 'shared system prompt + unique turn',
      api: 'chat',
      inputTokens: { kind: 'uniform', min: PREFIX + 128, max: PREFIX + 512 },
      outputTokens: OUTPUT,
      sharedPrefix: { groups: GROUPS, prefixTokens: PREFIX },
    },
  },
  {
    share: 0.2,
    profile: {
      name: 'docs',
      description: 'unique documents',
      api: 'chat',
      inputTokens: { kind: 'uniform', min: 2000, max: 4000 },
      outputTokens: OUTPUT,
    },
  },
];

const SCORERS = `- type: kv-cache-utilization-scorer
- type: queue-scorer
- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
`;
const APPROX = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
- type: prefix-cache-scorer
${SCORERS}`;
const precise = (zmqPort: number) => `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: token-producer
  parameters:
    modelName: ${MODEL}
- type: precise-prefix-cache-producer
  parameters:
    tokenProcessorConfig: {blockSizeTokens: 16}
    kvEventsConfig: {zmqEndpoint: "tcp://127.0.0.1:${zmqPort}", discoverPods: false}
- type: prefix-cache-scorer
  parameters:
    prefixMatchInfoProducerName: precise-prefix-cache-producer
${SCORERS}`;

const NOTES = `
Reading this table:
- The hit rate is the pods' own (vllm:prefix_cache_hits_total / queries_total over the level); it does not depend on
  the machine. The ideal is the share of prompt tokens in shared prompts whose group was already seen (replayed from
  the load generator's seeded group draws): what a perfect router with enough cache would serve from cache.
- TTFT includes the gateway's ext_proc exchange with the EPP for the EPP routers (rr has none), measured in wall time
  and divided by the time scale, on a 2-core machine shared with other work: at the lowest rate the gap between rr and
  the EPP routers is that hop, not the routing. Run with \`--time-scale 1\` on an idle machine for latencies.
- Not in this run: llm-d-router's EPP (approximate and precise configs), the P/D variant (2P/6D), plots.
`;

const podIp = (i: number) => `127.0.0.${2 + i}`;

interface Stack {
  gatewayUrl: string;
  pods: string[];
  close(): Promise<void>;
}

async function startStack(router: Router, launcher: Launcher, zmqPort: number): Promise<Stack> {
  const started: Component[] = [];
  const close = async () => {
    await Promise.all(started.reverse().map((component) => component.stop(2000).catch(() => undefined)));
  };
  try {
    const profile = LATENCY_PROFILES[PROFILE].sim;
    const pods = await Promise.all(
      Array.from({ length: PODS }, (_, i) =>
        launcher.sim(
          `pod-${i}`,
          simConfig({
            ...profile,
            host: podIp(i),
            port: 0,
            model: [MODEL],
            engineModel: 'step',
            timeScale: TIME_SCALE,
            seed: SEED + i,
            ...(router === 'precise' ? { zmqEndpoint: `tcp://127.0.0.1:${zmqPort}` } : {}),
          }),
        ),
      ),
    );
    started.push(...pods);
    const hostPorts = pods.map((pod, i) => `${podIp(i)}:${new URL(pod.url).port}`);
    let eppAddress = '127.0.0.1:1';
    if (router !== 'rr') {
      const dir = path.join(tmpdir(), `pd-routing-${process.pid}-${router}`);
      mkdirSync(dir, { recursive: true });
      const endpointsFile = path.join(dir, 'endpoints.yaml');
      writeFileSync(
        endpointsFile,
        `endpoints:\n${hostPorts.map((hp, i) => `- {name: pod-${i}, address: "${podIp(i)}", port: "${hp.split(':')[1]}"}`).join('\n')}\n`,
      );
      const epp = await launcher.epp(
        'epp',
        eppConfig({
          host: '127.0.0.1',
          grpcPort: 0,
          grpcHealthPort: 0,
          metricsPort: 0,
          secureServing: false,
          endpointsFile,
          configText: router === 'precise' ? precise(zmqPort) : APPROX,
        }),
      );
      started.push(epp);
      eppAddress = epp.url;
    }
    const gw = await launcher.gateway(
      'gateway',
      gatewayConfig({
        host: '127.0.0.1',
        port: 0,
        epp: eppAddress,
        eppTls: false,
        // rr: no EPP answers, so every request goes fail-open round-robin over the pods (a Service).
        failureModeAllow: router === 'rr',
        fallbackEndpoints: router === 'rr' ? hostPorts : [],
        responseBodyMode: RESPONSE_BODY_MODE,
      }),
    );
    started.push(gw);
    return { gatewayUrl: gw.url, pods: hostPorts.map((hp) => `http://${hp}`), close };
  } catch (e) {
    await close();
    throw e;
  }
}

async function prefixCounters(pods: string[]): Promise<{ hits: number; queries: number }> {
  let hits = 0;
  let queries = 0;
  for (const url of pods) {
    const text = await scrape(`${url}/metrics`);
    for (const s of samplesOf(text, 'vllm:prefix_cache_hits_total')) hits += s.value;
    for (const s of samplesOf(text, 'vllm:prefix_cache_queries_total')) queries += s.value;
  }
  return { hits, queries };
}

interface Level {
  router: Router;
  rate: number;
  hitRate: number;
  idealHitRate: number;
  summary: RunSummary;
}

async function runLevel(router: Router, stack: Stack, rate: number, seen: Set<number>): Promise<Level> {
  const before = await prefixCounters(stack.pods);
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const results = await Promise.all(
    STREAMS.map((stream, i) =>
      runLoad({
        baseUrl: stack.gatewayUrl,
        model: MODEL,
        profile: stream.profile,
        arrival: { kind: 'poisson', rate: rate * stream.share },
        durationSeconds: SECONDS,
        timeScale: TIME_SCALE,
        seed: SEED * 100 + i * 10 + rate,
        requestTimeoutMs: 600_000,
        progress: false,
        signal: ac.signal,
      }),
    ),
  );
  const after = await prefixCounters(stack.pods);
  const samples: RequestSample[] = results.flatMap((result) => result.samples);
  const chatSamples = results[0].samples;
  const summary = summarize(samples, Math.max(...results.map((result) => result.summary.durationSeconds)));
  const queries = after.queries - before.queries;
  const ideal = idealHitRate(chatSamples, SEED * 100 + rate, seen);
  // The ideal over all prompt tokens (documents included): scale the chat figure by the chat share of tokens.
  const chatTokens = chatSamples.reduce((sum, sample) => sum + sample.inputTokens, 0);
  const allTokens = samples.reduce((sum, sample) => sum + sample.inputTokens, 0);
  return {
    router,
    rate,
    hitRate: queries > 0 ? (after.hits - before.hits) / queries : 0,
    idealHitRate: allTokens > 0 ? (ideal * chatTokens) / allTokens : 0,
    summary,
  };
}

/** The loadgen's group stream (runner.ts: Rng(seed, 3), one draw per planned chat request, in order). */
const GROUP_STREAM = 3;

/**
 * The workload's ideal hit rate for one level: the prompt tokens a perfect router with enough cache serves from cache,
 * over all prompt tokens. A chat request's shared prompt (whole blocks of 16) is cacheable when its group was seen
 * before (in this level or an earlier one); everything else is new. The groups are replayed from the load
 * generator's seeded stream, so the figure is the level's own.
 */
function idealHitRate(samples: readonly RequestSample[], chatSeed: number, seen: Set<number>): number {
  const byIndex = [...samples].sort((left, right) => (left.index ?? 0) - (right.index ?? 0));
  const rng = new Rng(chatSeed, GROUP_STREAM);
  const groupOf: number[] = [];
  const last = byIndex.length ? (byIndex[byIndex.length - 1].index ?? byIndex.length - 1) : -1;
  for (let k = 0; k <= last; k++) groupOf.push(rng.int(0, GROUPS - 1));
  let cached = 0;
  for (const x of byIndex) {
    const g = groupOf[x.index ?? 0];
    if (seen.has(g)) cached += Math.floor(PREFIX / 16) * 16;
    seen.add(g);
  }
  const total = samples.reduce((sum, sample) => sum + sample.inputTokens, 0);
  return total > 0 ? cached / total : 0;
}

async function main(): Promise<void> {
  const launcher = new Launcher({ mode: 'processes', logger: silentLogger(), shutdownTimeoutMs: 2000 });
  const levels: Level[] = [];
  const zmqPort = 12_000 + Math.floor(Math.random() * 20_000);
  for (const router of ROUTERS) {
    const stack = await startStack(router, launcher, zmqPort);
    const seen = new Set<number>();
    try {
      for (const rate of RATES) {
        const l = await runLevel(router, stack, rate, seen);
        levels.push(l);
        process.stdout.write(
          `${router} rate ${rate}: hit ${fmt(l.hitRate * 100, 1)}% ttft p90 ${fmt(l.summary.latency.timeToFirstToken.p90, 3)}s out ${fmt(l.summary.throughput.outputTokensPerSec, 0)} tok/s served ${l.summary.requests.total - l.summary.requests.failures}\n`,
        );
      }
    } finally {
      await stack.close();
    }
  }
  const rows = levels.map((level) => [
    level.router,
    level.rate,
    `${fmt(level.hitRate * 100, 1)}%`,
    `${fmt(level.idealHitRate * 100, 1)}%`,
    fmt(level.summary.latency.timeToFirstToken.p50, 3),
    fmt(level.summary.latency.timeToFirstToken.p90, 3),
    fmt(level.summary.latency.timeToFirstToken.p99, 3),
    fmt(level.summary.throughput.outputTokensPerSec, 0),
    `${level.summary.requests.total - level.summary.requests.failures}/${level.summary.requests.total}`,
  ]);
  const md = `# Routing quality (bench/routing)

${PODS} simulated pods (${PROFILE}, step engine, time scale ${TIME_SCALE}), ${SECONDS} s per level of simulated time,
response bodies to the EPP: ${RESPONSE_BODY_MODE}; load average at the end ${(await import('node:os'))
    .loadavg()
    .map((load) => load.toFixed(1))
    .join(' / ')} on ${(await import('node:os')).cpus().length} CPUs,
Poisson arrivals; chat 80% (one of ${GROUPS} shared ${PREFIX}-token system prompts + a 128–512 token turn), documents 20%
(2000–4000 unique tokens); answers 64–192 tokens. Times in simulated seconds. Simulated, not measured on GPUs.

${table(['router', 'req/s', 'prefix-cache hit rate', 'ideal', 'TTFT p50', 'TTFT p90', 'TTFT p99', 'output tok/s', 'served'], rows)}
${NOTES}`;
  mkdirSync(OUT, { recursive: true });
  writeFileSync(path.join(OUT, 'routing.md'), md);
  writeFileSync(
    path.join(OUT, 'routing.json'),
    JSON.stringify(
      {
        pods: PODS,
        profile: PROFILE,
        timeScale: TIME_SCALE,
        seconds: SECONDS,
        groups: GROUPS,
        levels: levels.map((level) => ({
          router: level.router,
          rate: level.rate,
          hitRate: level.hitRate,
          idealHitRate: level.idealHitRate,
          summary: level.summary,
        })),
      },
      null,
      2,
    ),
  );
  process.stdout.write(md);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
