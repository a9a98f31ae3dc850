/**
 * Resolves the flow-control and saturation-detector sections against the plugins, as llm-d-router's loader does
 * (`ensureSaturationDetector`, `buildFlowControlConfig`): the saturation detector is `flowControl.saturationDetector`,
 * else the top-level `saturationDetector` (deprecated in llm-d-router; GAIE v1.4 writes thresholds there), else a
 * default `utilization-detector`; policy references name configured flow-control plugins or upstream's default
 * policies. References are checked when the flowControl gate is on (upstream ignores the section otherwise).
 */
import type { FlowControlPlugin } from '../plugins/flow-control/flow-control-plugin.js';
import { isFlowControlPlugin } from '../plugins/flow-control/flow-control-plugin.js';
import { LOADER_DEFAULTS } from '../plugins/registry.js';
import { notEnforcedWarning, resolveFlowControlRef, thresholdDetector, type FlowControlSettings, type SaturationDetectorSetting } from './flow-control-section.js';
import { fail, type PluginGraph } from './plugin-graph.js';
import type { EndpointPickerConfigDocument } from './schema.js';

const DEFAULT_DETECTOR = LOADER_DEFAULTS.saturationDetector;
const DEFAULT_POLICIES: ReadonlySet<string> = new Set([...LOADER_DEFAULTS.flowControlPolicies, DEFAULT_DETECTOR]);

/** Phase 7: the flow-control settings and the saturation detector, resolved against the plugins (not enforced). */
export function resolveFlowControl(doc: EndpointPickerConfigDocument, graph: PluginGraph, warn: (message: string) => void): FlowControlSettings {
  const enabled = doc.featureGates.flowControl === true;
  const fc = doc.flowControl;
  /** A configured plugin, or one of upstream's defaults (added under its type name, as upstream registers it). */
  const lookup = (name: string) => graph.get(name) ?? (DEFAULT_POLICIES.has(name) && !graph.specs.has(name) ? graph.hidden(name, name) : undefined);
  const ref = (where: string, name: string, role: Parameters<typeof resolveFlowControlRef>[2]) => {
    let plugin: FlowControlPlugin;
    try {
      plugin = resolveFlowControlRef(where, name, role, lookup);
    } catch (e) {
      fail((e as Error).message);
    }
    if (!graph.hasKind(plugin, 'flow-control')) fail(`${where}: "${name}" (type ${plugin.type}) is not a ${role}`);
    return plugin;
  };

  const top = doc.saturationDetector;
  if (top && doc.family === 'llm-d') warn('top-level saturationDetector is deprecated in llm-d-router; use flowControl.saturationDetector');
  if (top && fc?.saturationDetector) warn('both saturationDetector and flowControl.saturationDetector are set; flowControl.saturationDetector is used, as upstream');
  let saturationDetector: SaturationDetectorSetting;
  const refSection = fc?.saturationDetector ? { section: 'flowControl.saturationDetector', pluginRef: fc.saturationDetector.pluginRef } : top?.form === 'ref' ? { section: 'saturationDetector', pluginRef: top.pluginRef } : undefined;
  if (refSection) {
    const name = refSection.pluginRef || DEFAULT_DETECTOR;
    saturationDetector = { form: 'plugin', section: refSection.section, plugin: ref(`${refSection.section}.pluginRef`, name, 'saturation-detector') };
  } else if (top?.form === 'thresholds') {
    saturationDetector = thresholdDetector(top, warn);
  } else {
    const configured = graph.get(DEFAULT_DETECTOR);
    const plugin = configured && isFlowControlPlugin(configured) ? configured : (graph.hidden(DEFAULT_DETECTOR) as FlowControlPlugin);
    saturationDetector = { form: 'default', plugin };
  }

  if (enabled && fc) {
    const bands = [
      ...(fc.defaultPriorityBand ? [['flowControl.defaultPriorityBand', fc.defaultPriorityBand] as const] : []),
      ...(fc.defaultNegativePriorityBand ? [['flowControl.defaultNegativePriorityBand', fc.defaultNegativePriorityBand] as const] : []),
      ...(fc.priorityBands ?? []).map((right, i) => [`flowControl.priorityBands[${i}]`, right] as const),
    ];
    for (const [where, b] of bands) {
      if (b.fairnessPolicyRef) ref(`${where}.fairnessPolicyRef`, b.fairnessPolicyRef, 'fairness-policy');
      if (b.orderingPolicyRef) ref(`${where}.orderingPolicyRef`, b.orderingPolicyRef, 'ordering-policy');
    }
    if (fc.usageLimitPolicyPluginRef) ref('flowControl.usageLimitPolicyPluginRef', fc.usageLimitPolicyPluginRef, 'usage-limit-policy');
  }

  const plugins = new Map<string, FlowControlPlugin>();
  for (const [name, p] of graph.instances) if (isFlowControlPlugin(p)) plugins.set(name, p);
  const settings: FlowControlSettings = { enabled, section: fc, saturationDetector, plugins };
  const warning = notEnforcedWarning(settings, saturationDetector.form !== 'default');
  if (warning) warn(warning);
  return settings;
}
