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
 *            token-producer tokenizing with the pods (llm-d's precise config);
 *   precise-prefix  a diagnostic: pd-router's precise index with the prefix scorer alone (no load scorers), what
 *            the index reaches on this workload when nothing trades hits for load balance;
 *   llmd-approx   llm-d-router's EPP (ebab687) with its epp-estimate-prefix-cache-config.yaml, unchanged;
 *   llmd-precise  llm-d-router's EPP with its epp-precise-prefix-cache-config.yaml (model, tokenizer URL, block size
 *            and ZMQ endpoint filled in; bench/routing/upstream.ts), fed by the same simulators' KV events;
 *   pd       the P/D variant: `pd-router dev`'s 2P/6D stack (sidecars, llm-d's sim-pd-epp-config with the prefix
 *            decider) on the same profile, compared with the 8 pods aggregated (the approx row).
 * llm-d-router's EPP watches a real kube-apiserver (the interop harness's, started once) whose pods carry the
 * simulators' addresses, so every pod of a run listens on the same port (the InferencePool's target port).
 *
 * Workload, Poisson arrivals at each `--rates` level (lowest first, on the same pods). Each level draws its own system
 * prompts (their words follow the level's seed), so shared prompts never recur across levels and each starts cold:
 *   chat 80%: one of `--groups` (32) shared system prompts of 2048 tokens + a unique 128–512 token turn;
 *   docs 20%: a unique 2000–4000 token document.
 *   Every answer 64–192 tokens.
 * Reported per router and level: the pods' prefix-cache hit rate (sum of vllm:prefix_cache_hits_total / _queries_total
 * over the level), TTFT p50/p90/p99 (simulated seconds), output tokens/s, requests served. The ideal hit rate of the
 * workload is the share of prompt tokens in shared prefixes whose group was seen before in the level (what a perfect
 * router with enough cache would serve from cache), replayed from the load generator's seeded group draws.
 *
 * Output: bench/results/routing.{md,json,svg}, with the command and the machine's load.
 *
 * Usage: node dist/bench/routing/run.js [--routers rr,approx,precise,precise-prefix,llmd-approx,llmd-precise,pd]
 *        [--rates 4,8,16] [--seconds 40] [--pods 8] [--kv-cache-size <blocks per pod>]
 *        [--groups 32] [--profile 8b-h100] [--time-scale 0.5] [--response-body-mode none|streamed] [--seed 1]
 *        [--out bench/results]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import path from 'node:path';
import { cpus, loadavg, tmpdir } from 'node:os';
import { startDevStack } from '../../src/dev/stack.js';
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
import { arg, checkArgs } from '../common/args.js';
import { samplesOf, scrape } from '../common/prometheus.js';
import { freePortOn } from '../../test/interop/kube-fixtures.js';
import { stopAll } from '../peers/procs.js';
import { renderSvg, type Panel } from './svg.js';
import { startUpstreamEpp, stopControlPlane, upstreamRoutingConfig } from './upstream.js';

const ALL_ROUTERS = ['rr', 'approx', 'precise', 'precise-prefix', 'llmd-approx', 'llmd-precise', 'pd'] as const;
type Router = (typeof ALL_ROUTERS)[number];
checkArgs(
  `Usage: node dist/bench/routing/run.js [--routers rr,approx,precise,precise-prefix,llmd-approx,llmd-precise,pd]
       [--rates 4,8,16] [--seconds 40] [--pods 8] [--kv-cache-size <blocks per pod>]
       [--groups 32] [--profile 8b-h100] [--time-scale 0.5] [--response-body-mode none|streamed] [--seed 1]
       [--out bench/results]`,
  [
    'routers',
    'rates',
    'seconds',
    'pods',
    'groups',
    'profile',
    'time-scale',
    'kv-cache-size',
    'seed',
    'out',
    'response-body-mode',
  ],
);
const ROUTERS = arg('routers', ALL_ROUTERS.join(',')).split(',') as Router[];
for (const r of ROUTERS)
  if (!(ALL_ROUTERS as readonly string[]).includes(r))
    throw new Error(`--routers: unknown router ${r} (${ALL_ROUTERS.join(', ')})`);
