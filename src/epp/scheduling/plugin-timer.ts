/**
 * Times plugin calls into `plugin_duration_seconds{extension_point, plugin_type, plugin_name}` (`llm_d_epp_` and
 * `inference_extension_`, whichever families are enabled). The series are resolved once per (plugin, extension
 * point) and kept, so timing costs two clock reads and one observe per family.
 */
import type { HistogramChild } from '../../common/index.js';
import type { Plugin } from '../framework/types.js';

export type ExtensionPoint =
  | 'ProfilePicker'
  | 'Filter'
  | 'Scorer'
  | 'Picker'
  | 'ProcessProfilesResults'
  | 'PreRequest'
  | 'DataProducer'
  | 'Admission'
  | 'ResponseReceived'
  | 'ResponseComplete';

export class PluginTimer {
  private readonly children = new Map<Plugin, Map<ExtensionPoint, HistogramChild>>();
  /** `resolve` gives the series of a plugin at an extension point; without it nothing is timed. */
  constructor(private readonly resolve?: (point: ExtensionPoint, plugin: Plugin) => HistogramChild) {}

  child(point: ExtensionPoint, plugin: Plugin): HistogramChild | undefined {
    if (!this.resolve) return undefined;
    let points = this.children.get(plugin);
    if (!points) this.children.set(plugin, (points = new Map<ExtensionPoint, HistogramChild>()));
    let c = points.get(point);
    if (!c) points.set(point, (c = this.resolve(point, plugin)));
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
