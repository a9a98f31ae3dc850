/**
 * Simulator latency profiles for the local stack and tuning runs, from llm-d-inference-sim's published profiles
 * (docs/latency-profiles.md): 8B on H100 and 70B on TP8 H100s, and an edge L40S. Where the published profile leaves a
 * value out, the value here is an assumption, marked as such. `zero` has no latency (tests, overhead benchmarks).
 */
import type { SimConfig } from '../sim/index.js';

export interface LatencyProfile {
  description: string;
  sim: Partial<SimConfig>;
}

export const LATENCY_PROFILES = {
  '8b-h100': {
    description:
      'Llama-class 8B on one H100: ITL 12ms±2, prefill 30ms + 250µs/token (σ 5ms), KV transfer 3µs/token, load factor 2.0',
    sim: {
      latencyCalculator: 'per-token',
      interTokenLatency: 12,
      interTokenLatencyStdDev: 2,
      prefillOverhead: 30,
      prefillTimePerToken: 0.25,
      prefillTimeStdDev: 5,
      kvCacheTransferTimePerToken: 0.003,
      kvCacheTransferTimeStdDev: 0.2,
      timeFactorUnderLoad: 2,
      maxNumSeqs: 256,
      // An 8B model in fp16 on an 80 GB H100 leaves room for roughly 400k tokens of KV cache.
      kvCacheSize: 25_000,
      maxModelLen: 32_768,
    },
  },
  '70b-tp8': {
    description:
      '70B on 8×H100 (TP8): ITL 25ms±4, prefill overhead 80ms, KV transfer 8µs/token, load factor 3.0 (per-token prefill 0.3ms is assumed)',
    sim: {
      latencyCalculator: 'per-token',
      interTokenLatency: 25,
      interTokenLatencyStdDev: 4,
      prefillOverhead: 80,
      prefillTimePerToken: 0.3,
      prefillTimeStdDev: 10,
      kvCacheTransferTimePerToken: 0.008,
      kvCacheTransferTimeStdDev: 0.5,
      timeFactorUnderLoad: 3,
      maxNumSeqs: 256,
      kvCacheSize: 40_000,
      maxModelLen: 32_768,
    },
  },
  'edge-l40s': {
    description:
      'Small model on an L40S: KV transfer 5ms±1 (constant), load factor 1.5 (ITL 20ms, prefill 40ms + 400µs/token are assumed)',
    sim: {
      latencyCalculator: 'constant',
      timeToFirstToken: 120,
      timeToFirstTokenStdDev: 20,
      interTokenLatency: 20,
      interTokenLatencyStdDev: 3,
      kvCacheTransferLatency: 5,
      kvCacheTransferLatencyStdDev: 1,
      timeFactorUnderLoad: 1.5,
      maxNumSeqs: 64,
      kvCacheSize: 8_000,
      maxModelLen: 16_384,
    },
  },
  zero: {
    description: 'No latency: every answer as fast as the machine allows (tests, router overhead benchmarks)',
    sim: { maxNumSeqs: 1024, maxWaitingQueueLength: 100_000, kvCacheSize: 1_000_000, maxModelLen: 131_072 },
  },
} satisfies Record<string, LatencyProfile>;

export type ProfileName = keyof typeof LATENCY_PROFILES;
export const PROFILE_NAMES = Object.keys(LATENCY_PROFILES) as [ProfileName, ...ProfileName[]];
