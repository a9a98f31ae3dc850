/**
 * Workload presets: the upstream guide's profiles (llm-d/llm-d guides/pd-disaggregation, llm-d-benchmark's DoE and the
 * llm-d-router perf suite) and two contrasting shapes for the P/D question.
 */
import type { WorkloadProfile } from './types.js';

/** llm-d-benchmark's pd-disaggregation DoE run treatments: concurrency levels, with num_prompts = 10 × concurrency. */
export const DOE_CONCURRENCY_LEVELS = [1, 8, 32, 64, 128, 256] as const;
/** Prompts per concurrency level in the design-of-experiments presets. */
export const DOE_PROMPTS_PER_CONCURRENCY = 10;

/** The workload presets by name. */
export const WORKLOAD_PRESETS: Record<string, WorkloadProfile> = {
  'pd-guide-5k-250': {
    name: 'pd-guide-5k-250',
    description:
      'llm-d P/D guide benchmark (guide_pd-disaggregation_1.yaml): random data, ISL 5000 / OSL 250 fixed, streaming completions, ignore_eos; run at a constant 45 QPS for 120 s.',
    api: 'completions',
    inputTokens: { kind: 'fixed', value: 5000 },
    outputTokens: { kind: 'fixed', value: 250 },
    suggested: { arrival: { kind: 'constant', rate: 45 }, durationSeconds: 120 },
  },
  'pd-guide-1k-1k': {
    name: 'pd-guide-1k-1k',
    description:
      'llm-d P/D guide low-rate profile (guide_pd-disaggregation_2.yaml): ISL 1024 / OSL 1024 at 1 QPS for 120 s.',
    api: 'completions',
    inputTokens: { kind: 'fixed', value: 1024 },
    outputTokens: { kind: 'fixed', value: 1024 },
    suggested: { arrival: { kind: 'constant', rate: 1 }, durationSeconds: 120 },
  },
  'random-10k-1k': {
    name: 'random-10k-1k',
    description:
      'llm-d-benchmark pd-disaggregation DoE (vllm-benchmark random_concurrent): ISL 10000 / OSL 1000, swept over concurrency 1, 8, 32, 64, 128, 256 with num_prompts = 10 × concurrency.',
    api: 'completions',
    inputTokens: { kind: 'fixed', value: 10_000 },
    outputTokens: { kind: 'fixed', value: 1000 },
    suggested: { arrival: { kind: 'concurrency', concurrency: 8 }, requests: 80 },
  },
  'prefill-heavy': {
    name: 'prefill-heavy',
    description:
      'Long prompts, short outputs (ISL ≈ 4000, OSL ≈ 100, about 40:1): where disaggregation is expected to win on TPOT.',
    api: 'completions',
    inputTokens: { kind: 'normal', mean: 4000, std: 500, min: 2000, max: 6000 },
    outputTokens: { kind: 'normal', mean: 100, std: 20, min: 50, max: 150 },
    suggested: { arrival: { kind: 'poisson', rate: 4 }, durationSeconds: 60 },
  },
  'decode-heavy': {
    name: 'decode-heavy',
    description:
      'Short prompts, long outputs (ISL ≈ 200, OSL ≈ 1000): where disaggregation is expected not to pay off.',
    api: 'completions',
    inputTokens: { kind: 'normal', mean: 200, std: 50, min: 64, max: 400 },
    outputTokens: { kind: 'normal', mean: 1000, std: 200, min: 500, max: 1500 },
    suggested: { arrival: { kind: 'poisson', rate: 4 }, durationSeconds: 60 },
  },
  'shared-prefix': {
    name: 'shared-prefix',
    description:
      'llm-d-router perf suite style (inference-perf shared_prefix): 150 groups sharing a 9500-token system prompt, 500-token questions, 1000 output tokens, chat API; 10 QPS.',
    api: 'chat',
    inputTokens: { kind: 'fixed', value: 10_000 },
    outputTokens: { kind: 'fixed', value: 1000 },
    sharedPrefix: { groups: 150, prefixTokens: 9500 },
    suggested: { arrival: { kind: 'constant', rate: 10 }, durationSeconds: 300 },
  },
};
