import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli } from '../helpers.js';

const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const COMMANDS = ['sim', 'sidecar', 'epp', 'gateway', 'tune', 'dev', 'loadgen'];

describe('--version', () => {
  it("pd-router --version and every command's --version print package.json's version and exit 0", async () => {
    const runs = await Promise.all([[], ...COMMANDS.map((text) => [text])].map((items) => runCli([...items, '--version'], { timeoutMs: 170_000 })));
    for (const r of runs) {
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`pd-router ${version}\n`);
    }
  }, 180_000);

  it('--version is listed in the help', async () => {
    const [top, sim] = await Promise.all([runCli(['--help'], { timeoutMs: 60_000 }), runCli(['sim', '--help'], { timeoutMs: 60_000 })]);
    expect(top.stdout).toContain('pd-router --version');
    expect(sim.stdout).toMatch(/^ {2}--version +Print the pd-router version and exit\.$/m);
  }, 180_000);
});
