/**
 * The `flowControl:` and `saturationDetector:` sections with upstream's schemas (GAIE v1.4/v1.5 and llm-d-router
 * `apix/config/v1alpha1`), and their resolution against the configured plugins. The sections are validated (bad
 * values and dangling references are load errors, as upstream) and kept in `LoadedEndpointPickerConfig.flowControl`;
 * with the flowControl feature gate on, src/epp/flowcontrol enforces them. One startup warning says what is not
 * enforced (everything with the gate off; unsupported policies with it on).
 */
import { z } from 'zod';
import { formatDuration } from '../../common/index.js';
import type { Plugin } from '../framework/types.js';
import {
  describeSettings,
  isFlowControlPlugin,
  type FlowControlPlugin,
  type FlowControlRole,
} from '../plugins/flow-control/flow-control-plugin.js';
import { goDuration, nonNegativeQuantity } from './go-values.js';
import { FAIRNESS_POLICIES, ORDERING_POLICIES } from '../flowcontrol/policies.js';

const priorityBand = z
  .object({
    priority: z.number().int('must be an integer').default(0),
    maxBytes: nonNegativeQuantity.optional(),
    maxRequests: nonNegativeQuantity.optional(),
    fairnessPolicyRef: z.string().optional(),
    orderingPolicyRef: z.string().optional(),
  })
  .strict();

/** `{pluginRef}`; an empty or missing ref means upstream's default, `utilization-detector`. */
export const saturationDetectorRef = z.object({ pluginRef: z.string().optional() }).strict();

/** GAIE v1.4's threshold form of the top-level `saturationDetector`. */
export const saturationDetectorThresholds = z
  .object({
    queueDepthThreshold: z.number().int('must be an integer').optional(),
    kvCacheUtilThreshold: z.number().optional(),
    metricsStalenessThreshold: goDuration.optional(),
  })
  .strict();

/** llm-d-router's FlowControlConfig, a superset of GAIE v1.4's and v1.5's. */
export const flowControlSection = z
  .object({
    maxBytes: nonNegativeQuantity.optional(),
    maxRequests: nonNegativeQuantity.optional(),
    defaultRequestTTL: goDuration.optional(),
    noEndpointRequestTTL: goDuration.optional(),
    defaultPriorityBand: priorityBand.optional(),
    defaultNegativePriorityBand: priorityBand.optional(),
    priorityBands: z.array(priorityBand).optional(),
    usageLimitPolicyPluginRef: z.string().optional(),
    saturationDetector: saturationDetectorRef.optional(),
    enableEviction: z.boolean().optional(),
  })
  .strict()
  .superRefine((fc, ctx) => {
    const seen = new Set<number>();
    for (const [i, b] of (fc.priorityBands ?? []).entries()) {
      if (seen.has(b.priority))
        ctx.addIssue({
          code: 'custom',
          path: ['priorityBands', i, 'priority'],
          message: `duplicate priority ${b.priority}`,
        });
      seen.add(b.priority);
    }
  });

export type FlowControlSection = z.infer<typeof flowControlSection>;
export type SaturationThresholds = z.infer<typeof saturationDetectorThresholds>;

/** The saturation detector in effect, whichever form configured it. */
export type SaturationDetectorSetting =
  | { form: 'default'; plugin: FlowControlPlugin }
  | { form: 'plugin'; section: string; plugin: FlowControlPlugin }
  | {
      form: 'thresholds';
      queueDepthThreshold: number;
      kvCacheUtilThreshold: number;
      metricsStalenessThresholdMs: number;
    };

/** Everything flow control needs, parsed and resolved. */
export interface FlowControlSettings {
  /** The `flowControl` feature gate. */
  readonly enabled: boolean;
  readonly section?: FlowControlSection;
  readonly saturationDetector: SaturationDetectorSetting;
  /** Every flow-control plugin the config defines or the loader added, by name. */
  readonly plugins: ReadonlyMap<string, FlowControlPlugin>;
}

/**
 * GAIE v1.4's thresholds with its defaulting: a threshold outside its range falls back to the default (queue depth 5,
 * KV-cache 0.8 for values outside (0, 1), staleness 200ms). `notes` receives each replaced value.
 */
export function thresholdDetector(
  value: SaturationThresholds,
  notes: (message: string) => void,
): Extract<SaturationDetectorSetting, { form: 'thresholds' }> {
  const pick = <T>(
    key: string,
    item: T | undefined,
    ok: (entry: T) => boolean,
    fallback: T,
    show: (entry: T) => string = String,
  ): T => {
    if (item === undefined) return fallback;
    if (ok(item)) return item;
    notes(`saturationDetector.${key}: ${show(item)} is out of range; GAIE v1.4 uses the default ${show(fallback)}`);
    return fallback;
  };
  return {
    form: 'thresholds',
    queueDepthThreshold: pick('queueDepthThreshold', value.queueDepthThreshold, (item) => item > 0, 5),
    kvCacheUtilThreshold: pick('kvCacheUtilThreshold', value.kvCacheUtilThreshold, (item) => item > 0 && item < 1, 0.8),
    metricsStalenessThresholdMs: pick(
      'metricsStalenessThreshold',
      value.metricsStalenessThreshold,
      (item) => item > 0,
      200,
      formatDuration,
    ),
  };
}

