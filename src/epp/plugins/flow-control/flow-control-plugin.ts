/**
 * What the flow-control plugins have in common: pd-router parses and validates them with upstream's schema and keeps
 * the result (`settings`) for a future flow-control implementation, but enforces nothing; the loader names them in
 * its "not enforced" startup warning. `role` is the slot of llm-d's flow-control layer the plugin fills, which the
 * loader checks against the section that refers to it (a fairness policy in `fairnessPolicyRef`, and so on).
 */
import type { Plugin } from '../../framework/types.js';

export type FlowControlRole = 'fairness-policy' | 'ordering-policy' | 'usage-limit-policy' | 'saturation-detector' | 'eviction-filter' | 'eviction-ordering';

export interface FlowControlPlugin extends Plugin {
  readonly flowControl: { readonly role: FlowControlRole; readonly settings: Readonly<Record<string, unknown>> };
}

export const isFlowControlPlugin = (plugin: Plugin): plugin is FlowControlPlugin => typeof (plugin as FlowControlPlugin).flowControl === 'object';

/** A one-line rendering of a plugin's settings for the warning, e.g. `queueDepthThreshold=5, headroom=0`. */
export function describeSettings(settings: Readonly<Record<string, unknown>>): string {
  return Object.entries(settings)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
}
