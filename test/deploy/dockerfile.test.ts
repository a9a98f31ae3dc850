/**
 * The images cannot be built here (no Docker engine), so the Dockerfile is checked statically: a build stage, a small
 * non-root runtime, one target per component whose entrypoint is that component's binary (so container args are its
 * flags, as with llm-d's images), the all-in-one image as the default target, and only paths that exist. Each
 * entrypoint is then run from the local build, as the image would run it.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runProcess } from '../helpers.js';

const lines = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
  .split('\n')
  .filter((line) => line.trim() && !line.trim().startsWith('#'));

interface Stage {
  from: string;
  name: string;
  lines: string[];
}
const stages: Stage[] = [];
for (const l of lines) {
  const m = /^FROM (\S+)(?: AS (\S+))?$/.exec(l);
  if (m) stages.push({ from: m[1]!, name: m[2] ?? '', lines: [] });
  else stages.at(-1)!.lines.push(l);
}
const stage = (name: string) => stages.find((stage) => stage.name === name)!;
const entrypoint = (stage: Stage) => JSON.parse(stage.lines.find((line) => line.startsWith('ENTRYPOINT '))!.slice('ENTRYPOINT '.length)) as string[];
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };

describe('Dockerfile', () => {
  it('builds in one stage and runs in a distroless, non-root stage every image derives from', () => {
    expect(stages[0]!.from).toMatch(/^\S+node:20\.\d+\S*$/);
    expect(stages[0]!.name).toBe('build');
    expect(stage('runtime').from).toBe('gcr.io/distroless/nodejs20-debian12:nonroot');
    expect(stage('runtime').lines).toContain('USER 65532:65532');
    expect(stage('build').lines).toContain('RUN npm run build && npm prune --omit=dev --ignore-scripts');
    for (const s of stages.slice(2)) expect(s.from, s.name).toBe('runtime');
  });

  it.each([
    ['epp', 'pd-router-epp'],
    ['sidecar', 'pd-router-sidecar'],
    ['sim', 'pd-router-sim'],
  ])('target %s: the entrypoint is the %s binary, so container args are its flags', async (target, bin) => {
    const ep = entrypoint(stage(target));
    expect(ep).toEqual(['/nodejs/bin/node', `/app/${pkg.bin[bin]}`]);
    expect(stage(target).lines.some((line) => line.startsWith('CMD'))).toBe(false);
    // The image's entrypoint, run from the local build: it is that component, taking flags without a command word.
    const local = path.join(ROOT, ep[1]!.replace(/^\/app\//, ''));
    expect(existsSync(local)).toBe(true);
    const r = await runProcess(process.execPath, [local, '--help'], { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: ${bin} `);
    expect(r.stdout).toContain('Compatibility flags (llm-d)');
  }, 60_000);

  it('the default target is the all-in-one image: the first argument is the command', () => {
    const last = stages.at(-1)!;
    expect(last.name).toBe('pd-router');
    expect(entrypoint(last)).toEqual(['/nodejs/bin/node', `/app/${pkg.bin['pd-router']}`]);
    expect(last.lines).toContain('CMD ["--help"]');
  });

  it('copies only paths that exist; the protos the EPP loads at runtime are included', () => {
    for (const l of lines.filter((text) => text.startsWith('COPY') && !text.includes('--from'))) {
      for (const src of l.split(/\s+/).slice(1, -1)) expect(existsSync(path.join(ROOT, src)), `${src} missing`).toBe(true);
    }
    expect(stage('runtime').lines).toContain('COPY --from=build /src/proto ./proto');
    expect(stage('runtime').lines).toContain('COPY --from=build /src/dist/src ./dist/src');
  });
});
