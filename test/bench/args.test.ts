/**
 * The benchmark scripts' command lines: `--help` prints the usage and starts nothing; an unknown or valueless option is
 * refused (exit 2) before any work, so a typo never runs a long benchmark with its defaults over the recorded results.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { argsProblem } from '../../bench/common/args.js';
import { ROOT, runProcess } from '../helpers.js';

describe('argsProblem', () => {
  const known = ['duration', 'sidecar-node-args'];

  it('accepts known --name value pairs, values starting with dashes included', () => {
    expect(argsProblem(known, [])).toBeUndefined();
    expect(argsProblem(known, ['--duration', '3', '--sidecar-node-args', '--max-semi-space-size=8'])).toBeUndefined();
  });

  it('names an unknown option, a stray word and a missing value', () => {
    expect(argsProblem(known, ['--durations', '3'])).toBe('unknown argument "--durations"');
    expect(argsProblem(known, ['3'])).toBe('unknown argument "3"');
    expect(argsProblem(known, ['--duration', '3', '--duration'])).toBe('--duration needs a value');
  });
});

describe.each(['sidecar-overhead', 'routing', 'decider-eval'])('bench/%s/run.js', (name) => {
  const script = path.join(ROOT, 'dist/bench', name, 'run.js');

  it('prints its usage on --help and exits 0 without running', async () => {
    const run = await runProcess(process.execPath, [script, '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^Usage: node dist/bench/${name}/run\\.js \\[--`));
    expect(run.stderr).toBe('');
  });

  it('refuses an unknown option with exit 2 before starting anything', async () => {
    const run = await runProcess(process.execPath, [script, '--no-such-option', '1']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^unknown argument "--no-such-option"\nUsage: /);
    expect(run.stdout).toBe('');
  });
});

describe('bench/sidecar-overhead/run.js numeric options', () => {
  const script = path.join(ROOT, 'dist/bench/sidecar-overhead/run.js');

  it.each([
    ['--open-rates', '0'],
    ['--concurrency', '1,-64'],
    ['--duration', 'ten'],
  ])('refuses %s %s with exit 2 before starting anything', async (option, value) => {
    const run = await runProcess(process.execPath, [script, option, value]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${option} ${JSON.stringify(value)}: expected positive numbers separated by commas`);
    expect(run.stdout).toBe('');
  });
});
