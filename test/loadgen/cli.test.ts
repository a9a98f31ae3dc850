import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { loadOptions } from '../../src/common/index.js';
import { WORKLOAD_PRESETS } from '../../src/loadgen/index.js';
import { loadgenCommand, resolveArrival, resolveProfile } from '../../src/loadgen/options.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { runCli } from '../helpers.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close(1_000);
  sim = undefined;
});

const values = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadOptions(loadgenCommand, { argv, env }).values;

describe('pd-router loadgen CLI', () => {
  it('--help lists every flag with its default, and the presets', async () => {
    const r = await runCli(['loadgen', '--help']);
    expect(r.code).toBe(0);
    for (const s of [
      'Usage: pd-router loadgen [url]',
      '--url <string>',
      '(default http://127.0.0.1:8080)',
      '--model <string>',
      '--preset <pd-guide-5k-250|pd-guide-1k-1k|random-10k-1k|prefill-heavy|decode-heavy|shared-prefix>',
      '(default pd-guide-5k-250)',
      '--profile-file <string>',
      '--input-tokens <string>',
      '--output-tokens <string>',
      '--prefix-groups <int>',
      '--arrival <""|constant|poisson|concurrency>',
      '--rate <number>',
      '--concurrency <int>',
      '--requests <int>',
      '--duration <duration>',
      '(default 0s)',
      '--time-scale <number>',
      '--seed <int>',
      '--timeout <duration>',
      '(default 10m)',
      '--header <list>',
      '--out <string>',
      '--progress <auto|on|off>',
      'PD_LOADGEN_RATE',
      'Presets:',
      ...Object.keys(WORKLOAD_PRESETS),
    ]) {
      expect(r.stdout).toContain(s);
    }
  });

  it.each([
    [['--input-tokens', 'lots'], 'invalid value "lots" for --input-tokens'],
    [['--rate', '2', '--concurrency', '3'], 'give --rate or --concurrency, not both'],
    [['--prefix-groups', '3'], '--prefix-groups and --prefix-tokens go together'],
    [['--time-scale', '0'], '--time-scale must be greater than 0'],
    [['--header', 'no-colon', '--model', 'm'], 'invalid value "no-colon" for --header'],
    [['--arrival', 'poisson', '--preset', 'random-10k-1k', '--model', 'm'], '--arrival poisson needs --rate'],
  ])('rejects %j', async (args, message) => {
    const r = await runCli(['loadgen', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('resolves the arrival: flags, the preset\'s suggestion, the DoE rule of 10 × concurrency', () => {
    const p = (argv: string[]) => {
      const v = values(argv);
      return resolveArrival(v, resolveProfile(v));
    };
    expect(p([])).toEqual({ arrival: { kind: 'constant', rate: 45 }, durationSeconds: 120 });
    expect(p(['--concurrency', '32'])).toEqual({ arrival: { kind: 'concurrency', concurrency: 32 }, requests: 320 });
    expect(p(['--rate', '3', '--requests', '9'])).toEqual({ arrival: { kind: 'constant', rate: 3 }, requests: 9 });
    expect(p(['--arrival', 'poisson'])).toEqual({ arrival: { kind: 'poisson', rate: 45 }, durationSeconds: 120 });
    expect(p(['--preset', 'random-10k-1k'])).toEqual({ arrival: { kind: 'concurrency', concurrency: 8 }, requests: 80 });
    expect(p(['--rate', '2', '--duration', '1m', '--requests', '5'])).toEqual({ arrival: { kind: 'constant', rate: 2 }, requests: 5, durationSeconds: 60 });
    expect(values([], { PD_LOADGEN_RATE: '7' }).rate).toBe(7);
  });

  it('reads a profile file and applies overrides', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'loadgen-'));
    const file = path.join(dir, 'profile.yaml');
    writeFileSync(file, 'name: mine\napi: chat\ninputTokens: {kind: uniform, min: 10, max: 20}\noutputTokens: {kind: fixed, value: 3}\n');
    const p = resolveProfile(values(['--profile-file', file, '--output-tokens', 'normal:10,2,5,15']));
    expect(p).toMatchObject({ name: 'mine-custom', api: 'chat', inputTokens: { kind: 'uniform', min: 10, max: 20 }, outputTokens: { kind: 'normal', mean: 10 } });
    writeFileSync(file, 'name: bad\napi: grpc\n');
    expect(() => resolveProfile(values(['--profile-file', file]))).toThrow(/--profile-file .*api/);
  });

  it('a short run writes report.yaml, report.json, summary.md and samples.jsonl (model discovered from /v1/models)', async () => {
    sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, timeToFirstToken: 5, interTokenLatency: 1, maxModelLen: 4096, model: ['served-one'] }));
    const out = mkdtempSync(path.join(tmpdir(), 'loadgen-out-'));
    const r = await runCli(
      ['loadgen', sim.url, '--input-tokens', '40-80', '--output-tokens', '5', '--api', 'chat', '--concurrency', '2', '--requests', '6', '--out', out, '--log-level', 'warn'],
      { timeoutMs: 15_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('# Load run: pd-guide-5k-250-custom');
    expect(r.stdout).toContain('6 finished, 6 succeeded, 0 failed');
    const json = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(parseYaml(readFileSync(path.join(out, 'report.yaml'), 'utf8'))).toEqual(json);
    expect(json.scenario.model.name).toBe('served-one');
    expect(json.metrics.requests).toMatchObject({ total: 6, failures: 0 });
    expect(json.metrics.latency.time_to_first_token.units).toBe('s');
    expect(json.metrics.throughput.output_tokens_per_sec).toBeGreaterThan(0);
    const samples = readFileSync(path.join(out, 'samples.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(samples).toHaveLength(6);
    for (const s of samples) expect(s.reportedInputTokens).toBe(s.inputTokens);
    expect(readFileSync(path.join(out, 'summary.md'), 'utf8')).toBe(r.stdout.slice(r.stdout.indexOf('# Load run')));
  });

  it('exits 1 when every request failed', async () => {
    sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0 }));
    const r = await runCli(['loadgen', sim.url, '--model', 'sim-model', '--input-tokens', '10', '--output-tokens', '2', '--concurrency', '1', '--requests', '2', '--header', 'X-Return-Error: 429', '--log-level', 'warn']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('| HTTP 429: Simulated error triggered by X-Return-Error header (code 429) | 2 |');
  });
});
