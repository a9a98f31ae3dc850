/** `pd-router tune` flags. */
import { loggingOptions, opt, shutdownOptions, type CommandDefinition } from '../common/index.js';
import { PROFILE_NAMES } from '../dev/profiles.js';
import { TUNE_PRESETS } from './presets.js';
import { parseTopology } from './topology.js';

export const tuneOptions = {
  preset: opt.oneOf(Object.keys(TUNE_PRESETS) as [string, ...string[]], {
    default: 'pd-disaggregation-small',
    description: `Sweep preset: ${Object.entries(TUNE_PRESETS)
      .map(([k, p]) => `${k} (${p.description})`)
      .join('; ')}.`,
  }),
  out: opt.string({ default: 'tune-results', description: 'Directory for results.md, results.json, the plots and every run\'s inference-perf report.' }),
  topologies: opt.list({ default: [], itemHint: 'a list of topologies such as 2P1D, 2P1D-tp1-2, agg4, ms-d1xTP4-p2xTP2, sa-d2xTP4', description: 'Topologies to try instead of the preset\'s.' }),
  concurrency: opt.list({ default: [], itemHint: 'a list of concurrency levels', description: 'Load levels (requests in flight) instead of the preset\'s.' }),
  requestsPerConcurrency: opt.int({ default: 0, min: 0, description: 'Requests per level = this × concurrency (0: the preset\'s; llm-d-benchmark uses 10).' }),
  sloTtft: opt.duration({ default: 0, description: 'TTFT SLO at --slo-percentile (0: the preset\'s).' }),
  sloTpot: opt.duration({ default: 0, description: 'TPOT SLO at --slo-percentile (0: the preset\'s).' }),
  sloPercentile: opt.oneOf(['50', '90', '95', '99'] as const, { default: '90', description: 'Percentile the SLOs apply to.' }),
  gpuBudget: opt.int({ default: 0, min: 0, description: 'Largest GPU count a recommended topology may use (0: the preset\'s).' }),
  profile: opt.oneOf(['', ...PROFILE_NAMES] as [string, ...string[]], { default: '', description: 'Simulator latency profile at TP1 ("": the preset\'s).' }),
  timeScale: opt.number({ default: 0, min: 0, description: 'Simulator time scale (0: the preset\'s; smaller runs faster but needs CPU headroom).' }),
  model: opt.string({ default: 'sim-model', description: 'Model name sent in requests.' }),
  seed: opt.int({ default: 1, min: 0, description: 'Seed for the workload and the simulators.' }),
  endpoint: opt.string({ default: '', description: 'Measure a real deployment at this URL instead of standing up simulators (only the load levels run).' }),
  label: opt.string({ default: 'deployment', description: 'With --endpoint: the name of the deployment in the results.' }),
  gpus: opt.int({ default: 1, min: 1, description: 'With --endpoint: the GPUs the deployment uses (for per-GPU figures).' }),
  ...shutdownOptions,
  ...loggingOptions,
};

export const tuneCommand: CommandDefinition<typeof tuneOptions> = {
  name: 'tune',
  summary: 'xPyD ratio tuning: a design-of-experiments sweep of topologies × load levels, with plots and a recommendation.',
  description: `Against simulators (default) each topology is stood up locally (the dev stack, simulator latencies scaled by
tensor parallelism, step engine so prefill and decode interfere as on real GPUs), every load level is run, and the stack
is torn down. With --endpoint the load levels run against a real deployment. Writes results.md (recommendation, SLO
goodput per topology, every run), results.json, SVG plots and each run's inference-perf report.`,
  options: tuneOptions,
  envPrefix: 'PD_TUNE',
  validate: (optionValues) => {
    const problems: string[] = [];
    for (const t of optionValues.topologies) {
      try {
        parseTopology(t);
      } catch (err) {
        problems.push(`--topologies: "${t}": ${(err as Error).message}`);
      }
    }
    for (const c of optionValues.concurrency) {
      if (!/^[1-9]\d*$/.test(c)) problems.push(`--concurrency: "${c}" is not a positive whole number`);
    }
    if (optionValues.endpoint) {
      try {
        const u = new URL(optionValues.endpoint);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`--endpoint: "${optionValues.endpoint}" is not an http(s) URL`);
      } catch {
        problems.push(`--endpoint: "${optionValues.endpoint}" is not a URL`);
      }
    }
    return problems;
  },
};
