/**
 * What the flow-control plugins have in common: pd-router parses and validates them with upstream's schema and keeps
 * the result (`settings`). With the flowControl feature gate on, src/epp/flowcontrol enforces the policies and
 * detectors it implements; the loader's startup warning names what it does not enforce. `role` is the slot of llm-d's
 * flow-control layer the plugin fills, which the loader checks against the section that refers to it (a fairness
 * policy in `fairnessPolicyRef`, and so on).
 */
import type { Plugin } from '../../framework/types.js';

export type FlowControlRole =
  | 'fairness-policy'
  | 'ordering-policy'
  | 'usage-limit-policy'
  | 'saturation-detector'
  | 'eviction-filter'
  | 'eviction-ordering';

export interface FlowControlPlugin extends Plugin {
  readonly flowControl: { readonly role: FlowControlRole; readonly settings: Readonly<Record<string, unknown>> };
}

export const isFlowControlPlugin = (plugin: Plugin): plugin is FlowControlPlugin =>
  typeof (plugin as FlowControlPlugin).flowControl === 'object';

/** A one-line rendering of a plugin's settings for the warning, e.g. `queueDepthThreshold=5, headroom=0`. */
export function describeSettings(settings: Readonly<Record<string, unknown>>): string {
  return (
    Object.entries(settings)
      .filter(([, value]) => value !== undefined)
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- objects are JSON above; the rest are numbers, strings and booleans
      .map(([k, value]) => `${k}=${typeof value === 'object' ? JSON.stringify(value) : String(value)}`)
      .join(', ')
  );
}
