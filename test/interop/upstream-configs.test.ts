/**
 * The upstream sample configs in test/fixtures/upstream-configs cannot drift from upstream: each fixture's text below
 * its header equals the upstream file, and every upstream sample config has a fixture.
 *
 * Sources: llm-d v0.7.1 from the Go module cache (`go mod download github.com/llm-d/llm-d-inference-scheduler@v0.7.1`
 * fetches it when Go is installed and it is missing), llm-d-router @ebab687 from an unpacked source tree
 * ($LLM_D_ROUTER_SRC, default /tmp/up/llm-d-router). A source that is not there skips its tests, saying why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXPECTED, SOURCES, fixtureFiles, upstreamText } from '../fixtures/upstream-configs/index.js';

const V071 = SOURCES['llm-d-inference-scheduler-v0.7.1'];

function goModCache(): string {
  if (process.env.GOMODCACHE) return process.env.GOMODCACHE;
  const r = spawnSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  return path.join(process.env.GOPATH ?? path.join(os.homedir(), 'go'), 'pkg/mod');
}

/** The v0.7.1 module directory, downloaded with `go mod download` when Go is there and the module is not. */
function v071Dir(): { dir?: string; why?: string } {
  const dir = path.join(goModCache(), `${V071.module}@${V071.version}`);
  if (existsSync(dir)) return { dir };
  const r = spawnSync('go', ['mod', 'download', '-json', `${V071.module}@${V071.version}`], {
    encoding: 'utf8',
    timeout: 5 * 60_000,
  });
  if (r.error) return { why: `${dir} is absent and Go is not installed` };
  if (r.status !== 0)
    return { why: `${dir} is absent and go mod download failed: ${(r.stdout + r.stderr).slice(-500)}` };
  const downloaded = (JSON.parse(r.stdout) as { Dir?: string }).Dir;
  return downloaded && existsSync(downloaded) ? { dir: downloaded } : { why: `go mod download did not produce ${dir}` };
}

function routerDir(): { dir?: string; why?: string } {
  const dir = process.env.LLM_D_ROUTER_SRC ?? '/tmp/up/llm-d-router';
  return existsSync(path.join(dir, 'deploy/config'))
    ? { dir }
    : { why: `no llm-d-router source tree at ${dir} (set LLM_D_ROUTER_SRC)` };
}

/** The Go raw-string constants of an e2e test file that hold an EndpointPickerConfig, by name. */
function e2eConfigs(goFile: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of readFileSync(goFile, 'utf8').matchAll(/^const (\w+) = `([^`]*)`/gm))
    if (m[2].includes('kind: EndpointPickerConfig')) out.set(m[1], m[2]);
  return out;
}

const fixturesUnder = (prefix: string) => fixtureFiles().filter((field) => field.startsWith(prefix));

describe('llm-d v0.7.1 sample configs', () => {
  const { dir, why } = v071Dir();
  if (!dir) console.log(`[upstream-configs] skipping the v0.7.1 comparison: ${why}`);

  it.skipIf(!dir)('deploy/config: every file has a fixture, and each fixture is the file verbatim', () => {
    const upstream = readdirSync(path.join(dir!, 'deploy/config'))
      .filter((field) => field.endsWith('.yaml'))
      .sort();
    const prefix = 'llm-d-inference-scheduler-v0.7.1/deploy/config/';
    expect(fixturesUnder(prefix).map((field) => field.slice(prefix.length))).toEqual(upstream);
    for (const f of upstream)
      expect(upstreamText(prefix + f), f).toBe(readFileSync(path.join(dir!, 'deploy/config', f), 'utf8'));
  });

  it.skipIf(!dir)(
    'test/e2e: every EndpointPickerConfig constant has a fixture, and each fixture is the constant verbatim',
    () => {
      const consts = e2eConfigs(path.join(dir!, 'test/e2e/e2e_test.go'));
      const prefix = 'llm-d-inference-scheduler-v0.7.1/test/e2e/';
      expect(fixturesUnder(prefix).map((field) => field.slice(prefix.length, -'.yaml'.length))).toEqual(
        [...consts.keys()].sort(),
      );
      for (const [name, text] of consts) expect(upstreamText(`${prefix}${name}.yaml`), name).toBe(text);
      // The e2e manifests hold no EndpointPickerConfig of their own.
      for (const f of readdirSync(path.join(dir!, 'test/e2e/yaml')))
        expect(readFileSync(path.join(dir!, 'test/e2e/yaml', f), 'utf8')).not.toContain('kind: EndpointPickerConfig');
    },
  );
});

describe('llm-d-router @ebab687 sample configs', () => {
  const { dir, why } = routerDir();
  if (!dir) console.log(`[upstream-configs] skipping the llm-d-router comparison: ${why}`);

  it.skipIf(!dir)('deploy/config: every file has a fixture, and each fixture is the file verbatim', () => {
    const upstream = readdirSync(path.join(dir!, 'deploy/config'))
      .filter((field) => field.endsWith('.yaml'))
      .sort();
    const prefix = 'llm-d-router-ebab687/deploy/config/';
    expect(fixturesUnder(prefix).map((field) => field.slice(prefix.length))).toEqual(upstream);
    for (const f of upstream)
      expect(upstreamText(prefix + f), f).toBe(readFileSync(path.join(dir!, 'deploy/config', f), 'utf8'));
  });
});

it('the expectation table covers the fixtures', () => {
  expect(Object.keys(EXPECTED).sort()).toEqual(fixtureFiles());
});
