import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { flagName } from '../src/common/index.js';
import { sidecarCommand } from '../src/sidecar/index.js';
import { ROOT } from './helpers.js';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('README stays true', () => {
  it('shows the two set-up commands', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test');
  });

  it('documents every sidecar flag', () => {
    for (const [key, spec] of Object.entries(sidecarCommand.options)) {
      if (spec.hidden) continue;
      expect(readme, `--${flagName(key, spec)} missing from README`).toContain(`\`--${flagName(key, spec)}\``);
    }
  });

  it('lists every runtime and dev dependency in the dependency table', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    for (const name of [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})]) {
      const escaped = name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      expect(readme, `${name} missing from the README dependency table`).toMatch(new RegExp(`^\\| ${escaped} \\|`, 'm'));
    }
  });
});
