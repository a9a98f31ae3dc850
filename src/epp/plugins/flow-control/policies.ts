/**
 * Flow-control policies (llm-d `framework/plugins/flowcontrol/{fairness,ordering,usagelimits,eviction}`): parsed with
 * upstream's parameter schemas, validated and kept. With the flowControl feature gate on, the gate enforces every
 * fairness, ordering and usage-limit policy here (src/epp/flowcontrol/policies.ts). With `enableEviction`, in-flight
 * requests are evicted by `sheddable-eviction-filter` and `priority-then-time-eviction-order-policy`
 * (src/epp/flowcontrol/eviction.ts), the pair upstream's runner always wires whatever the config defines. The default policies
 * upstream registers on its own (`global-strict-fairness-policy`, `fcfs-ordering-policy`, `static-usage-limit-policy`)
 * may be referenced without being defined, as upstream.
 *
 * Parameters:
 * - `global-strict-fairness-policy`, `round-robin-fairness-policy`, `fcfs-ordering-policy`, `edf-ordering-policy`,
 *   `slo-deadline-ordering-policy`, `soft-reflective-ceiling-policy`, `sheddable-eviction-filter`,
 *   `priority-then-time-eviction-order-policy`: none.
 * - `program-aware-fairness`: `strategy` (las), `evictionTtlSeconds` (3600, >= 0), `evictionSweepSeconds` (300, > 0),
 *   `lasWeightService` (0.8, >= 0), `lasWeightHeadWait` (0.2, >= 0), `lasHalfLifeSeconds` (60, >= 0).
 * - `static-usage-limit-policy`: `threshold` (1.0).
 * - `priority-holdback-policy`: `minCeiling` (required, in [0, 1)), `maxCeiling` (1.0, in (0, 1], > minCeiling),
 *   `shape` (linear), `domain` (rank | value, default rank).
 */
import { z } from 'zod';
import { definePlugin, type PluginDefinition } from '../definition.js';
import type { FlowControlPlugin, FlowControlRole } from './flow-control-plugin.js';

export const DEFAULT_FAIRNESS_POLICY = 'global-strict-fairness-policy';
export const DEFAULT_ORDERING_POLICY = 'fcfs-ordering-policy';
export const DEFAULT_USAGE_LIMIT_POLICY = 'static-usage-limit-policy';

function policy<S extends z.ZodType<Record<string, unknown>>>(
  role: FlowControlRole,
  description: string,
  params: S,
): PluginDefinition<z.infer<S>> {
  return definePlugin({
    kind: 'flow-control',
    description: `${description} (with the flowControl feature gate)`,
    params,
    create: (ctx, output): FlowControlPlugin => ({
      type: ctx.type,
      name: ctx.name,
      flowControl: { role, settings: { ...output } },
    }),
  });
}

const none = z.object({}).strict();

const programAware = z
  .object({
    // Upstream's factory accepts "" as las.
    strategy: z
      .string()
      .refine((text) => text === '' || text === 'las', { error: 'unknown scoring strategy: only "las" is supported' })
      .transform((text) => text || 'las')
      .default('las'),
    evictionTtlSeconds: z.number().min(0, 'must be >= 0').default(3600),
    evictionSweepSeconds: z.number().gt(0, 'must be > 0').default(300),
    lasWeightService: z.number().min(0, 'must be >= 0').default(0.8),
    lasWeightHeadWait: z.number().min(0, 'must be >= 0').default(0.2),
    lasHalfLifeSeconds: z.number().min(0, 'must be >= 0').default(60),
  })
  .strict();

const priorityHoldback = z
  .object({
    minCeiling: z
      .number({ error: 'is required (a number in [0, 1))' })
      .min(0, 'must be in [0, 1)')
      .lt(1, 'must be in [0, 1)'),
    maxCeiling: z.number().gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]').default(1),
    shape: z.literal('linear', { error: 'must be "linear"' }).default('linear'),
    domain: z.enum(['rank', 'value'], { error: 'must be rank or value' }).default('rank'),
  })
  .strict()
  .refine((params) => params.minCeiling < params.maxCeiling, {
    error: 'minCeiling must be strictly less than maxCeiling',
    path: ['minCeiling'],
  });

export const FLOW_CONTROL_POLICIES: Readonly<Record<string, PluginDefinition>> = {
  [DEFAULT_FAIRNESS_POLICY]: policy('fairness-policy', 'Strict priority between flows', none),
  'round-robin-fairness-policy': policy('fairness-policy', 'Round-robin between flows', none),
  'program-aware-fairness': policy('fairness-policy', 'Least-attained-service between programs', programAware),
  [DEFAULT_ORDERING_POLICY]: policy('ordering-policy', 'First come, first served', none),
  'edf-ordering-policy': policy('ordering-policy', 'Earliest deadline first', none),
  'slo-deadline-ordering-policy': policy('ordering-policy', 'SLO deadline first', none),
  [DEFAULT_USAGE_LIMIT_POLICY]: policy(
    'usage-limit-policy',
    'Fixed dispatch ceiling',
    z.object({ threshold: z.number().default(1) }).strict(),
  ),
  'priority-holdback-policy': policy('usage-limit-policy', 'Priority-graded dispatch ceiling', priorityHoldback),
  'soft-reflective-ceiling-policy': policy('usage-limit-policy', 'Saturation-reflective dispatch ceiling', none),
  'sheddable-eviction-filter': policy('eviction-filter', 'Only sheddable requests are evictable', none),
  'priority-then-time-eviction-order-policy': policy('eviction-ordering', 'Evict lowest priority, newest first', none),
};
