/**
 * bench/decider-eval: the selective-PD deciders compared on one workload at rising load.
 *
 * For each decider (always-disagg-pd-decider, prefix-based-pd-decider, cost-based-pd-decider) a local P/D stack is
 * stood up on simulators (processes: simulators with the step engine, so queued prefills wait for each other and
 * prefills slow the decodes batched with them; sidecars; the EPP with the decider; the gateway), and the same seeded
 * workload runs at each load level, lowest first, as Poisson arrivals:
 *
 *   chat   (50%): one of 8 shared system prompts of 2048 tokens + a 64–640 token turn: mostly cached on the decode pod
 *                the prefix-cache scorer picks;
 *   short  (30%): 32–320 tokens, unique;
 *   long   (20%): 3000–8000 tokens, unique (documents);
 *   every answer 64–192 tokens.
 *
 * Per decider and level it reports TTFT p50/p99, TPOT p50/p90, output throughput, the share of requests
 * disaggregated (from the EPP's llm_d_epp_disagg_decision_total) and the decision reasons. Times are simulated time
 * (wall / time scale). The load generator's send lag is reported too: if it grows, the machine, not the stack, was the
 * bottleneck and the level should be rerun with a larger --time-scale.
 *
 * Usage: node dist/bench/decider-eval/run.js [--deciders always,prefix,cost] [--rates 1,2,3,4] [--seconds 60]
 *        [--prefill 1] [--decode 2] [--profile 8b-h100] [--time-scale 0.5] [--non-cached-tokens 256]
 *        [--seed 1] [--out bench/results]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import path from 'node:path';
import { startDevStack } from '../../src/dev/stack.js';
import type { DeciderChoice } from '../../src/dev/epp-configs.js';
import type { ProfileName } from '../../src/dev/profiles.js';
import {
  runLoad,
  summarize,
  type RequestSample,
  type RunSummary,
  type WorkloadProfile,
} from '../../src/loadgen/index.js';
import { fmt, table } from '../common/processes.js';
import { arg, checkArgs } from '../common/args.js';
import { samplesOf, scrape, sumBy } from '../common/prometheus.js';

checkArgs(
  `Usage: node dist/bench/decider-eval/run.js [--deciders always,prefix,cost] [--rates 1,2,3,4] [--seconds 60]
       [--prefill 1] [--decode 2] [--profile 8b-h100] [--time-scale 0.5] [--non-cached-tokens 256]
       [--seed 1] [--out bench/results]`,
  ['deciders', 'rates', 'seconds', 'prefill', 'decode', 'profile', 'time-scale', 'non-cached-tokens', 'seed', 'out'],
);
const DECIDERS = arg('deciders', 'always,prefix,cost').split(',') as DeciderChoice[];
const RATES = arg('rates', '1,2,3,4').split(',').map(Number);
const SECONDS = Number(arg('seconds', '60'));
const PREFILL = Number(arg('prefill', '1'));
const DECODE = Number(arg('decode', '2'));
const PROFILE = arg('profile', '8b-h100') as ProfileName;
const TIME_SCALE = Number(arg('time-scale', '0.5'));
const NON_CACHED_TOKENS = Number(arg('non-cached-tokens', '256'));
const SEED = Number(arg('seed', '1'));
const OUT = arg('out', 'bench/results');
const MODEL = 'sim-model';

const OUTPUT = { kind: 'uniform', min: 64, max: 192 } as const;
interface Stream {
  share: number;
  profile: WorkloadProfile;
}
const STREAMS: Stream[] = [
  {
    share: 0.5,
    profile: {
      name: 'chat',
      description: 'shared 2048-token system prompts (8) + a 64–640 token turn',
      api: 'chat',
      inputTokens: { kind: 'uniform', min: 2048 + 64, max: 2048 + 640 },
      outputTokens: OUTPUT,
      sharedPrefix: { groups: 8, prefixTokens: 2048 },
    },
  },
  {
    share: 0.3,
    profile: {
      name: 'short',
      description: 'short unique prompts',
      api: 'chat',
      inputTokens: { kind: 'uniform', min: 32, max: 320 },
      outputTokens: OUTPUT,
    },
  },
  {
    share: 0.2,
    profile: {
      name: 'long',
      description: 'long unique documents',
      api: 'chat',
      inputTokens: { kind: 'uniform', min: 3000, max: 8000 },
      outputTokens: OUTPUT,
    },
  },
];

const DECIDER_TYPE: Record<DeciderChoice, string> = {
  always: 'always-disagg-pd-decider',
  prefix: `prefix-based-pd-decider (nonCachedTokens ${NON_CACHED_TOKENS})`,
  cost: 'cost-based-pd-decider (defaults)',
  never: 'never (nonCachedTokens 0)',
};

async function eppCounters(
  metricsUrl: string,
): Promise<{ decisions: Map<string, number>; reasons: Map<string, number> }> {
  const text = await scrape(metricsUrl);
  const reasons = new Map<string, number>();
  for (const { labels, value } of samplesOf(text, 'llm_d_epp_disagg_decision_reason_total')) {
    reasons.set(`${labels.decision_type === 'prefill-decode' ? 'P/D' : 'local'}:${labels.reason}`, value);
  }
  return { decisions: sumBy(text, 'llm_d_epp_disagg_decision_total', 'decision_type'), reasons };
}

const delta = (after: Map<string, number>, before: Map<string, number>, k: string) =>
  (after.get(k) ?? 0) - (before.get(k) ?? 0);

interface LevelResult {
  decider: DeciderChoice;
  rate: number;
  summary: RunSummary;
  perStream: Record<string, { ttftP50: number; ttftP99: number; count: number }>;
  disaggregatedShare: number;
  reasons: Record<string, number>;
  maxSendLagMs: number;
}

async function runLevel(
  decider: DeciderChoice,
  gatewayUrl: string,
  eppMetricsUrl: string,
  rate: number,
): Promise<LevelResult> {
  const before = await eppCounters(eppMetricsUrl);
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const started = Date.now();
  const results = await Promise.all(
    STREAMS.map((stream, i) =>
      runLoad({
        baseUrl: gatewayUrl,
        model: MODEL,
        profile: stream.profile,
        arrival: { kind: 'poisson', rate: rate * stream.share },
        durationSeconds: SECONDS,
        timeScale: TIME_SCALE,
        seed: SEED * 100 + i * 10 + Math.round(rate * 10),
        requestTimeoutMs: 600_000,
        progress: false,
        signal: ac.signal,
      }),
    ),
  );
  const after = await eppCounters(eppMetricsUrl);
  const samples: RequestSample[] = results.flatMap((runResult) => runResult.samples);
  const durationSeconds = Math.max(...results.map((runResult) => runResult.summary.durationSeconds));
  const summary = summarize(samples, durationSeconds);
  const pd = delta(after.decisions, before.decisions, 'prefill-decode');
  const local = delta(after.decisions, before.decisions, 'decode-only');
  const reasons: Record<string, number> = {};
  for (const k of after.reasons.keys()) {
    const d = delta(after.reasons, before.reasons, k);
    if (d > 0) reasons[k] = d;
  }
  const perStream: LevelResult['perStream'] = {};
  for (const [i, r] of results.entries()) {
    perStream[STREAMS[i].profile.name] = {
      ttftP50: r.summary.latency.timeToFirstToken.p50,
      ttftP99: r.summary.latency.timeToFirstToken.p99,
      count: r.samples.length,
    };
  }
  const maxSendLagMs = Math.max(
    0,
    ...samples.map((sample) => (sample.scheduledMs !== undefined ? sample.startMs - sample.scheduledMs : 0)),
  );
  process.stderr.write(
    `  ${decider} @ ${rate} req/s: ${summary.requests.total - summary.requests.failures}/${summary.requests.total} ok, TTFT p50 ${fmt(summary.latency.timeToFirstToken.p50 * 1000, 0)} ms p99 ${fmt(summary.latency.timeToFirstToken.p99 * 1000, 0)} ms, TPOT p90 ${fmt(summary.latency.timePerOutputToken.p90 * 1000, 1)} ms, ${fmt(summary.throughput.outputTokensPerSec, 0)} tok/s, P/D ${fmt((100 * pd) / Math.max(1, pd + local), 0)}% (${((Date.now() - started) / 1000).toFixed(0)} s wall)\n`,
  );
  return { decider, rate, summary, perStream, disaggregatedShare: pd / Math.max(1, pd + local), reasons, maxSendLagMs };
}

async function main(): Promise<void> {
  const all: LevelResult[] = [];
  const started = Date.now();
  for (const decider of DECIDERS) {
    process.stderr.write(
      `${decider}: ${DECIDER_TYPE[decider]} on ${PREFILL}P${DECODE}D (${PROFILE}, step engine, time scale ${TIME_SCALE})\n`,
    );
    const stack = await startDevStack({
      prefill: PREFILL,
      decode: DECODE,
      profile: PROFILE,
      model: MODEL,
      basePort: 0,
      gatewayPort: 0,
      decider,
      nonCachedTokens: NON_CACHED_TOKENS,
      mode: 'processes',
      timeScale: TIME_SCALE,
      seed: SEED,
      prefillSim: { engineModel: 'step', recordRequests: 0 },
      decodeSim: { engineModel: 'step', recordRequests: 0 },
      gateway: { responseBodyMode: 'none' },
    });
    try {
      const eppMetricsUrl = `http://127.0.0.1:${stack.epp.ports.metricsPort}/metrics`;
      for (const rate of RATES) all.push(await runLevel(decider, stack.gateway.url, eppMetricsUrl, rate));
    } finally {
      await stack.close(5_000);
    }
  }

  const ms = (seconds: number) => fmt(seconds * 1000, 0);
  const rows: (string | number)[][] = [];
  for (const rate of RATES) {
    for (const r of all.filter((levelResult) => levelResult.rate === rate)) {
      const s = r.summary;
      rows.push([
        rate,
        r.decider,
        ms(s.latency.timeToFirstToken.p50),
        ms(s.latency.timeToFirstToken.p99),
        fmt(s.latency.timePerOutputToken.p50 * 1000, 1),
        fmt(s.latency.timePerOutputToken.p90 * 1000, 1),
        fmt(s.throughput.outputTokensPerSec, 0),
        fmt(s.throughput.requestsPerSec, 2),
        `${fmt(100 * r.disaggregatedShare, 0)}%`,
        `${s.requests.failures}/${s.requests.total}`,
      ]);
    }
  }
  const main = table(
    [
      'load (req/s)',
      'decider',
      'TTFT p50 ms',
      'TTFT p99 ms',
      'TPOT p50 ms',
      'TPOT p90 ms',
      'output tok/s',
      'req/s',
      'disaggregated',
      'failed',
    ],
    rows,
  );

  const streamRows: (string | number)[][] = [];
  for (const r of all) {
    streamRows.push([
      r.rate,
      r.decider,
      ...STREAMS.map((stream) => {
        const p = r.perStream[stream.profile.name];
        return `${ms(p.ttftP50)} / ${ms(p.ttftP99)}`;
      }),
    ]);
  }
  const byStream = table(
    ['load', 'decider', ...STREAMS.map((stream) => `${stream.profile.name} TTFT p50 / p99 ms`)],
    streamRows,
  );
  const reasonRows = all.map((levelResult) => [
    levelResult.rate,
    levelResult.decider,
    Object.entries(levelResult.reasons)
      .map(([reason, count]) => `${reason} ${count}`)
      .join(', '),
    fmt(levelResult.maxSendLagMs, 0),
  ]);
  const reasons = table(['load', 'decider', 'decisions by reason', 'max send lag ms'], reasonRows);

  const verdict: string[] = [];
  if (DECIDERS.includes('cost')) {
    for (const rate of RATES) {
      const at = all.filter((levelResult) => levelResult.rate === rate);
      const cost = at.find((levelResult) => levelResult.decider === 'cost');
      const others = at.filter((levelResult) => levelResult.decider !== 'cost');
      if (!cost || others.length === 0) continue;
      const bestP99 = Math.min(...others.map((levelResult) => levelResult.summary.latency.timeToFirstToken.p99));
      const bestTput = Math.max(...others.map((levelResult) => levelResult.summary.throughput.outputTokensPerSec));
      const p99 = cost.summary.latency.timeToFirstToken.p99;
      const tput = cost.summary.throughput.outputTokensPerSec;
      verdict.push(
        `- ${rate} req/s: cost-based TTFT p99 ${ms(p99)} ms vs best other ${ms(bestP99)} ms (${p99 <= bestP99 * 1.05 ? 'matches or beats' : 'WORSE'}); output ${fmt(tput, 0)} vs best ${fmt(bestTput, 0)} tok/s (${tput >= bestTput * 0.97 ? 'no loss' : 'LOWER'}).`,
      );
    }
  }

  const command = `node dist/bench/decider-eval/run.js ${process.argv.slice(2).join(' ')}`.trim();
  const md = `# Decider evaluation

${PREFILL}P${DECODE}D on \`${PROFILE}\` simulators (step engine), time scale ${TIME_SCALE}, ${SECONDS} simulated seconds of Poisson arrivals per level, seed ${SEED}. Times are simulated.
Workload: ${STREAMS.map((stream) => `${stream.profile.name} ${Math.round(stream.share * 100)}% (${stream.profile.description})`).join('; ')}; answers 64–192 tokens.
Deciders: ${DECIDERS.map((text) => `${text} = ${DECIDER_TYPE[text]}`).join('; ')}.

Command: \`${command}\` (${((Date.now() - started) / 1000).toFixed(0)} s wall)

${main}

TTFT by request class:

${byStream}

${reasons}

${verdict.length > 0 ? `Cost-based against the best of the others (5% tolerance on p99, 3% on throughput):\n\n${verdict.join('\n')}\n` : ''}`;
  mkdirSync(OUT, { recursive: true });
  writeFileSync(path.join(OUT, 'decider-eval.md'), md);
  writeFileSync(
    path.join(OUT, 'decider-eval.json'),
    JSON.stringify({ command, streams: STREAMS, results: all }, null, 2) + '\n',
  );
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  process.stderr.write(`decider-eval failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
