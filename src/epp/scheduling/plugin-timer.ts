/**
 * Times plugin calls into `llm_d_epp_plugin_duration_seconds{extension_point, plugin_type, plugin_name}`. Histogram
 * children are bound once per (extension point, plugin), so timing costs two clock reads and one observe.
 */
import type { Histogram } from 'prom-client';
import type { Plugin } from '../framework/types.js';

export type ExtensionPoint = 'ProfilePicker' | 'Filter' | 'Scorer' | 'Picker' | 'ProcessProfilesResults' | 'PreRequest' | 'DataProducer' | 'ResponseComplete';

type Child = { observe(v: number): void };

export class PluginTimer {
  private readonly children = new Map<string, Child>();
  constructor(private readonly histogram?: Histogram) {}

  child(point: ExtensionPoint, plugin: Plugin): Child | undefined {
    if (!this.histogram) return undefined;
    const key = `${point}\u0000${plugin.name}`;
    let c = this.children.get(key);
    if (!c) {
      c = this.histogram.labels({ extension_point: point, plugin_type: plugin.type, plugin_name: plugin.name });
      this.children.set(key, c);
    }
    return c;
  }

  time<T>(point: ExtensionPoint, plugin: Plugin, fn: () => T): T {
    const c = this.child(point, plugin);
    if (!c) return fn();
    const start = performance.now();
    try {
      return fn();
    } finally {
      c.observe((performance.now() - start) / 1000);
    }
  }
}
