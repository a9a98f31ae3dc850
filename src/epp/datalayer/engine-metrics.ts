/**
 * Which Prometheus series hold an endpoint's metrics, per engine (llm-d `core-metrics-extractor`), and a fast extractor
 * over the text exposition format. The engine comes from the endpoint label `llm-d.ai/engine-type` (legacy
 * `inference.networking.k8s.io/engine-type`), default vllm. When a family has several series, the last one in the
 * exposition wins.
 */
import type { EndpointMetrics, HistogramSummary } from '../../decider/index.js';

type HistogramField = 'prefillTime' | 'timeToFirstToken' | 'promptTokens' | 'kvTransferTime' | 'queueTime';
type CounterField = 'prefixCacheHits' | 'prefixCacheQueries';

export interface EngineMetricNames {
  waiting: string[];
  running: string[];
  kvUsage: string[];
  cacheConfig?: { name: string; blockSizeLabel: string; numBlocksLabel: string };
  histograms: Partial<Record<HistogramField, string>>;
  counters: Partial<Record<CounterField, string>>;
}

export const ENGINES: Readonly<Record<string, EngineMetricNames>> = {
  vllm: {
    waiting: ['vllm:num_requests_waiting'],
    running: ['vllm:num_requests_running'],
    kvUsage: ['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc'],
    cacheConfig: { name: 'vllm:cache_config_info', blockSizeLabel: 'block_size', numBlocksLabel: 'num_gpu_blocks' },
    histograms: {
      prefillTime: 'vllm:request_prefill_time_seconds',
      timeToFirstToken: 'vllm:time_to_first_token_seconds',
      promptTokens: 'vllm:request_prompt_tokens',
      kvTransferTime: 'vllm:nixl_xfer_time_seconds',
      queueTime: 'vllm:request_queue_time_seconds',
    },
    counters: { prefixCacheHits: 'vllm:prefix_cache_hits_total', prefixCacheQueries: 'vllm:prefix_cache_queries_total' },
  },
  sglang: {
    waiting: ['sglang:num_queue_reqs'],
    running: ['sglang:num_running_reqs'],
    kvUsage: ['sglang:token_usage'],
    cacheConfig: { name: 'sglang:cache_config_info', blockSizeLabel: 'page_size', numBlocksLabel: 'num_pages' },
    histograms: { timeToFirstToken: 'sglang:time_to_first_token_seconds' },
    counters: {},
  },
};

export const ENGINE_LABELS = ['llm-d.ai/engine-type', 'inference.networking.k8s.io/engine-type'];

export function engineFor(labels: Readonly<Record<string, string>>): EngineMetricNames {
  for (const l of ENGINE_LABELS) {
    const e = labels[l];
    if (e !== undefined) return ENGINES[e] ?? ENGINES.vllm!;
  }
  return ENGINES.vllm!;
}

export interface Sample {
  labels: string;
  value: number;
}

/** Parses one sample line starting at `at` (just after the name); undefined when malformed. */
function sampleAt(text: string, at: number, lineEnd: number): Sample | undefined {
  let i = at;
  let labels = '';
  if (text.charCodeAt(i) === 123) {
    // Labels: scan to the closing brace outside quotes.
    let inQuote = false;
    const start = i + 1;
    for (i = start; i < lineEnd; i++) {
      const ch = text.charCodeAt(i);
      if (inQuote) {
        if (ch === 92) i++;
        else if (ch === 34) inQuote = false;
      } else if (ch === 34) inQuote = true;
      else if (ch === 125) break;
    }
    labels = text.slice(start, i);
    i++;
  }
  const rest = text.slice(i, lineEnd).trim();
  const space = rest.search(/\s/);
  const token = space < 0 ? rest : rest.slice(0, space);
  const value = token === '+Inf' ? Infinity : token === '-Inf' ? -Infinity : Number(token);
  if (token === '' || (Number.isNaN(value) && token !== 'NaN')) return undefined;
  return { labels, value };
}

/**
 * The last sample of each wanted series name, in one pass over the exposition (comment lines skipped). A name
 * matches exactly: `vllm:num_requests_waiting` does not match `vllm:num_requests_waiting_by_priority`.
 */
