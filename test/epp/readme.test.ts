/** src/epp/README.md stays true: every flag with its default, every plugin type, every exported metric name. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { flagName } from '../../src/common/index.js';
import { EppMetrics, PLUGIN_REGISTRY, UNSUPPORTED_UPSTREAM_TYPES, eppOptions } from '../../src/epp/index.js';
import { ROOT } from '../helpers.js';

const readme = readFileSync(path.join(ROOT, 'src/epp/README.md'), 'utf8');

describe('src/epp/README.md', () => {
  it('lists every flag with its default', () => {
    for (const [key, spec] of Object.entries(eppOptions)) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`--${flagName(key, spec)}\``));
      expect(row, `--${flagName(key, spec)}`).toBeDefined();
      expect(row).toContain(`\`${spec.formatDefault()}\``);
    }
  });

  it('documents every plugin type', () => {
    for (const type of Object.keys(PLUGIN_REGISTRY)) expect(readme, type).toContain(`\`${type}\``);
  });

  it('no type is both implemented and listed as unsupported; the not-implemented paragraph names no implemented type', () => {
    for (const type of Object.keys(UNSUPPORTED_UPSTREAM_TYPES)) expect(PLUGIN_REGISTRY[type], type).toBeUndefined();
    const start = readme.indexOf('\nNot implemented (');
    expect(start).toBeGreaterThan(0);
    const paragraph = readme.slice(start, readme.indexOf('\n\n', start + 1));
    for (const type of Object.keys(PLUGIN_REGISTRY)) expect(paragraph, type).not.toContain(`\`${type}\``);
    // The plugin families this EPP implements are not listed there either.
    for (const family of ['session affinity', 'topology affinity', 'LoRA affinity', 'endpoint-attribute', 'eviction'])
      expect(paragraph, family).not.toContain(family);
  });

  it('names every metric family the EPP exports, in both families', async () => {
    const m = new EppMetrics(undefined, 'both');
    m.registerPoolGauges('p', () => []);
    const names = (await m.registry.getMetricsAsJSON()).map((values) => values.name);
    expect(names.filter((count) => !count.startsWith('llm_d_epp_')).length).toBeGreaterThan(20);
    for (const name of names) {
      const short = name.replace(/^llm_d_epp_/, '');
      // The full name, or its suffix in backticks (tables list `_suffix` under the llm_d_epp_ prefix).
      expect(readme.includes(name) || readme.includes(`\`_${short}\``), name).toBe(true);
    }
  });
});
