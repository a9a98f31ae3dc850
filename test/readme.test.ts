import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compatCounts, flagName } from '../src/common/index.js';
import { eppUpstream } from '../src/epp/index.js';
import { sidecarCommand, sidecarUpstream } from '../src/sidecar/index.js';
import { simUpstream } from '../src/sim/index.js';
import { CLI, ROOT } from './helpers.js';

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

  it("gives the compatibility tables' counts per status, and names every upstream flag that maps onto a pd-router flag", () => {
    for (const [row, table] of [
      ['EPP', eppUpstream],
      ['sidecar', sidecarUpstream],
      ['simulator', simUpstream],
    ] as const) {
      const c = compatCounts(table);
      const cells = `| ${row} | ${c.flags.implemented} / ${c.flags['maps-to']} / ${c.flags.ignored} | ${c.env.implemented} / ${c.env['maps-to']} / ${c.env.ignored} |`;
      expect(readme, `README count row for ${row}`).toContain(cells);
      for (const [name, e] of Object.entries(table.flags))
        if (e.status === 'maps-to') expect(readme, `--${name}`).toContain(`--${name}`);
    }
  });

  it('lists every runtime and dev dependency in the dependency table', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<
      string,
      Record<string, string>
    >;
    for (const name of [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})]) {
      const escaped = name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      expect(readme, `${name} missing from the README dependency table`).toMatch(
        new RegExp(`^\\| ${escaped} \\|`, 'm'),
      );
    }
  });

  it('every flag in a command line of the READMEs exists on that command', () => {
    const docs = ['README.md', 'src/epp/README.md', 'src/loadgen/README.md'].map((field) =>
      readFileSync(path.join(ROOT, field), 'utf8').replace(/\\\n\s*/g, ' '),
    );
    const uses: Array<{ command: string; flags: string[]; line: string }> = [];
    const patterns: Array<[RegExp, string | undefined]> = [
      [/(?:pd-router|node dist\/src\/cli\.js) (sim|sidecar|epp|gateway|tune|dev|loadgen)\b([^\n`]*)/g, undefined],
      [/npm start -- ([^\n`]*)/g, 'dev'],
      [/npm run tune -- ([^\n`]*)/g, 'tune'],
    ];
    for (const text of docs) {
      for (const [re, fixed] of patterns) {
        for (const m of text.matchAll(re)) {
          const command = fixed ?? m[1];
          const rest = (fixed ? m[1] : m[2]) ?? '';
          // Flags up to a shell comment; values such as --secure-serving=false count by name.
          const flags = [...rest.split(' #')[0].matchAll(/(?:^|\s)--([a-z][a-z0-9-]*)/g)].map((match) => match[1]);
          uses.push({ command, flags, line: m[0] });
        }
      }
    }
    expect(uses.length).toBeGreaterThan(10);
    const help = new Map<string, string>();
    for (const { command, flags, line } of uses) {
      if (!help.has(command)) {
        const r = spawnSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8', timeout: 120_000 });
        expect(r.status, `${command} --help`).toBe(0);
        help.set(command, r.stdout);
      }
      for (const f of flags) {
        if (f === 'help') continue;
        expect(help.get(command), `README line "${line.trim()}": pd-router ${command} has no --${f}`).toMatch(
          new RegExp(`--${f}[ ,=<]|--${f}$`, 'm'),
        );
      }
    }
  }, 180_000);
});

/** Every file and folder under the checkout's source trees, relative to the root, folders ending in `/`. */
function repoPaths(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const relative = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        out.push(`${relative}/`);
        walk(relative);
      } else out.push(relative);
    }
  };
  for (const dir of ['src', 'test', 'bench', 'scripts', 'deploy', 'kustomize', 'docs']) walk(dir);
  return out;
}

describe('docs/*.md stay true', () => {
  // A path in backquotes: `src/epp/director.ts`, `extproc/stream.ts`, `plugins/filter/`, `.dependency-cruiser.cjs`.
  // Placeholders (`<name>`), globs and anything with a space are prose, not paths.
  const pathLike = /^[\w.@-]+(?:\/[\w.@-]+)*\/?$/;
  const isPath = (token: string) =>
    pathLike.test(token) && (token.includes('/') || /\.(?:ts|cjs|js|json|md|ya?ml)$/.test(token));

  it('names only files and folders that exist', () => {
    const all = repoPaths();
    const docsDir = path.join(ROOT, 'docs');
    const missing: string[] = [];
    let checked = 0;
    for (const doc of readdirSync(docsDir).filter((name) => name.endsWith('.md'))) {
      const text = readFileSync(path.join(docsDir, doc), 'utf8');
      for (const [, token] of text.matchAll(/`([^`\n]+)`/g)) {
        if (!isPath(token)) continue;
        checked++;
        // From the root (`src/...`, `test/...`, root files) exactly; a shorter path (`extproc/stream.ts`, inside the
        // component a section is about) must end some path of the checkout.
        const rooted = /^(?:src|test|bench|scripts|deploy|kustomize|docs)\//.test(token) || !token.includes('/');
        const found = rooted
          ? existsSync(path.join(ROOT, token)) ||
            (!token.includes('/') && all.some((known) => known.endsWith(`/${token}`)))
          : all.some((known) => known.endsWith(`/${token}`));
        if (!found) missing.push(`${doc}: ${token}`);
      }
    }
    expect(checked).toBeGreaterThan(100);
    expect(missing).toEqual([]);
  });
});
