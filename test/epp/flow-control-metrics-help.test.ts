/**
 * The flow-control families' HELP texts, as upstream registers them: GAIE v1.5's `inference_extension_flow_control_*`
 * and llm-d-router ebab687's `llm_d_epp_flow_control_*` both wrap theirs with HelpMsgWithStability(…, ALPHA), which
 * prefixes `[ALPHA] ` (metrics.go / llm_d_router_metrics.go).
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { flowControlMetrics } from '../../src/epp/metrics/flow-control.js';

const SHARED = {
  flow_control_request_queue_duration_seconds:
    '[ALPHA] Distribution of total time requests spend in the Flow Control layer (from enqueue to final outcome).',
  flow_control_queue_size: '[ALPHA] Current number of requests actively held in the Flow Control queue.',
  flow_control_queue_bytes: '[ALPHA] Current total size in bytes of requests actively held in the Flow Control queue.',
  flow_control_pool_saturation:
    '[ALPHA] Current saturation level of the inference pool (0.0 = empty, 1.0 = fully saturated).',
};
const LLM_D_ONLY = {
  flow_control_requests_total: '[ALPHA] Total number of requests processed by the Flow Control layer.',
  flow_control_revocations_issued_total:
    "[ALPHA] Total number of in-flight eviction revocations issued, labeled by the demand band's priority.",
};

describe('flow-control metrics: upstream help texts', () => {
  it('both families carry upstream`s [ALPHA] help', async () => {
    const registry = new Registry();
    flowControlMetrics(registry, 'both', 'pool');
    const help = new Map((await registry.getMetricsAsJSON()).map((metric) => [metric.name, metric.help]));
    for (const [name, text] of Object.entries({ ...SHARED, ...LLM_D_ONLY }))
      expect(help.get(`llm_d_epp_${name}`), name).toBe(text);
    for (const [name, text] of Object.entries(SHARED)) expect(help.get(`inference_extension_${name}`), name).toBe(text);
    for (const [name, text] of help) if (name.includes('flow_control')) expect(text, name).toMatch(/^\[ALPHA\] /);
  });
});
