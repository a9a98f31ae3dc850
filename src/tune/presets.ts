/**
 * Sweep presets. `pd-disaggregation` is llm-d-benchmark's design of experiments (experiments/pd-disaggregation.yaml:
 * 9 topologies × 6 concurrency levels, random 10000/1000, num_prompts = 10 × concurrency); the `-small` presets are
 * sized for a laptop (6 topologies × 4 levels, shorter sequences) and finish in minutes on simulators.
 */
import type { SloTargets, WorkloadProfile } from '../loadgen/index.js';
import type { ProfileName } from '../dev/profiles.js';

/** A sweep preset: topologies, load levels, workload and SLO. */
export interface TunePreset {
  description: string;
  /** Simulator latency profile at TP1, scaled per role by TP. */
  profile: ProfileName;
  workload: WorkloadProfile;
  topologies: string[];
  loadKind: 'concurrency';
  loads: number[];
  /** Requests per load level: DoE proportional scaling, num_prompts = factor × concurrency. */
  requestsPerConcurrency: number;
  timeScale: number;
  slo: SloTargets;
  gpuBudget: number;
}

const prefillHeavySmall: WorkloadProfile = {
  name: 'prefill-heavy-small',
  description: 'Long prompts, short answers (3000 ± 500 in / 64 out): the shape P/D is for (llm-d: ISL:OSL ≥ 10:1).',
  api: 'chat',
  inputTokens: { kind: 'normal', mean: 3000, std: 500, min: 1500, max: 4500 },
  outputTokens: { kind: 'fixed', value: 64 },
};

const decodeHeavySmall: WorkloadProfile = {
  name: 'decode-heavy-small',
  description: 'Short prompts, long answers (128 in / 384 out): little prefill for P/D to take off the decode pods.',
  api: 'chat',
  inputTokens: { kind: 'uniform', min: 96, max: 160 },
  outputTokens: { kind: 'fixed', value: 384 },
};

const SMALL_TOPOLOGIES = ['agg2', 'agg4', '1P1D', '2P1D', '3P1D', '2P2D'];

/** The sweep presets by name. */
export const TUNE_PRESETS: Record<string, TunePreset> = {
  'pd-disaggregation-small': {
    description:
      'Prefill-heavy workload on 8B/H100 simulators: P/D vs aggregated, 6 topologies up to 4 GPUs × 4 concurrency levels.',
    profile: '8b-h100',
    workload: prefillHeavySmall,
    topologies: SMALL_TOPOLOGIES,
    loadKind: 'concurrency',
    loads: [4, 8, 16, 32],
    requestsPerConcurrency: 6,
    timeScale: 0.25,
    slo: { tpotMs: 40, ttftMs: 4000, percentile: 90 },
    gpuBudget: 4,
  },
  'decode-heavy-small': {
    description: 'Decode-heavy workload (short prompts, long answers) on the same topologies: where P/D does not pay.',
    profile: '8b-h100',
    workload: decodeHeavySmall,
    topologies: SMALL_TOPOLOGIES,
    loadKind: 'concurrency',
    loads: [4, 8, 16, 32],
    requestsPerConcurrency: 3,
    timeScale: 0.25,
    slo: { tpotMs: 40, ttftMs: 4000, percentile: 90 },
    gpuBudget: 4,
  },
  'pd-disaggregation': {
    description:
      "llm-d-benchmark's P/D design of experiments: 9 topologies × 6 concurrency levels, random 10000/1000 (70B/TP8 profile). Takes hours on a laptop.",
    profile: '70b-tp8',
    workload: {
      name: 'random-10k-1k',
      description: 'random_concurrent, ISL 10000 / OSL 1000 (llm-d-benchmark DoE).',
      api: 'completions',
      inputTokens: { kind: 'fixed', value: 10000 },
      outputTokens: { kind: 'fixed', value: 1000 },
    },
    topologies: [
      'ms-d1xTP8-p8xTP1',
      'ms-d1xTP8-p4xTP2',
      'ms-d1xTP8-p2xTP4',
      'ms-d1xTP4-p6xTP2',
      'ms-d2xTP4-p4xTP2',
      'ms-d3xTP4-p2xTP2',
      'sa-d1xTP2',
      'sa-d1xTP4',
      'sa-d1xTP8',
    ],
    loadKind: 'concurrency',
    loads: [1, 8, 32, 64, 128, 256],
    requestsPerConcurrency: 10,
    timeScale: 0.1,
    slo: { tpotMs: 50, ttftMs: 10000, percentile: 90 },
    gpuBudget: 16,
  },
};
