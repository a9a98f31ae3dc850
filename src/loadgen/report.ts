/**
 * Reports of a run: the llm-d benchmark report (v0.1, which llm-d-benchmark converts inference-perf results into) with
 * inference-perf's own config sections (load, data, server) under `scenario`, and a Markdown summary.
 */
import { formatLengthDistribution, maxLength, nominalMean } from './random.js';
import { STAT_KEYS } from './stats.js';
import type { ArrivalProcess, LengthDistribution, RunResult, StatSummary } from './types.js';
import { isObject } from '../common/json.js';

export const REPORT_VERSION = '0.1';

function stats(statSummary: StatSummary, units: string): Record<string, unknown> {
  const out: Record<string, unknown> = { units };
  for (const k of STAT_KEYS) out[k] = statSummary[k] ?? 0;
  return out;
}

/** inference-perf's distribution block ({min, max, mean, std}), plus our `kind`. */
function distribution(lengthDistribution: LengthDistribution): Record<string, unknown> {
  const min = lengthDistribution.kind === 'fixed' ? lengthDistribution.value : lengthDistribution.min;
  const std = lengthDistribution.kind === 'fixed' ? 0 : lengthDistribution.kind === 'uniform' ? (lengthDistribution.max - lengthDistribution.min) / Math.sqrt(12) : lengthDistribution.std;
  return { kind: lengthDistribution.kind, min, max: maxLength(lengthDistribution), mean: nominalMean(lengthDistribution), std };
}

function loadSection(runResult: RunResult): Record<string, unknown> {
  const o = runResult.options;
  const a = o.arrival;
  const base: Record<string, unknown> = {
    name: 'pd-router-loadgen',
    type: a.kind === 'concurrency' ? 'concurrent' : a.kind,
  };
  if (a.kind === 'concurrency') base.concurrency = a.concurrency;
  else base.stages = [{ rate: a.rate, ...(o.durationSeconds !== undefined ? { duration: o.durationSeconds } : {}) }];
  if (o.requests !== undefined) base.num_requests = o.requests;
  base.args = {
    arrival: a,
    requests: o.requests ?? null,
    duration_seconds: o.durationSeconds ?? null,
    time_scale: o.timeScale ?? 1,
    seed: o.seed ?? null,
    request_timeout_ms: o.requestTimeoutMs ?? null,
    max_concurrency: o.maxConcurrency ?? null,
  };
  return base;
}

/**
 * The report object: `version`, `scenario.{description, model, load, data, server}` (the caller's `scenario` entries
 * are merged in, one level deep, e.g. a topology), and `metrics.{time, requests, latency, throughput}` in
 * inference-perf units: latencies in seconds (`s`, per-token ones `s/token`), lengths in tokens (`count`).
 */
export function inferencePerfReport(runResult: RunResult, scenario: Record<string, unknown> = {}): Record<string, unknown> {
  const o = runResult.options;
  const p = o.profile;
  const s = runResult.summary;
  const data: Record<string, unknown> = {
    type: p.sharedPrefix ? 'shared_prefix' : 'random',
    profile: p.name,
    input_distribution: distribution(p.inputTokens),
    output_distribution: distribution(p.outputTokens),
  };
  if (p.sharedPrefix) {
    data.shared_prefix = { num_groups: p.sharedPrefix.groups, system_prompt_len: p.sharedPrefix.prefixTokens };
  }
  const sc: Record<string, unknown> = {
    description: p.description,
    model: { name: o.model },
    load: loadSection(runResult),
    data,
    server: {
      type: 'openai',
      model_name: o.model,
      base_url: o.baseUrl,
      ignore_eos: true,
      api: { type: p.api === 'chat' ? 'chat' : 'completion', streaming: true },
    },
  };
  for (const [k, v] of Object.entries(scenario)) sc[k] = isObject(v) && isObject(sc[k]) ? { ...(sc[k] as object), ...v } : v;
  const lat = s.latency;
  return {
    version: REPORT_VERSION,
    scenario: sc,
    metrics: {
      time: {
        duration: s.durationSeconds,
        ...(runResult.startedAt !== undefined ? { start: runResult.startedAt / 1000 } : {}),
        ...(runResult.endedAt !== undefined ? { stop: runResult.endedAt / 1000 } : {}),
      },
      requests: {
        total: s.requests.total,
        failures: s.requests.failures,
        incomplete: runResult.cancelled ?? 0,
        input_length: stats(s.requests.inputLength, 'count'),
        output_length: stats(s.requests.outputLength, 'count'),
      },
      latency: {
        time_to_first_token: stats(lat.timeToFirstToken, 's'),
        time_per_output_token: stats(lat.timePerOutputToken, 's/token'),
        normalized_time_per_output_token: stats(lat.normalizedTimePerOutputToken, 's/token'),
        inter_token_latency: stats(lat.interTokenLatency, 's/token'),
        request_latency: stats(lat.requestLatency, 's'),
      },
      throughput: {
        input_tokens_per_sec: s.throughput.inputTokensPerSec ?? 0,
        output_tokens_per_sec: s.throughput.outputTokensPerSec,
        total_tokens_per_sec: s.throughput.totalTokensPerSec,
        requests_per_sec: s.throughput.requestsPerSec,
      },
      metadata: {
        time_scale: o.timeScale ?? 1,
        simulated_time: (o.timeScale ?? 1) !== 1,
        successes: s.requests.total - s.requests.failures,
        aborted: runResult.aborted ?? false,
      },
    },
  };
}

