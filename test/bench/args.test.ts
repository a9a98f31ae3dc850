/**
 * The benchmark scripts' command lines: `--help` prints the usage and starts nothing; an unknown or valueless option, or
 * a number out of range, is refused (exit 2) before any work, so a typo never runs a long benchmark with its defaults
 * over the recorded results. One parser for all of them (bench/common/args.ts), bench/peers' option table included.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { number, numbers, parseOptions, type Option } from '../../bench/common/args.js';
import { ROOT, runProcess } from '../helpers.js';

describe('parseOptions', () => {
  const options: Option[] = [
    { name: 'duration', def: '10', smoke: '1', help: '' },
    { name: 'sidecar-node-args', def: '', help: '' },
    { name: 'smoke', def: 'false', help: '' },
  ];
  const parse = (argv: string[]) => parseOptions(argv, options, 'Usage: x');

  it('reads --name value and --name=value, values starting with dashes included, defaults for the rest', () => {
    expect(parse([])).toEqual({ duration: '10', 'sidecar-node-args': '', smoke: 'false' });
    expect(parse(['--duration', '3', '--sidecar-node-args', '--max-semi-space-size=8'])).toEqual({
      duration: '3',
      'sidecar-node-args': '--max-semi-space-size=8',
      smoke: 'false',
    });
    expect(parse(['--duration=4']).duration).toBe('4');
  });

  it('a boolean option may stand alone, and --smoke switches to the smoke defaults', () => {
    expect(parse(['--smoke'])).toEqual({ duration: '1', 'sidecar-node-args': '', smoke: 'true' });
    expect(parse(['--smoke', '--duration', '2']).duration).toBe('2');
  });

  it('names an unknown option, a stray word and a missing value', () => {
    expect(() => parse(['--durations', '3'])).toThrow(/^unknown argument "--durations"\n\nUsage: x$/);
    expect(() => parse(['3'])).toThrow(/^unknown argument "3"/);
    expect(() => parse(['--duration', '3', '--duration'])).toThrow(/^--duration needs a value$/);
  });

  it('numbers and number check the range and the count', () => {
    expect(numbers('levels', '1,64,256', 1, 1024)).toEqual([1, 64, 256]);
    expect(() => numbers('levels', '1,0', 1, 1024)).toThrow('--levels must list numbers from 1 to 1024, not "1,0"');
    expect(() => numbers('levels', 'ten', 1, 1024)).toThrow('--levels must list numbers');
    expect(number('duration', '2.5', 0.1, 60)).toBe(2.5);
    expect(() => number('duration', '10,20', 0.1, 60)).toThrow('--duration takes one number');
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
    expect(run.stderr).toMatch(/^unknown argument "--no-such-option"\n\nUsage: /);
    expect(run.stdout).toBe('');
  });
});

describe('bench/sidecar-overhead/run.js numeric options', () => {
  const script = path.join(ROOT, 'dist/bench/sidecar-overhead/run.js');

  it.each([
    ['--open-rates', '0', '--open-rates must list numbers from 1 to 100000, not "0"'],
    ['--concurrency', '1,-64', '--concurrency must list numbers from 1 to 4096, not "1,-64"'],
    ['--duration', 'ten', '--duration must list numbers from 0.1 to 3600, not "ten"'],
    ['--repeats', '2,3', '--repeats takes one number'],
  ])('refuses %s %s with exit 2 before starting anything', async (option, value, message) => {
    const run = await runProcess(process.execPath, [script, option, value]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`${message}\n`);
    expect(run.stdout).toBe('');
  });
});

describe('bench/peers/main.js', () => {
  it('refuses an unknown option with exit 2, naming it', async () => {
    const run = await runProcess(process.execPath, [path.join(ROOT, 'dist/bench/peers/main.js'), '--no-such', '1']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^bench\/peers: unknown argument "--no-such"\n\nUsage: npm run bench:peers/);
  });
});
