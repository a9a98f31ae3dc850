/**
 * Which Prometheus series hold an endpoint's metrics, per engine (llm-d `core-metrics-extractor`), and a fast extractor
 * over the text exposition format. A series is named by a spec, `name` or `name{label=value,...}` (PromQL selector
 * syntax, values quoted or not, as upstream); the last sample in the exposition whose labels match wins. The engine of
 * an endpoint comes from an endpoint label (`llm-d.ai/engine-type`, legacy `inference.networking.k8s.io/engine-type`,
 * or the extractor's `engineLabelKey`), default vllm (or the extractor's `defaultEngine`).
 */
import type { EndpointMetrics, HistogramSummary, LoraInfo } from '../../decider/index.js';

type HistogramField = 'prefillTime' | 'timeToFirstToken' | 'promptTokens' | 'kvTransferTime' | 'queueTime';
type CounterField = 'prefixCacheHits' | 'prefixCacheQueries';

/** A series selector: a metric name and the label values it must carry. */
export interface MetricSpec {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface EngineMetricNames {
  /** Alternatives, first present wins (vLLM renamed its KV-usage gauge). Empty: not read. */
  waiting: MetricSpec[];
  running: MetricSpec[];
  kvUsage: MetricSpec[];
  /** An info gauge whose labels carry the block size and block count. */
  cacheConfig?: { spec: MetricSpec; blockSizeLabel: string; numBlocksLabel: string };
  /** Block size and count as gauge values (TensorRT-LLM). */
  cacheBlockSize?: MetricSpec;
  cacheNumBlocks?: MetricSpec;
  /**
   * The LoRA info gauge (vllm:lora_requests_info): one series per state, valued by its creation time; the newest
   * matching series gives the adapters running and waiting and max_lora. Absent (no adapter loaded yet) is not an error.
   */
  lora?: MetricSpec;
  /** Scalars published as endpoint attributes (core-metrics-extractor customMetrics). */
  custom?: ReadonlyArray<{ attributeKey: string; spec: MetricSpec }>;
  /** pd-router's extra reads for the deciders (vLLM histograms and counters). */
  histograms: Partial<Record<HistogramField, string>>;
  counters: Partial<Record<CounterField, string>>;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Parses `name` or `name{a=b,c="d"}`; throws with the reason. "" is no spec (undefined). */
export function parseMetricSpec(spec: string): MetricSpec | undefined {
  if (spec === '') return undefined;
  const m = /^\s*([^\s{]+)\s*(?:\{([^}]*)\})?\s*$/.exec(spec);
  if (!m || !METRIC_NAME.test(m[1]!)) throw new Error(`not a valid metric specification: "${spec}"`);
  const labels: Record<string, string> = {};
  for (const pair of (m[2] ?? '').split(',').filter((text) => text.trim() !== '')) {
    const l = /^\s*([^\s=]+)\s*=\s*(?:"([^"]*)"|([^",\s]+))\s*$/.exec(pair);
    if (!l || !LABEL_NAME.test(l[1]!)) throw new Error(`invalid label pair "${pair.trim()}" in specification "${spec}"`);
    labels[l[1]!] = l[2] ?? l[3]!;
  }
  return { name: m[1]!, labels };
}

const spec = (name: string, labels: Record<string, string> = {}): MetricSpec => ({ name, labels });

/** The engines upstream's core-metrics-extractor knows, with pd-router's decider reads on vllm and sglang. */
export const ENGINES: Readonly<Record<string, EngineMetricNames>> = {
  vllm: {
    waiting: [spec('vllm:num_requests_waiting')],
    running: [spec('vllm:num_requests_running')],
    kvUsage: [spec('vllm:kv_cache_usage_perc'), spec('vllm:gpu_cache_usage_perc')],
    cacheConfig: { spec: spec('vllm:cache_config_info'), blockSizeLabel: 'block_size', numBlocksLabel: 'num_gpu_blocks' },
    lora: spec('vllm:lora_requests_info'),
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
    waiting: [spec('sglang:num_queue_reqs')],
    running: [spec('sglang:num_running_reqs')],
    kvUsage: [spec('sglang:token_usage')],
    cacheConfig: { spec: spec('sglang:cache_config_info'), blockSizeLabel: 'page_size', numBlocksLabel: 'num_pages' },
    histograms: { timeToFirstToken: 'sglang:time_to_first_token_seconds' },
    counters: {},
  },
  'trtllm-serve': {
    waiting: [spec('trtllm_num_requests_waiting')],
    running: [spec('trtllm_num_requests_running')],
    kvUsage: [spec('trtllm_kv_cache_utilization')],
    cacheBlockSize: spec('trtllm_kv_cache_tokens_per_block'),
    cacheNumBlocks: spec('trtllm_kv_cache_max_blocks'),
    histograms: {},
    counters: {},
  },
  'triton-tensorrt-llm': {
    waiting: [spec('nv_trt_llm_request_metrics', { request_type: 'waiting' })],
    running: [spec('nv_trt_llm_request_metrics', { request_type: 'scheduled' })],
    kvUsage: [spec('nv_trt_llm_kv_cache_block_metrics', { kv_cache_block_type: 'fraction' })],
    cacheBlockSize: spec('nv_trt_llm_kv_cache_block_metrics', { kv_cache_block_type: 'tokens_per' }),
    cacheNumBlocks: spec('nv_trt_llm_kv_cache_block_metrics', { kv_cache_block_type: 'max' }),
    histograms: {},
    counters: {},
  },
  triton: {
    waiting: [spec('nv_inference_pending_request_count')],
    running: [spec('nv_inference_exec_count')],
    kvUsage: [],
    histograms: {},
    counters: {},
  },
};