function arrivalText(process: ArrivalProcess): string {
  switch (process.kind) {
    case 'constant':
      return `constant ${process.rate} req/s`;
    case 'poisson':
      return `Poisson ${process.rate} req/s`;
    case 'concurrency':
      return `closed loop, concurrency ${process.concurrency}`;
  }
}

const num = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : '–');

/** A short Markdown report: the set-up, throughput, latency percentiles (ms) and the most common failures. */
export function markdownSummary(runResult: RunResult): string {
  const o = runResult.options;
  const s = runResult.summary;
  const ok = s.requests.total - s.requests.failures;
  const lines = [
    `# Load run: ${o.profile.name}`,
    '',
    `- Target: ${o.baseUrl} (model \`${o.model}\`, ${o.profile.api} API, streaming)`,
    `- Workload: input ${formatLengthDistribution(o.profile.inputTokens)} tokens, output ${formatLengthDistribution(o.profile.outputTokens)} tokens` +
      (o.profile.sharedPrefix ? `, ${o.profile.sharedPrefix.groups} shared prefixes of ${o.profile.sharedPrefix.prefixTokens} tokens` : ''),
    `- Arrival: ${arrivalText(o.arrival)}; stop after ${[o.requests !== undefined ? `${o.requests} requests` : '', o.durationSeconds !== undefined ? `${o.durationSeconds} s` : ''].filter(Boolean).join(' or ')}`,
    `- Duration: ${num(s.durationSeconds)} s${(o.timeScale ?? 1) !== 1 ? ` simulated (time scale ${o.timeScale})` : ''}; seed ${o.seed ?? 1}`,
    `- Requests: ${s.requests.total} finished, ${ok} succeeded, ${s.requests.failures} failed${runResult.cancelled ? `, ${runResult.cancelled} cancelled` : ''}${runResult.aborted ? ' (run aborted)' : ''}`,
    '',
    '| Throughput | |',
    '|---|---:|',
    `| Requests/s | ${num(s.throughput.requestsPerSec, 3)} |`,
    `| Output tokens/s | ${num(s.throughput.outputTokensPerSec, 1)} |`,
    `| Total tokens/s | ${num(s.throughput.totalTokensPerSec, 1)} |`,
    '',
    '| Latency (ms) | mean | p50 | p90 | p95 | p99 | p99.9 | max |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const row = (name: string, st: StatSummary) =>
    `| ${name} | ${[st.mean, st.p50, st.p90, st.p95, st.p99, st.p99p9, st.max].map((value) => (st.count > 0 ? num(value * 1000) : '–')).join(' | ')} |`;
  lines.push(
    row('TTFT', s.latency.timeToFirstToken),
    row('TPOT', s.latency.timePerOutputToken),
    row('ITL', s.latency.interTokenLatency),
    row('Normalized TPOT', s.latency.normalizedTimePerOutputToken),
    row('Request latency', s.latency.requestLatency),
  );
  lines.push(
    '',
    `Input length: mean ${num(s.requests.inputLength.mean, 1)}, p50 ${num(s.requests.inputLength.p50, 0)}; output length: mean ${num(s.requests.outputLength.mean, 1)}, p50 ${num(s.requests.outputLength.p50, 0)} tokens.`,
  );
  const errors = new Map<string, number>();
  for (const x of runResult.samples) if (!x.ok) errors.set(x.error ?? `HTTP ${x.status}`, (errors.get(x.error ?? `HTTP ${x.status}`) ?? 0) + 1);
  if (errors.size > 0) {
    lines.push('', '| Failure | count |', '|---|---:|');
    for (const [e, n] of [...errors].sort((left, right) => right[1] - left[1]).slice(0, 10)) lines.push(`| ${e.replace(/\|/g, '\\|').slice(0, 160)} | ${n} |`);
  }
  return lines.join('\n') + '\n';
}
