/**
 * `pd-router loadgen` flags (flag > file > env > default, env prefix PD_LOADGEN) and their resolution into the options
 * of one run: the preset or profile file, then length/API/prefix overrides, then the arrival and the stop condition.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { request } from 'undici';
import { ConfigError, loggingOptions, opt, type CommandDefinition, type OptionValues } from '../common/index.js';
import { DOE_PROMPTS_PER_CONCURRENCY, WORKLOAD_PRESETS } from './presets.js';
import { formatLengthDistribution, parseLengthDistribution } from './random.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SEED } from './runner.js';
import { workloadProfileSchema } from './schema.js';
import type { ArrivalProcess, LoadRunOptions, WorkloadProfile } from './types.js';

const PRESET_NAMES = Object.keys(WORKLOAD_PRESETS) as [string, ...string[]];

export const loadgenOptions = {
  url: opt.string({ default: 'http://127.0.0.1:8080', description: 'Base URL of the OpenAI-compatible server (default: the gateway of `pd-router dev`).' }),
  model: opt.string({ default: '', description: 'Model name sent in requests; empty asks the server (first model of GET /v1/models).' }),
  preset: opt.oneOf(PRESET_NAMES, { default: 'pd-guide-5k-250', description: 'Workload preset (listed below).' }),
  profileFile: opt.string({ default: '', description: 'YAML or JSON workload profile file; replaces --preset.' }),
  api: opt.oneOf(['', 'chat', 'completions'] as const, { default: '', description: 'API to call; empty keeps the profile\'s.' }),
  inputTokens: opt.string({
    default: '',
    description: 'Input length: N, MIN-MAX (uniform), normal:MEAN,STD,MIN,MAX or lognormal:MEAN,STD,MIN,MAX; empty keeps the profile\'s.',
  }),
  outputTokens: opt.string({ default: '', description: 'Output length (max_tokens = min_tokens, ignore_eos), same syntax; empty keeps the profile\'s.' }),
  prefixGroups: opt.int({ default: 0, min: 0, description: 'Shared-prefix groups (with --prefix-tokens); 0 keeps the profile\'s.' }),
  prefixTokens: opt.int({ default: 0, min: 0, description: 'Tokens of each shared prefix (included in the input length); 0 keeps the profile\'s.' }),
  arrival: opt.oneOf(['', 'constant', 'poisson', 'concurrency'] as const, {
    default: '',
    description: 'Arrival process; empty: concurrency when --concurrency is set, constant when --rate is set, else the preset\'s.',
  }),
  rate: opt.number({ default: 0, min: 0, description: 'Requests per simulated second for constant and poisson arrivals.' }),
  concurrency: opt.int({ default: 0, min: 0, description: 'Requests in flight for the closed loop.' }),
  maxConcurrency: opt.int({ default: 0, min: 0, description: 'Open-loop arrivals: at most this many in flight, later ones wait (0 = unlimited).' }),
  requests: opt.int({
    default: 0,
    min: 0,
    description: 'Stop after this many requests; with neither this nor --duration: 10 × concurrency (the DoE rule), else the preset\'s.',
  }),
  duration: opt.duration({ default: 0, description: 'Stop starting requests after this much simulated time (0 = no limit).' }),
  timeScale: opt.number({ default: 1, min: 0, description: 'The simulators\' --time-scale: rates and timeouts run scaled, results are reported in simulated time.' }),
  seed: opt.int({ default: DEFAULT_SEED, description: 'Seed for lengths, arrivals and shared prefixes.' }),
  timeout: opt.duration({ default: DEFAULT_REQUEST_TIMEOUT_MS, min: 1, description: 'Per-request timeout (simulated time).' }),
  header: opt.list({ default: [], itemHint: 'a list of "Name: value" headers', description: 'Extra request header "Name: value" (repeatable).' }),
  out: opt.string({ default: '', description: 'Directory for report.yaml, report.json, summary.md and samples.jsonl; empty prints the summary only.' }),
  progress: opt.oneOf(['auto', 'on', 'off'] as const, { default: 'auto', description: 'Progress on stderr: auto = a bar when stderr is a terminal.' }),
  shutdownTimeout: opt.duration({
    default: 10_000,
    description: 'On SIGTERM/SIGINT the run stops at once (requests in flight are cancelled); how long reporting the finished ones may take.',
  }),
  ...loggingOptions,
};

export type LoadgenConfig = OptionValues<typeof loadgenOptions>;

const presetList = Object.values(WORKLOAD_PRESETS)
  .map((profile) => `  ${profile.name.padEnd(17)}${profile.api}, input ${formatLengthDistribution(profile.inputTokens)}, output ${formatLengthDistribution(profile.outputTokens)}: ${profile.description}`)
  .join('\n');

export const loadgenCommand: CommandDefinition<typeof loadgenOptions> = {
  name: 'loadgen',
  summary: 'LLM load generator: streams a workload at an OpenAI-compatible server and reports TTFT, TPOT, ITL, throughput, goodput.',
  description: `Sends streaming chat or completions requests (ignore_eos, max_tokens = min_tokens = the drawn output length,
stream_options.include_usage) with prompts built to an exact length for the simulator's tokenizer, and measures every
request from its SSE stream. Writes a report in the inference-perf / llm-d benchmark report schema and a Markdown summary.`,
  options: loadgenOptions,
  envPrefix: 'PD_LOADGEN',
  positional: 'url',
  validate: (optionValues) =>
    [
      optionValues.timeScale <= 0 ? '--time-scale must be greater than 0' : undefined,
      optionValues.rate > 0 && optionValues.concurrency > 0 && optionValues.arrival === '' ? 'give --rate or --concurrency, not both (or choose with --arrival)' : undefined,
      (optionValues.prefixGroups > 0) !== (optionValues.prefixTokens > 0) ? '--prefix-groups and --prefix-tokens go together' : undefined,
    ].filter((message): message is string => message !== undefined),
  epilog: `Presets:\n${presetList}`,
};

/** Parses `Name: value` header flags. */
export function parseHeaders(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(':');
    if (i <= 0) throw new ConfigError(`invalid value "${h}" for --header: expected "Name: value"`);
    out[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return out;
}

function loadProfileFile(file: string): WorkloadProfile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`--profile-file ${file}: ${(e as Error).message}`);
  }
  const p = workloadProfileSchema.safeParse(raw);
  if (!p.success) throw new ConfigError(`--profile-file ${file}: ${p.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return p.data;
}

/** The profile after --profile-file/--preset and the length, API and prefix overrides. */
export function resolveProfile(optionValues: LoadgenConfig): WorkloadProfile {
  const base = optionValues.profileFile ? loadProfileFile(optionValues.profileFile) : WORKLOAD_PRESETS[optionValues.preset]!;
  const p: WorkloadProfile = structuredClone(base);
  const overridden: string[] = [];
  try {
    if (optionValues.inputTokens) {
      p.inputTokens = parseLengthDistribution(optionValues.inputTokens);
      overridden.push(`input ${optionValues.inputTokens}`);
    }
  } catch (e) {
    throw new ConfigError(`invalid value "${optionValues.inputTokens}" for --input-tokens: ${(e as Error).message}`);
  }
  try {
    if (optionValues.outputTokens) {
      p.outputTokens = parseLengthDistribution(optionValues.outputTokens);
      overridden.push(`output ${optionValues.outputTokens}`);
    }
  } catch (e) {
    throw new ConfigError(`invalid value "${optionValues.outputTokens}" for --output-tokens: ${(e as Error).message}`);
  }
  if (optionValues.api) {
    p.api = optionValues.api;
    overridden.push(`${optionValues.api} API`);
  }
  if (optionValues.prefixGroups > 0) {
    p.sharedPrefix = { groups: optionValues.prefixGroups, prefixTokens: optionValues.prefixTokens };
    overridden.push(`${optionValues.prefixGroups}×${optionValues.prefixTokens} shared prefix`);
  }
  if (overridden.length > 0) {
    p.name = `${base.name}-custom`;
    p.description = `${p.description} Overridden: ${overridden.join(', ')}.`;
  }
  return p;
}

/** The arrival process and stop condition from the flags, falling back to the profile's suggestion. */
export function resolveArrival(optionValues: LoadgenConfig, profile: WorkloadProfile): { arrival: ArrivalProcess; requests?: number; durationSeconds?: number } {
  const suggested = profile.suggested;
  const kind = optionValues.arrival || (optionValues.concurrency > 0 ? 'concurrency' : optionValues.rate > 0 ? 'constant' : undefined);
  let arrival: ArrivalProcess;
  let fromSuggestion = false;
  if (kind === undefined) {
    if (!suggested) throw new ConfigError(`profile ${profile.name} suggests no arrival process: give --rate or --concurrency`);
    arrival = suggested.arrival;
    fromSuggestion = true;
  } else if (kind === 'concurrency') {
    const c = optionValues.concurrency || (suggested?.arrival.kind === 'concurrency' ? suggested.arrival.concurrency : 0);
    if (c <= 0) throw new ConfigError('--arrival concurrency needs --concurrency');
    arrival = { kind, concurrency: c };
  } else {
    const r = optionValues.rate || (suggested && suggested.arrival.kind !== 'concurrency' ? suggested.arrival.rate : 0);
    if (r <= 0) throw new ConfigError(`--arrival ${kind} needs --rate`);
    arrival = { kind, rate: r };
  }
  const out: { arrival: ArrivalProcess; requests?: number; durationSeconds?: number } = { arrival };
  if (optionValues.requests > 0) out.requests = optionValues.requests;
  if (optionValues.duration > 0) out.durationSeconds = optionValues.duration / 1000;
  if (out.requests === undefined && out.durationSeconds === undefined) {
    if (fromSuggestion && (suggested?.requests !== undefined || suggested?.durationSeconds !== undefined)) {
      if (suggested.requests !== undefined) out.requests = suggested.requests;
      if (suggested.durationSeconds !== undefined) out.durationSeconds = suggested.durationSeconds;
    } else if (arrival.kind === 'concurrency') {
      out.requests = DOE_PROMPTS_PER_CONCURRENCY * arrival.concurrency;
    } else {
      out.durationSeconds = suggested?.durationSeconds ?? 60;
    }
  }
  return out;
}

/** The first model the server lists (GET /v1/models), for runs without --model. */
export async function discoverModel(baseUrl: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<string> {
  const u = new URL(baseUrl);
  const base = u.pathname.replace(/\/+$/, '');
  u.pathname = `${base.endsWith('/v1') ? base : base + '/v1'}/models`;
  let body: unknown;
  try {
    const res = await request(u, { headers, signal: AbortSignal.timeout(timeoutMs) });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`HTTP ${res.statusCode}`);
    }
    body = await res.body.json();
  } catch (e) {
    throw new ConfigError(`--model not given and GET ${u.href} failed (${(e as Error).message}): give --model`);
  }
  const id = (body as { data?: Array<{ id?: unknown }> })?.data?.[0]?.id;
  if (typeof id !== 'string') throw new ConfigError(`--model not given and GET ${u.href} lists no model: give --model`);
  return id;
}

/** Everything a run needs from the flags (the model is discovered when not given). */
export async function resolveRunOptions(optionValues: LoadgenConfig): Promise<LoadRunOptions> {
  try {
    new URL(optionValues.url);
  } catch {
    throw new ConfigError(`invalid value "${optionValues.url}" for --url: expected a URL such as http://127.0.0.1:8080`);
  }
  const headers = parseHeaders(optionValues.header);
  const profile = resolveProfile(optionValues);
  const { arrival, requests, durationSeconds } = resolveArrival(optionValues, profile);
  const model = optionValues.model || (await discoverModel(optionValues.url, headers));
  const o: LoadRunOptions = { baseUrl: optionValues.url, model, profile, arrival, timeScale: optionValues.timeScale, seed: optionValues.seed, requestTimeoutMs: optionValues.timeout, headers };
  if (requests !== undefined) o.requests = requests;
  if (durationSeconds !== undefined) o.durationSeconds = durationSeconds;
  if (optionValues.maxConcurrency > 0) o.maxConcurrency = optionValues.maxConcurrency;
  return o;
}