export const ENGINE_LABELS = ['llm-d.ai/engine-type', 'inference.networking.k8s.io/engine-type'];

/** Engines by name, the label that selects one, and the engine of unlabeled endpoints. */
export class EngineRegistry {
  constructor(
    readonly engines: Readonly<Record<string, EngineMetricNames>> = ENGINES,
    readonly labelKeys: readonly string[] = ENGINE_LABELS,
    readonly defaultEngine = 'vllm',
  ) {
    if (!engines[defaultEngine]) throw new Error(`defaultEngine "${defaultEngine}" not found in engineConfigs`);
  }

  /** An unknown engine label value falls back to the default engine. */
  engineFor(labels: Readonly<Record<string, string>>): EngineMetricNames {
    for (const l of this.labelKeys) {
      const e = labels[l];
      if (e !== undefined) return this.engines[e] ?? this.engines[this.defaultEngine]!;
    }
    return this.engines[this.defaultEngine]!;
  }
}

export const DEFAULT_ENGINES = new EngineRegistry();

export function engineFor(labels: Readonly<Record<string, string>>): EngineMetricNames {
  return DEFAULT_ENGINES.engineFor(labels);
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
 * Every sample of each wanted series name, in exposition order, in one pass (comment lines skipped). A name matches
 * exactly: `vllm:num_requests_waiting` does not match `vllm:num_requests_waiting_by_priority`.
 */
export function wantedSamples(text: string, wanted: ReadonlySet<string>): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>();
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
        if (s) {
          const list = out.get(name);
          if (list) list.push(s);
          else out.set(name, [s]);
        }
      }
    }
    pos = lineEnd + 1;
  }
  return out;
}

/** The last sample of one series name (exact name, with or without labels), or undefined. */
export function lastSample(text: string, name: string): Sample | undefined {
  return wantedSamples(text, new Set([name])).get(name)?.at(-1);
}

/** Label values of a sample's label string (`a="x",b="y"`). */
export function labelValue(labels: string, key: string): string | undefined {
  const re = new RegExp(`(?:^|,)\\s*${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}="((?:[^"\\\\]|\\\\.)*)"`);
  const m = re.exec(labels);
  return m ? m[1]!.replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch)) : undefined;
}

const carries = (sample: Sample, spec: MetricSpec) => Object.entries(spec.labels).every(([k, value]) => labelValue(sample.labels, k) === value);

/** The last sample of a spec's series whose labels carry the spec's label values. */
function pick(samples: Map<string, Sample[]>, spec: MetricSpec): Sample | undefined {
  const list = samples.get(spec.name);
  if (!list) return undefined;
  for (let i = list.length - 1; i >= 0; i--) if (carries(list[i], spec)) return list[i];
  return undefined;
}

const adapters = (csv: string | undefined) => (csv ? csv.split(',').filter((adapter) => adapter !== '') : []);

/**
 * The newest series of the LoRA info gauge (its value is its creation time; on a tie the first listed wins, as upstream).
 * A missing or malformed max_lora keeps the previous value, as upstream.
 */