export function wantedSamples(text: string, wanted: ReadonlySet<string>): Map<string, Sample> {
  const out = new Map<string, Sample>();
  let pos = 0;
  while (pos < text.length) {
    let lineEnd = text.indexOf('\n', pos);
    if (lineEnd < 0) lineEnd = text.length;
    const c = text.charCodeAt(pos);
    if (c !== 35 && c !== 10) {
      let nameEnd = pos;
      while (nameEnd < lineEnd) {
        const ch = text.charCodeAt(nameEnd);
        if (ch === 123 || ch === 32 || ch === 9) break;
        nameEnd++;
      }
      const name = text.slice(pos, nameEnd);
      if (wanted.has(name)) {
        const s = sampleAt(text, nameEnd, lineEnd);
        if (s) out.set(name, s);
      }
    }
    pos = lineEnd + 1;
  }
  return out;
}

/** The last sample of one series name (exact name, with or without labels), or undefined. */
export function lastSample(text: string, name: string): Sample | undefined {
  return wantedSamples(text, new Set([name])).get(name);
}

/** Label values of a sample's label string (`a="x",b="y"`). */
export function labelValue(labels: string, key: string): string | undefined {
  const re = new RegExp(`(?:^|,)\\s*${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}="((?:[^"\\\\]|\\\\.)*)"`);
  const m = re.exec(labels);
  return m ? m[1]!.replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch)) : undefined;
}

const wantedByEngine = new WeakMap<EngineMetricNames, Set<string>>();

/** Every series name an engine's extraction reads. */
function wantedNames(engine: EngineMetricNames): Set<string> {
  let w = wantedByEngine.get(engine);
  if (!w) {
    w = new Set([...engine.waiting, ...engine.running, ...engine.kvUsage, ...Object.values(engine.counters)]);
    if (engine.cacheConfig) w.add(engine.cacheConfig.name);
    for (const h of Object.values(engine.histograms)) {
      w.add(`${h}_sum`);
      w.add(`${h}_count`);
    }
    wantedByEngine.set(engine, w);
  }
  return w;
}

function first(samples: Map<string, Sample>, names: string[]): number | undefined {
  for (const n of names) {
    const s = samples.get(n);
    if (s && Number.isFinite(s.value)) return s.value;
  }
  return undefined;
}

function histogram(samples: Map<string, Sample>, name: string): HistogramSummary | undefined {
  const sum = samples.get(`${name}_sum`);
  const count = samples.get(`${name}_count`);
  return sum && count ? { sum: sum.value, count: count.value } : undefined;
}

/**
 * Updates `m` from an exposition. Returns the names of required metrics (waiting, running, KV usage) that were
 * missing; present fields are updated either way.
 */
export function extractEngineMetrics(text: string, engine: EngineMetricNames, m: EndpointMetrics): string[] {
  const samples = wantedSamples(text, wantedNames(engine));
  const missing: string[] = [];
  const waiting = first(samples, engine.waiting);
  const running = first(samples, engine.running);
  const kv = first(samples, engine.kvUsage);
  if (waiting === undefined) missing.push(engine.waiting[0]!);
  else m.waitingQueueSize = waiting;
  if (running === undefined) missing.push(engine.running[0]!);
  else m.runningRequests = running;
  if (kv === undefined) missing.push(engine.kvUsage[0]!);
  else m.kvCacheUsage = kv;
  if (engine.cacheConfig) {
    const s = samples.get(engine.cacheConfig.name);
    if (s) {
      const bs = Number(labelValue(s.labels, engine.cacheConfig.blockSizeLabel));
      const nb = Number(labelValue(s.labels, engine.cacheConfig.numBlocksLabel));
      if (bs > 0) m.cacheBlockSize = bs;
      if (nb > 0) m.cacheNumBlocks = nb;
    }
  }
  for (const [field, name] of Object.entries(engine.histograms) as Array<[HistogramField, string]>) {
    const h = histogram(samples, name);
    if (h) m[field] = h;
  }
  for (const [field, name] of Object.entries(engine.counters) as Array<[CounterField, string]>) {
    const s = samples.get(name);
    if (s && Number.isFinite(s.value)) m[field] = s.value;
  }
  return missing;
}
