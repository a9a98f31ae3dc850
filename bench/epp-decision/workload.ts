/**
 * Synthetic pools and prompts for the EPP benchmarks: a P/D pool (a quarter prefill, the rest decode) with injected
 * metrics, and completion requests whose prompts share a limited set of prefixes (as chat system prompts do), so the
 * prefix index holds real content and decisions vary between P+D and decode-only.
 */
import { Rng } from '../../src/common/index.js';
import { percentile } from '../common/processes.js';
import { LLM_D_PD_EPP_CONFIG, type EndpointSpec } from '../../src/epp/index.js';

export function poolSpecs(count: number): EndpointSpec[] {
  const prefill = Math.max(1, Math.floor(count / 4));
  return Array.from({ length: count }, (_, i) => ({
    name: `${i < prefill ? 'prefill' : 'decode'}-${i}`,
    namespace: 'bench',
    address: `10.${(i >> 8) & 255}.${i & 255}.1`,
    port: 8000,
    labels: { 'llm-d.ai/role': i < prefill ? 'prefill' : 'decode' },
  }));
}

/** Deterministic pseudo-random numbers (the project's seeded RNG). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

const WORDS =
  'the quick brown fox jumps over lazy dog while seven wizards quietly judge boxing matches in old towns'.split(' ');

function text(random: () => number, bytes: number): string {
  let s = '';
  while (s.length < bytes) s += WORDS[Math.floor(random() * WORDS.length)] + ' ';
  return s.slice(0, bytes);
}

/**
 * Request bodies of about `tokens` estimate tokens (4 bytes each): 3/4 of the prompt is one of `prefixes` shared
 * prefixes (a system prompt), the rest is unique to the request, so the index holds real content, repeat prefixes
 * hit it, and the uncached suffix keeps most decisions P/D.
 */
export class RequestBodies {
  private readonly random: () => number;
  private readonly shared: string[];
  private readonly suffixBytes: number;
  private n = 0;

  constructor(
    readonly tokens: number,
    prefixes = 32,
    seed = 42,
  ) {
    this.random = rng(seed);
    this.shared = Array.from({ length: prefixes }, () => text(this.random, Math.floor(tokens * 4 * 0.75)));
    this.suffixBytes = Math.ceil(tokens * 4 * 0.25);
  }

  next(): Buffer {
    const prefix = this.shared[Math.floor(this.random() * this.shared.length)];
    const suffix = `request ${this.n++} ` + text(this.random, this.suffixBytes);
    return Buffer.from(
      JSON.stringify({ model: 'bench-model', prompt: prefix + suffix.slice(0, this.suffixBytes), max_tokens: 64 }),
    );
  }
}

export interface Percentiles {
  p50: number;
  p99: number;
  mean: number;
}

/** Nearest-rank p50/p99 (the benchmarks' one percentile, bench/common/processes.ts) and the mean. */
export function percentiles(samples: number[]): Percentiles {
  const s = [...samples].sort((left, right) => left - right);
  return {
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    mean: s.reduce((acc, right) => acc + right, 0) / Math.max(1, s.length),
  };
}

/** The benchmarked EndpointPickerConfig: llm-d's pd-epp-config.yaml with scraping off (metrics are injected). */
export const BENCH_CONFIG = `${LLM_D_PD_EPP_CONFIG}dataLayer: {injectDefaults: false}\n`;
