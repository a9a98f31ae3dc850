/**
 * `--config-param <plugin>.<parameter>=<value>` (pd-router): set one plugin parameter of the EndpointPickerConfig from
 * the command line, without editing the file. Deployments use it to keep a tunable (the selective-PD threshold) next
 * to the other per-deployment settings; the file stays llm-d's. The plugin is found by its name (its type when it has
 * no name); the parameter may be a dotted path; the value is read as YAML (numbers, booleans, strings).
 */
import { parseDocument, parse as parseYaml } from 'yaml';
import { ConfigError } from '../../common/index.js';

/** Applies --config-param values (`<plugin>.<parameter>=<value>`) to the config document. */
export function applyConfigParams(configText: string, params: readonly string[]): string {
  if (params.length === 0) return configText;
  const doc = parseDocument(configText === '' ? '{}' : configText);
  const plugins = doc.getIn(['plugins']) as { items?: Array<{ get(k: string): unknown }> } | undefined;
  for (const p of params) {
    const m = /^([^.=]+)\.([^=]+)=(.*)$/s.exec(p);
    if (!m)
      throw new ConfigError(`invalid value "${p}" for --config-param: expected <plugin-name>.<parameter>=<value>`);
    const [, pluginName, paramPath, raw] = m;
    const index = (plugins?.items ?? []).findIndex((item) => (item.get('name') ?? item.get('type')) === pluginName);
    if (index < 0)
      throw new ConfigError(`--config-param ${p}: no plugin named "${pluginName}" in the EndpointPickerConfig`);
    let value: unknown;
    try {
      value = parseYaml(raw);
    } catch {
      value = raw;
    }
    doc.setIn(['plugins', index, 'parameters', ...paramPath.split('.')], value);
  }
  return doc.toString();
}