/** Resolves a policy reference: a configured flow-control plugin of the right role, or a default the loader adds. */
export function resolveFlowControlRef(
  where: string,
  ref: string,
  role: FlowControlRole,
  plugin: (name: string) => Plugin | undefined,
): FlowControlPlugin {
  const p = plugin(ref);
  if (!p) throw new Error(`${where}: plugin "${ref}" is not defined`);
  if (!isFlowControlPlugin(p) || p.flowControl.role !== role)
    throw new Error(`${where}: "${ref}" (type ${p.type}) is not a ${role}`);
  return p;
}

/** The startup warning: what the config asks of flow control and saturation detection that pd-router does not do. */
export function notEnforcedWarning(
  flowControlSettings: FlowControlSettings,
  saturationConfigured: boolean,
): string | undefined {
  const parts: string[] = [];
  const sec = flowControlSettings.section;
  const asked =
    sec !== undefined &&
    Object.entries(sec).some(([key, value]) => key !== 'saturationDetector' && value !== undefined);
  if (flowControlSettings.enabled) {
    // The gate enforces queues, bands, bounds, TTL and these policies; the rest falls back or is ignored.
    const unsupported: string[] = [];
    const bands = [sec?.defaultPriorityBand, sec?.defaultNegativePriorityBand, ...(sec?.priorityBands ?? [])];
    const seen = new Set<string>();
    for (const band of bands) {
      for (const [ref, supported, fallback] of [
        [band?.fairnessPolicyRef, FAIRNESS_POLICIES, 'global-strict-fairness-policy'],
        [band?.orderingPolicyRef, ORDERING_POLICIES, 'fcfs-ordering-policy'],
      ] as const) {
        const plugin = ref ? flowControlSettings.plugins.get(ref) : undefined;
        // program-aware-fairness is enforced too (src/epp/flowcontrol/from-config.ts builds it with its state).
        if (
          plugin &&
          !(plugin.type in supported) &&
          plugin.type !== 'program-aware-fairness' &&
          !seen.has(plugin.name)
        ) {
          seen.add(plugin.name);
          unsupported.push(
            `policy ${plugin.name === plugin.type ? plugin.name : `${plugin.name} (${plugin.type})`} (${fallback} is used)`,
          );
        }
      }
    }
    const usage = sec?.usageLimitPolicyPluginRef
      ? flowControlSettings.plugins.get(sec.usageLimitPolicyPluginRef)
      : undefined;
    // These usage-limit policies are enforced (src/epp/flowcontrol/from-config.ts).
    const enforced = ['static-usage-limit-policy', 'priority-holdback-policy', 'soft-reflective-ceiling-policy'];
    if (usage && !enforced.includes(usage.type))
      unsupported.push(`usageLimitPolicyPluginRef=${usage.name} (dispatch stops at saturation 1.0)`);
    if (unsupported.length) parts.push(`flowControl (the flowControl feature gate is on; ${unsupported.join(', ')})`);
  } else if (asked) {
    const limits: string[] = [];
    if (sec?.maxBytes) limits.push(`maxBytes=${sec.maxBytes}`);
    if (sec?.maxRequests) limits.push(`maxRequests=${sec.maxRequests}`);
    if (sec?.defaultRequestTTL !== undefined) limits.push(`defaultRequestTTL=${formatDuration(sec.defaultRequestTTL)}`);
    if (sec?.noEndpointRequestTTL !== undefined)
      limits.push(`noEndpointRequestTTL=${formatDuration(sec.noEndpointRequestTTL)}`);
    if (sec?.priorityBands?.length)
      limits.push(`priorityBands=[${sec.priorityBands.map((right) => right.priority).join(',')}]`);
    if (sec?.defaultPriorityBand) limits.push('defaultPriorityBand');
    if (sec?.defaultNegativePriorityBand) limits.push('defaultNegativePriorityBand');
    if (sec?.usageLimitPolicyPluginRef) limits.push(`usageLimitPolicyPluginRef=${sec.usageLimitPolicyPluginRef}`);
    if (sec?.enableEviction) limits.push('enableEviction');
    const policies = [...flowControlSettings.plugins.values()].filter(
      (plugin) => plugin.flowControl.role !== 'saturation-detector',
    );
    parts.push(
      `flowControl (the flowControl feature gate is off (upstream would ignore these settings too)${limits.length ? `; ${limits.join(', ')}` : ''}${policies.length ? `; policies ${policies.map((plugin) => (plugin.name === plugin.type ? plugin.name : `${plugin.name} (${plugin.type})`)).join(', ')}` : ''}): ` +
        'no request is queued, prioritised, limited, evicted or rejected by flow control; requests are scheduled as they arrive',
    );
  }
  if (saturationConfigured && !flowControlSettings.enabled) {
    const d = flowControlSettings.saturationDetector;
    const what =
      d.form === 'thresholds'
        ? `thresholds queueDepthThreshold=${d.queueDepthThreshold}, kvCacheUtilThreshold=${d.kvCacheUtilThreshold}, metricsStalenessThreshold=${formatDuration(d.metricsStalenessThresholdMs)}`
        : `${d.plugin.name} (${d.plugin.type}: ${describeSettings(d.plugin.flowControl.settings)})`;
    parts.push(
      `saturationDetector (${what}): no request is shed when the pool is saturated (pd-router uses the saturation detector only with the flowControl feature gate on; upstream also sheds sheddable requests, priority < 0, without it)`,
    );
  }
  if (parts.length === 0) return undefined;
  return `not enforced by pd-router (parsed, validated and kept, but without effect): ${parts.join('; ')}`;
}