function loraInfo(samples: Map<string, Sample[]>, spec: MetricSpec, previous: LoraInfo | undefined): LoraInfo | undefined {
  let newest: Sample | undefined;
  for (const s of samples.get(spec.name) ?? []) if (carries(s, spec) && (!newest || s.value > newest.value)) newest = s;
  if (!newest) return undefined;
  const max = Number.parseInt(labelValue(newest.labels, 'max_lora') ?? '', 10);
  return { running: adapters(labelValue(newest.labels, 'running_lora_adapters')), waiting: adapters(labelValue(newest.labels, 'waiting_lora_adapters')), maxLoras: Number.isFinite(max) ? max : (previous?.maxLoras ?? 0) };
}

const wantedByEngine = new WeakMap<EngineMetricNames, Set<string>>();

/** Every series name an engine's extraction reads. */
function wantedNames(engine: EngineMetricNames): Set<string> {
  let w = wantedByEngine.get(engine);
  if (!w) {
    w = new Set([...engine.waiting, ...engine.running, ...engine.kvUsage].map((metricSpec) => metricSpec.name));
    for (const c of Object.values(engine.counters)) w.add(c);
    if (engine.cacheConfig) w.add(engine.cacheConfig.spec.name);
    if (engine.cacheBlockSize) w.add(engine.cacheBlockSize.name);
    if (engine.cacheNumBlocks) w.add(engine.cacheNumBlocks.name);
    if (engine.lora) w.add(engine.lora.name);
    for (const c of engine.custom ?? []) w.add(c.spec.name);
    for (const h of Object.values(engine.histograms)) {
      w.add(`${h}_sum`);
      w.add(`${h}_count`);
    }
    wantedByEngine.set(engine, w);
  }
  return w;
}

function first(samples: Map<string, Sample[]>, specs: readonly MetricSpec[]): number | undefined {
  for (const sp of specs) {
    const s = pick(samples, sp);
    if (s && Number.isFinite(s.value)) return s.value;
  }
  return undefined;
}

function histogram(samples: Map<string, Sample[]>, name: string): HistogramSummary | undefined {
  const sum = samples.get(`${name}_sum`)?.at(-1);
  const count = samples.get(`${name}_count`)?.at(-1);
  return sum && count ? { sum: sum.value, count: count.value } : undefined;
}

function describe(sp: MetricSpec): string {
  const l = Object.entries(sp.labels);
  return l.length ? `${sp.name}{${l.map(([k, value]) => `${k}="${value}"`).join(',')}}` : sp.name;
}

/**
 * Updates `m` from an exposition. Returns the specs of configured metrics (waiting, running, KV usage, block size and
 * count gauges, custom metrics) that were missing; present fields are updated either way.
 */
export function extractEngineMetrics(text: string, engine: EngineMetricNames, metrics: EndpointMetrics): string[] {
  const samples = wantedSamples(text, wantedNames(engine));
  const missing: string[] = [];
  const read = (specs: readonly MetricSpec[], set: (value: number) => void) => {
    if (specs.length === 0) return;
    const v = first(samples, specs);
    if (v === undefined) missing.push(describe(specs[0]!));
    else set(v);
  };
  read(engine.waiting, (value) => (metrics.waitingQueueSize = value));
  read(engine.running, (value) => (metrics.runningRequests = value));
  read(engine.kvUsage, (value) => (metrics.kvCacheUsage = value));
  if (engine.cacheConfig) {
    const s = pick(samples, engine.cacheConfig.spec);
    if (s) {
      const bs = Number(labelValue(s.labels, engine.cacheConfig.blockSizeLabel));
      const nb = Number(labelValue(s.labels, engine.cacheConfig.numBlocksLabel));
      if (bs > 0) metrics.cacheBlockSize = bs;
      if (nb > 0) metrics.cacheNumBlocks = nb;
    }
  }
  if (engine.cacheBlockSize) read([engine.cacheBlockSize], (value) => value > 0 && (metrics.cacheBlockSize = Math.trunc(value)));
  if (engine.cacheNumBlocks) read([engine.cacheNumBlocks], (value) => value > 0 && (metrics.cacheNumBlocks = Math.trunc(value)));
  if (engine.lora) {
    const lora = loraInfo(samples, engine.lora, metrics.lora);
    if (lora) metrics.lora = lora;
  }
  for (const custom of engine.custom ?? []) read([custom.spec], (value) => (metrics.custom = { ...metrics.custom, [custom.attributeKey]: value }));
  for (const [field, name] of Object.entries(engine.histograms) as Array<[HistogramField, string]>) {
    const h = histogram(samples, name);
    if (h) metrics[field] = h;
  }
  for (const [field, name] of Object.entries(engine.counters) as Array<[CounterField, string]>) {
    const s = samples.get(name)?.at(-1);
    if (s && Number.isFinite(s.value)) metrics[field] = s.value;
  }
  return missing;
}