const LABEL: Record<Router, string> = {
  rr: 'round-robin (Service)',
  approx: 'pd-router approx',
  precise: 'pd-router precise',
  'precise-prefix': 'pd-router precise, prefix scorer only',
  'llmd-approx': 'llm-d-router approx',
  'llmd-precise': 'llm-d-router precise',
  pd: 'pd-router 2P/6D (P/D)',
};
const COLOR: Record<Router, string> = {
  rr: '#888888',
  approx: '#1f77b4',
  precise: '#d62728',
  'precise-prefix': '#e377c2',
  'llmd-approx': '#2ca02c',
  'llmd-precise': '#9467bd',
  pd: '#ff7f0e',
};
const BLOCK = 16;
const RATES = arg('rates', '4,8,16').split(',').map(Number);
const SECONDS = Number(arg('seconds', '40'));
const PODS = Number(arg('pods', '8'));
const GROUPS = Number(arg('groups', '32'));
const PROFILE = arg('profile', '8b-h100') as ProfileName;
const TIME_SCALE = Number(arg('time-scale', '0.5'));
/** KV cache blocks per pod (default: the profile's); small values make the cache-pressure variant. */
const KV_CACHE_SIZE = arg('kv-cache-size', '');
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
/** The diagnostic: the precise index alone (no load scorers), what the index can reach on this workload. */
const PREFIX_ONLY = `- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
  - pluginRef: max-score-picker
`;
const APPROX = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
- type: prefix-cache-scorer
${SCORERS}`;
const precise = (zmqPort: number, scorers = SCORERS) => `apiVersion: llm-d.ai/v1alpha1
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
${scorers}`;

const NOTES = `
Reading this table:
- The hit rate is the pods' own (vllm:prefix_cache_hits_total / queries_total over the level); it does not depend on
  the machine. The ideal is the share of prompt tokens in shared prompts whose group was already seen in the same
  level (replayed from the load generator's seeded group draws): what a perfect router with enough cache would serve
  from cache. Each level draws its own system prompts (their words follow the level's seed), so every level starts
  cold: its first request of each of the 32 groups is a miss for any router.
- TTFT includes the gateway's ext_proc exchange with the EPP for the EPP routers (rr has none), measured in wall time
  and divided by the time scale, on a 2-core machine shared with other work: at the lowest rate the gap between rr and
  the EPP routers is that hop, not the routing. Run with \`--time-scale 1\` on an idle machine for latencies.
- llm-d-router runs its own sample configs (bench/routing/upstream.ts): approx is epp-estimate-prefix-cache-config.yaml
  as shipped (prefix-cache-scorer + load-aware-scorer, 1:1); precise is epp-precise-prefix-cache-config.yaml with the
  model, the tokenizer URL (one simulator's /v1/chat/completions/render), block size 16 (the pods') and the ZMQ endpoint
  filled in. pd-router's approx and precise run llm-d's estimate and precise shapes (prefix ×2, KV utilization ×1,
  queue ×1) from pd-router's EPP.
`;

const podIp = (i: number) => `127.0.0.${2 + i}`;
const log = (line: string) => process.stderr.write(`${line}\n`);

interface Stack {
  gatewayUrl: string;
  /** The model servers' base URLs (their /metrics hold the prefix-cache counters). */
  pods: string[];
  /** The EPP's /metrics, for the KV-event and tokenization counters recorded with the results. */
  eppMetricsUrl?: string;
  /** Further diagnostics of the EPP (llm-d-router's log lines about failed data producers). */
  eppLog?: () => string[];
  close(): Promise<void>;
}

/** The EPP's KV-event, index, tokenization and fallback series (non-zero), to show the precise path was used. */
async function eppDiagnostics(url: string | undefined): Promise<string[]> {
  if (!url) return [];
  try {
    return (await scrape(url))
      .split('\n')
      .filter((line) => !line.startsWith('#') && /kv_cache_|tokeniz|precise_prefix/.test(line) && !/ 0$/.test(line))
      .filter((line) => !/_bucket\{/.test(line))
      .slice(0, 40);
  } catch (e) {
    return [`scrape failed: ${(e as Error).message}`];
  }
}

/** A free port below the ephemeral range (a ZMQ socket connecting before the bind could otherwise connect to itself). */
async function zmqPort(): Promise<number> {
  const net = await import('node:net');
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 12_000 + Math.floor(Math.random() * 20_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port for ZMQ below the ephemeral range');
}

function kvCacheOverride(): { kvCacheSize?: number } {
  return KV_CACHE_SIZE ? { kvCacheSize: Number(KV_CACHE_SIZE) } : {};
}

/** `pd-router dev`'s 2P/6D stack (two prefill simulators, six decode simulators with their sidecars, P/D EPP config). */
async function startPdStack(): Promise<Stack> {
  const prefill = Math.max(1, Math.round(PODS / 4));
  const stack = await startDevStack({
    prefill,
    decode: PODS - prefill,
    profile: PROFILE,
    model: MODEL,
    gatewayPort: 0,
    basePort: 0,
    timeScale: TIME_SCALE,
    seed: SEED,
    mode: 'processes',
    gateway: { responseBodyMode: RESPONSE_BODY_MODE },
    prefillSim: kvCacheOverride(),
    decodeSim: kvCacheOverride(),
    shutdownTimeoutMs: 2000,
  });
  return {
    gatewayUrl: stack.gateway.url,
    pods: [...stack.prefills.map((component) => component.url), ...stack.decodes.map((unit) => unit.sim.url)],
    close: () => stack.close(10_000),
  };
}

async function startStack(router: Router, launcher: Launcher): Promise<Stack> {
  if (router === 'pd') return startPdStack();
  const started: Component[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const dir = mkdtempSync(path.join(tmpdir(), `pd-routing-${router}-`));
  const close = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await Promise.all(started.reverse().map((component) => component.stop(2000).catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const profile = { ...LATENCY_PROFILES[PROFILE].sim, ...kvCacheOverride() };
    const addresses = Array.from({ length: PODS }, (_, i) => podIp(i));
    // One port on every address: llm-d-router's EPP finds the pods through an InferencePool (one target port).
    const port = await freePortOn(addresses);
    const pdPrecise = router === 'precise' || router === 'precise-prefix';
    const zmq = pdPrecise || router === 'llmd-precise' ? await zmqPort() : 0;
    // Every precise router gets the same event stream: vLLM's own --kv-events-config, connecting to the EPP's bound
    // socket, with a topic naming the pod as llm-d-router's index keys it (address:port; pd-router's matches that or
    // the address alone).
    const events = (i: number) =>
      zmq
        ? {
            kvEventsConfig: JSON.stringify({
              enable_kv_cache_events: true,
              publisher: 'zmq',
              endpoint: `tcp://127.0.0.1:${zmq}`,
              topic: `kv@${podIp(i)}:${port}@${MODEL}`,
            }),
          }
        : {};
    const pods = await Promise.all(
      addresses.map((host, i) =>
        launcher.sim(
          `pod-${i}`,
          simConfig({
            ...profile,
            host,
            port,
            model: [MODEL],
            engineModel: 'step',
            timeScale: TIME_SCALE,
            seed: SEED + i,
            blockSize: BLOCK,
            ...events(i),
          }),
        ),
      ),
    );
    started.push(...pods);
    const hostPorts = addresses.map((host) => `${host}:${port}`);
    let eppAddress = '127.0.0.1:1';
    let eppMetricsUrl: string | undefined;
    let eppLog: (() => string[]) | undefined;
    if (router === 'approx' || pdPrecise) {
      const endpointsFile = path.join(dir, 'endpoints.yaml');
      writeFileSync(
        endpointsFile,
        `endpoints:\n${addresses.map((host, i) => `- {name: pod-${i}, address: "${host}", port: "${port}"}`).join('\n')}\n`,
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
          configText: router === 'approx' ? APPROX : precise(zmq, router === 'precise' ? SCORERS : PREFIX_ONLY),
        }),
      );
      started.push(epp);
      eppAddress = epp.url;
      eppMetricsUrl = `http://127.0.0.1:${epp.ports.metricsPort}/metrics`;
    } else if (router === 'llmd-approx' || router === 'llmd-precise') {
      const kind = router === 'llmd-approx' ? 'approx' : 'precise';
      const config = await upstreamRoutingConfig(kind, {
        model: MODEL,
        tokenizerUrl: `http://${hostPorts[0]}`,
        blockSize: BLOCK,
        zmqEndpoint: `tcp://127.0.0.1:${zmq}`,
      });
      const epp = await startUpstreamEpp(kind, addresses, port, config, dir, log);
      cleanups.push(() => epp.close());
      eppAddress = epp.address;
      eppMetricsUrl = epp.metricsUrl;
      eppLog = () => epp.producerFailures();
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
    return { gatewayUrl: gw.url, pods: hostPorts.map((hp) => `http://${hp}`), eppMetricsUrl, eppLog, close };
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

async function runLevel(router: Router, stack: Stack, rate: number): Promise<Level> {
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
  const ideal = idealHitRate(chatSamples, SEED * 100 + rate);
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
 * before in this level (the loadgen builds a group's prompt from the run's seed, and each level has its own seed, so an
 * earlier level's prompts never recur); everything else is new. The groups are replayed from the load generator's
 * seeded stream, so the figure is the level's own.
 */
function idealHitRate(samples: readonly RequestSample[], chatSeed: number): number {
  const seen = new Set<number>();
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

const pct = (value: number) => `${fmt(value * 100, 1)}%`;
const served = (level: Level) => level.summary.requests.total - level.summary.requests.failures;

/** The precise targets per rate: >= 90% of the ideal and >= llm-d-router's hit rate and tokens/s. */
function targets(levels: Level[]): string[] {
  const at = (router: Router, rate: number) => levels.find((level) => level.router === router && level.rate === rate);
  const lines: string[] = [];
  for (const rate of RATES) {
    const p = at('precise', rate);
    if (!p) continue;
    const parts = [
      `${pct(p.hitRate)} hit = ${fmt((p.hitRate / Math.max(1e-9, p.idealHitRate)) * 100, 0)}% of the ideal ${pct(p.idealHitRate)} (target >= 90%: ${p.hitRate >= 0.9 * p.idealHitRate ? 'met' : 'missed'})`,
    ];
    const alone = at('precise-prefix', rate);
    if (alone)
      parts.push(
        `the index alone (prefix scorer only) ${pct(alone.hitRate)} = ${fmt((alone.hitRate / Math.max(1e-9, alone.idealHitRate)) * 100, 0)}% of the ideal`,
      );
    for (const other of ['llmd-precise', 'llmd-approx'] as const) {
      const o = at(other, rate);
      if (!o) continue;
      parts.push(
        `vs ${LABEL[other]} ${pct(o.hitRate)} hit (${p.hitRate >= o.hitRate - 1e-9 ? 'met' : 'missed'}), ${fmt(p.summary.throughput.outputTokensPerSec, 0)} vs ${fmt(o.summary.throughput.outputTokensPerSec, 0)} output tok/s (${p.summary.throughput.outputTokensPerSec >= o.summary.throughput.outputTokensPerSec ? 'met' : 'missed'})`,
      );
    }
    lines.push(`- ${rate} req/s: precise ${parts.join('; ')}.`);
  }
  return lines;
}

function plots(levels: Level[]): string {
  const routers = [...new Set(levels.map((level) => level.router))];
  const series = (router: Router, value: (level: Level) => number) => ({
    name: LABEL[router],
    color: COLOR[router],
    points: levels.filter((level) => level.router === router).map((level) => ({ x: level.rate, y: value(level) })),
  });
  const routed = routers.filter((router) => router !== 'pd');
  const ideal = levels.filter((level) => level.router === routed[0]);
  const panels: Panel[] = [
    {
      kind: 'lines',
      title: "Prefix-cache hit rate (pods' counters)",
      yLabel: 'hit rate %',
      xLabel: 'request rate (req/s)',
      series: [
        ...routed.map((router) => series(router, (level) => level.hitRate * 100)),
        {
          name: 'ideal',
          color: '#000000',
          dashed: true,
          points: ideal.map((level) => ({ x: level.rate, y: level.idealHitRate * 100 })),
        },
      ],
    },
    {
      kind: 'lines',
      title: 'Output tokens/s',
      yLabel: 'tokens/s',
      xLabel: 'request rate (req/s)',
      series: routed.map((router) => series(router, (level) => level.summary.throughput.outputTokensPerSec)),
    },
    {
      kind: 'lines',
      title: 'TTFT p90 (simulated s)',
      yLabel: 's',
      xLabel: 'request rate (req/s)',
      series: routed.map((router) => series(router, (level) => level.summary.latency.timeToFirstToken.p90)),
    },
  ];
  const pd = levels.filter((level) => level.router === 'pd');
  const agg = levels.filter((level) => level.router === 'approx');
  if (pd.length > 0 && agg.length > 0) {
    const rates = pd.map((level) => level.rate).filter((rate) => agg.some((level) => level.rate === rate));
    const groups: string[] = [];
    const values: Record<'agg' | 'pd', number[]> = { agg: [], pd: [] };
    for (const rate of rates) {
      for (const [name, get] of [
        ['TTFT', (level: Level) => level.summary.latency.timeToFirstToken.p50],
        ['ITL×10', (level: Level) => level.summary.latency.timePerOutputToken.p50 * 10],
        ['E2E', (level: Level) => level.summary.latency.requestLatency.p50],
      ] as const) {
        groups.push(`${name} @${rate}`);
        values.agg.push(get(agg.find((level) => level.rate === rate)!));
        values.pd.push(get(pd.find((level) => level.rate === rate)!));
      }
    }
    panels.push({
      kind: 'bars',
      title: 'P/D (simulated): p50 latencies, 8 pods aggregated vs 2P/6D',
      yLabel: 's (ITL ×10)',
      groups,
      series: [
        { name: `aggregated 8 pods (${LABEL.approx})`, color: COLOR.approx, values: values.agg },
        { name: LABEL.pd, color: COLOR.pd, values: values.pd },
      ],
    });
  }
  return renderSvg(
    `bench/routing: ${PODS} simulated pods (${PROFILE}), prefix-heavy workload`,
    'Simulated (pd-router sim, step engine), not measured on GPUs; see bench/results/routing.md for the command and load.',
    panels,
  );
}

async function main(): Promise<void> {
  const command = `node dist/bench/routing/run.js ${process.argv.slice(2).join(' ')}`.trim();
  const loadBefore = loadavg();
  const t0 = performance.now();
  const launcher = new Launcher({ mode: 'processes', logger: silentLogger(), shutdownTimeoutMs: 2000 });
  const levels: Level[] = [];
  const failures: string[] = [];
  const diagnostics: Partial<Record<Router, string[]>> = {};
  try {
    for (const router of ROUTERS) {
      let stack: Stack;
      try {
        stack = await startStack(router, launcher);
      } catch (e) {
        const why = `${LABEL[router]}: did not start: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}`;
        log(`[bench/routing] ${why}`);
        failures.push(why);
        continue;
      }
      try {
        for (const rate of RATES) {
          const l = await runLevel(router, stack, rate);
          levels.push(l);
          log(
            `${router} rate ${rate}: hit ${pct(l.hitRate)} (ideal ${pct(l.idealHitRate)}) ttft p90 ${fmt(l.summary.latency.timeToFirstToken.p90, 3)}s out ${fmt(l.summary.throughput.outputTokensPerSec, 0)} tok/s served ${served(l)}/${l.summary.requests.total}`,
          );
        }
        diagnostics[router] = [...(await eppDiagnostics(stack.eppMetricsUrl)), ...(stack.eppLog?.() ?? [])];
        for (const line of diagnostics[router]) log(`  ${router} epp: ${line}`);
      } finally {
        await stack.close();
      }
    }
  } finally {
    await stopControlPlane().catch(() => undefined);
  }
  const loadAfter = loadavg();
  const minutes = (performance.now() - t0) / 60_000;
  const rows = levels
    .filter((level) => level.router !== 'pd')
    .map((level) => [
      LABEL[level.router],
      level.rate,
      pct(level.hitRate),
      pct(level.idealHitRate),
      fmt(level.summary.latency.timeToFirstToken.p50, 3),
      fmt(level.summary.latency.timeToFirstToken.p90, 3),
      fmt(level.summary.latency.timeToFirstToken.p99, 3),
      fmt(level.summary.throughput.outputTokensPerSec, 0),
      `${served(level)}/${level.summary.requests.total}`,
    ]);
  const pdRows: Array<Array<string | number>> = [];
  for (const level of levels.filter((level) => level.router === 'pd' || level.router === 'approx')) {
    const lat = level.summary.latency;
    pdRows.push([
      level.router === 'pd' ? `2P/6D (${LABEL.pd})` : `8 aggregated (${LABEL.approx})`,
      level.rate,
      `${fmt(lat.timeToFirstToken.p50, 3)} / ${fmt(lat.timeToFirstToken.p90, 3)}`,
      `${fmt(lat.timePerOutputToken.p50 * 1000, 1)} / ${fmt(lat.timePerOutputToken.p90 * 1000, 1)}`,
      `${fmt(lat.requestLatency.p50, 3)} / ${fmt(lat.requestLatency.p90, 3)}`,
      pct(level.hitRate),
      fmt(level.summary.throughput.outputTokensPerSec, 0),
      `${served(level)}/${level.summary.requests.total}`,
    ]);
  }
  pdRows.sort((left, right) => Number(left[1]) - Number(right[1]));
  const load = (values: number[]) => values.map((value) => value.toFixed(1)).join(' / ');
  const md = `# Routing quality (bench/routing)

${PODS} simulated pods (${PROFILE}, step engine, time scale ${TIME_SCALE}, KV cache ${KV_CACHE_SIZE || LATENCY_PROFILES[PROFILE].sim.kvCacheSize} blocks of ${BLOCK} tokens per pod), ${SECONDS} s per level of simulated time,
response bodies to the EPP: ${RESPONSE_BODY_MODE}. Poisson arrivals; chat 80% (one of ${GROUPS} shared ${PREFIX}-token system
prompts + a 128–512 token turn), documents 20% (2000–4000 unique tokens); answers 64–192 tokens. Times in simulated
seconds. **Simulated, not measured on GPUs.**

Command: \`${command}\` (after \`npm run build\`), ${fmt(minutes, 1)} min wall.
Machine: ${cpus().length} CPUs shared with other work; load average (1 / 5 / 15 min) ${load(loadBefore)} at the start,
${load(loadAfter)} at the end.

![routing plots](routing.svg)

${table(['router', 'req/s', 'prefix-cache hit rate', 'ideal', 'TTFT p50', 'TTFT p90', 'TTFT p99', 'output tok/s', 'served'], rows)}
Targets (precise):
${targets(levels).join('\n') || '- no precise run'}
${failures.length ? `\nDid not run:\n${failures.map((failure) => `- ${failure}`).join('\n')}\n` : ''}
## P/D variant (simulated): 2P/6D against the same 8 pods aggregated

${pdRows.length ? table(['setup', 'req/s', 'TTFT p50 / p90 (s)', 'ITL (TPOT) p50 / p90 (ms)', 'E2E p50 / p90 (s)', 'hit rate', 'output tok/s', 'served'], pdRows) : 'Not in this run.\n'}
The P/D stack is \`pd-router dev\`'s (two prefill simulators, six decode simulators each behind a pd-router sidecar,
llm-d's sim-pd-epp-config with the prefix-based decider, 256 non-cached tokens); the aggregated one is the
pd-router approx row above (llm-d's estimate shape on all 8 pods). Same profile, workload and seeds. ITL is each
request's mean inter-token time (TPOT: (E2E - TTFT) / (tokens - 1)), because on this loaded machine several SSE chunks
often arrive in one read, which makes the chunk-to-chunk gaps (the loadgen's ITL) mostly 0.
${NOTES}`;
  mkdirSync(OUT, { recursive: true });
  writeFileSync(path.join(OUT, 'routing.md'), md);
  writeFileSync(path.join(OUT, 'routing.svg'), plots(levels));
  writeFileSync(
    path.join(OUT, 'routing.json'),
    JSON.stringify(
      {
        command,
        cpus: cpus().length,
        loadAverageStart: loadBefore,
        loadAverageEnd: loadAfter,
        wallMinutes: minutes,
        pods: PODS,
        profile: PROFILE,
        timeScale: TIME_SCALE,
        seconds: SECONDS,
        groups: GROUPS,
        kvCacheSize: Number(KV_CACHE_SIZE || LATENCY_PROFILES[PROFILE].sim.kvCacheSize),
        responseBodyMode: RESPONSE_BODY_MODE,
        failures,
        eppDiagnostics: diagnostics,
        levels: levels.map((level) => ({
          router: level.router,
          label: LABEL[level.router],
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
  async (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    await stopAll(5_000);
    process.exit(1);
  },
);
