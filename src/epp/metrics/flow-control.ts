/**
 * Flow-control metrics with upstream's names, help, types and labels: GAIE v1.5's `inference_extension_flow_control_*`
 * (gaie family) and llm-d-router's `llm_d_epp_flow_control_*` (llm-d family), `metrics/metrics.go` and
 * `metrics/llm_d_router_metrics.go`. Fairness ids and model names go through a cardinality guard.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { FlowGateObserver, FlowOutcome, FlowRequest } from '../flowcontrol/gate.js';
import type { ProgramAwareObserver } from '../flowcontrol/policies.js';
import { LabelGuard, type MetricsFamily } from '../metrics.js';

const QUEUE_BUCKETS = [
  0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const FLOW_LABELS = ['fairness_id', 'priority', 'inference_pool', 'model_name', 'target_model_name'] as const;
const DURATION_LABELS = [
  'fairness_id',
  'priority',
  'outcome',
  'inference_pool',
  'model_name',
  'target_model_name',
] as const;

interface Set {
  duration: Histogram<(typeof DURATION_LABELS)[number]>;
  size: Gauge<(typeof FLOW_LABELS)[number]>;
  bytes: Gauge<(typeof FLOW_LABELS)[number]>;
  saturation: Gauge<'inference_pool'>;
  total?: Counter<'outcome' | 'priority' | 'inference_pool'>;
  /** In-flight eviction (llm-d family only): revocations issued by demand priority, and how each ended. */
  revocationsIssued?: Counter<'priority' | 'inference_pool'>;
  revocations?: Counter<'outcome' | 'inference_pool'>;
}

function register(registry: Registry, prefix: string, llmd: boolean): Set {
  const r = [registry];
  return {
    duration: new Histogram({
      name: `${prefix}_flow_control_request_queue_duration_seconds`,
      help: '[ALPHA] Distribution of total time requests spend in the Flow Control layer (from enqueue to final outcome).',
      labelNames: DURATION_LABELS,
      buckets: QUEUE_BUCKETS,
      registers: r,
    }),
    size: new Gauge({
      name: `${prefix}_flow_control_queue_size`,
      help: '[ALPHA] Current number of requests actively held in the Flow Control queue.',
      labelNames: FLOW_LABELS,
      registers: r,
    }),
    bytes: new Gauge({
      name: `${prefix}_flow_control_queue_bytes`,
      help: '[ALPHA] Current total size in bytes of requests actively held in the Flow Control queue.',
      labelNames: FLOW_LABELS,
      registers: r,
    }),
    saturation: new Gauge({
      name: `${prefix}_flow_control_pool_saturation`,
      help: '[ALPHA] Current saturation level of the inference pool (0.0 = empty, 1.0 = fully saturated).',
      labelNames: ['inference_pool'],
      registers: r,
    }),
    total: llmd
      ? new Counter({
          name: `${prefix}_flow_control_requests_total`,
          help: '[ALPHA] Total number of requests processed by the Flow Control layer.',
          labelNames: ['outcome', 'priority', 'inference_pool'],
          registers: r,
        })
      : undefined,
    revocationsIssued: llmd
      ? new Counter({
          name: `${prefix}_flow_control_revocations_issued_total`,
          help: "[ALPHA] Total number of in-flight eviction revocations issued, labeled by the demand band's priority.",
          labelNames: ['priority', 'inference_pool'],
          registers: r,
        })
      : undefined,
    revocations: llmd
      ? new Counter({
          name: `${prefix}_flow_control_revocations_total`,
          help: '[ALPHA] Total number of in-flight eviction revocations by terminal outcome (confirmed, timed_out). Every issued revocation eventually increments exactly one outcome.',
          labelNames: ['outcome', 'inference_pool'],
          registers: r,
        })
      : undefined,
  };
}

/** Registers the families `family` serves and returns the gate's observer. */
export function flowControlMetrics(registry: Registry, family: MetricsFamily, pool: string): FlowGateObserver {
  const sets: Set[] = [];
  if (family !== 'gaie') sets.push(register(registry, 'llm_d_epp', true));
  if (family !== 'llm-d') sets.push(register(registry, 'inference_extension', false));
  const fairness = new LabelGuard();
  const models = new LabelGuard();
  const labels = (flowRequest: FlowRequest) => ({
    fairness_id: fairness.value(flowRequest.fairnessId),
    priority: String(flowRequest.priority),
    inference_pool: pool,
    model_name: models.value(flowRequest.model),
    target_model_name: models.value(flowRequest.targetModel),
  });
  return {
    queued(flowRequest, dRequests, dBytes) {
      const l = labels(flowRequest);
      for (const s of sets) {
        s.size.inc(l, dRequests);
        s.bytes.inc(l, dBytes);
      }
    },
    outcome(flowRequest: FlowRequest, outcome: FlowOutcome, seconds: number) {
      const l = { ...labels(flowRequest), outcome };
      for (const s of sets) {
        s.duration.observe(l, seconds);
        s.total?.inc({ outcome, priority: l.priority, inference_pool: pool });
      }
    },
    saturation(value) {
      for (const s of sets) s.saturation.set({ inference_pool: pool }, value);
    },
    eviction: {
      revoked(_requestId, _priority, demandPriority) {
        for (const s of sets) s.revocationsIssued?.inc({ priority: String(demandPriority), inference_pool: pool });
      },
      confirmed(_requestId, outcome) {
        for (const s of sets) s.revocations?.inc({ outcome, inference_pool: pool });
      },
    },
  };
}

/**
 * program-aware-fairness's gauges, as llm-d-router registers them with the plugin (llm-d family only):
 * `llm_d_epp_program_aware_attained_service_tokens{program_id}`, `_avg_wait_time_milliseconds{program_id}`,
 * `_jains_fairness_index`. Program ids are fairness ids: capped like every client-supplied label.
 */
export function programAwareMetrics(registry: Registry, family: MetricsFamily): ProgramAwareObserver | undefined {
  if (family === 'gaie') return undefined;
  const service = new Gauge({
    name: 'llm_d_epp_program_aware_attained_service_tokens',
    help: '[ALPHA] Time-decayed attained service (weighted tokens consumed) per program.',
    labelNames: ['program_id'],
    registers: [registry],
  });
  const wait = new Gauge({
    name: 'llm_d_epp_program_aware_avg_wait_time_milliseconds',
    help: '[ALPHA] Cumulative mean of flow-control queue wait time per program in milliseconds.',
    labelNames: ['program_id'],
    registers: [registry],
  });
  const index = new Gauge({
    name: 'llm_d_epp_program_aware_jains_fairness_index',
    help: "[ALPHA] Jain's fairness index over average wait time across active programs.",
    registers: [registry],
  });
  const programs = new LabelGuard();
  return {
    attainedService: (id, tokens) => service.set({ program_id: programs.value(id) }, tokens),
    averageWait: (id, ms) => wait.set({ program_id: programs.value(id) }, ms),
    fairnessIndex: (value) => index.set(value),
    forget(id) {
      if (programs.value(id) !== id) return;
      service.remove({ program_id: id });
      wait.remove({ program_id: id });
    },
  };
}
