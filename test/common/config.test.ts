import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, HelpRequested, loadOptions, opt, type CommandDefinition } from '../../src/common/index.js';
import { runCli } from '../helpers.js';

const options = {
  port: opt.int({ default: 8000, min: 1, max: 65535, description: 'Port.' }),
  timeout: opt.duration({ default: 1000, description: 'Timeout.' }),
  secure: opt.bool({ default: true, description: 'TLS.' }),
  modelServerPort: opt.int({ default: 8200, min: 1, max: 65535, aliases: ['vllm-port'], description: 'Decoder port.' }),
  stages: opt.list({ default: [], choices: ['prefiller', 'decoder', 'encoder'], description: 'Stages.' }),
  mode: opt.oneOf(['a', 'b'] as const, { default: 'a', description: 'Mode.' }),
  limit: opt.bytes({ default: 1024, description: 'Limit.' }),
  pool: opt.string({ default: '', env: ['INFERENCE_POOL'], description: 'Pool.' }),
};

const def: CommandDefinition<typeof options> = {
  name: 'test',
  summary: 'A test command.',
  options,
  envPrefix: 'PD_TEST',
};

function tmpFile(name: string, content: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pdr-config-'));
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

describe('option loading', () => {
  it('uses defaults when nothing is given', () => {
    const { values, sources } = loadOptions(def, { argv: [], env: {} });
    expect(values).toEqual({
      port: 8000,
      timeout: 1000,
      secure: true,
      modelServerPort: 8200,
      stages: [],
      mode: 'a',
      limit: 1024,
      pool: '',
    });
    expect(sources.port).toBe('default');
  });

  it('applies precedence flag > file > env > default', () => {
    const file = tmpFile('c.yaml', 'port: 7000\ntimeout: 2s\n');
    const env = { PD_TEST_PORT: '6000', PD_TEST_TIMEOUT: '3s', PD_TEST_MODE: 'b' };
    const { values, sources } = loadOptions(def, { argv: ['--config', file, '--port=9000'], env });
    expect(values.port).toBe(9000);
    expect(sources.port).toBe('flag');
    expect(values.timeout).toBe(2000);
    expect(sources.timeout).toBe('file');
    expect(values.mode).toBe('b');
    expect(sources.mode).toBe('env');
    expect(values.secure).toBe(true);
    expect(sources.secure).toBe('default');
  });

  it('reads JSON config files too, and upstream env names', () => {
    const file = tmpFile('c.json', JSON.stringify({ 'vllm-port': 8300, stages: ['decoder'] }));
    const { values } = loadOptions(def, { argv: ['--config', file], env: { INFERENCE_POOL: 'ns/pool' } });
    expect(values.modelServerPort).toBe(8300);
    expect(values.stages).toEqual(['decoder']);
    expect(values.pool).toBe('ns/pool');
  });

  it("accepts Go's boolean forms and never lets a boolean swallow the next argument", () => {
    expect(loadOptions(def, { argv: ['--secure=false'], env: {} }).values.secure).toBe(false);
    expect(loadOptions(def, { argv: ['--secure'], env: {} }).values.secure).toBe(true);
    expect(() => loadOptions(def, { argv: ['--secure', 'false'], env: {} })).toThrow(/unexpected argument "false"/);
  });

  it('accumulates repeated list flags and splits commas', () => {
    const { values } = loadOptions(def, { argv: ['--stages', 'prefiller', '--stages=decoder,encoder'], env: {} });
    expect(values.stages).toEqual(['prefiller', 'decoder', 'encoder']);
  });

  it('accepts a deprecated alias and byte sizes', () => {
    const { values } = loadOptions(def, { argv: ['--vllm-port', '8201', '--limit', '10MiB'], env: {} });
    expect(values.modelServerPort).toBe(8201);
    expect(values.limit).toBe(10 * 1024 * 1024);
  });

  it.each([
    [['--port', 'abc'], 'invalid value "abc" for --port: expected an integer between 1 and 65535'],
    [['--port=70000'], 'invalid value "70000" for --port: expected an integer between 1 and 65535'],
    [
      ['--timeout', '5 parsecs'],
      'invalid value "5 parsecs" for --timeout: expected a duration such as 200ms, 1.5s or 2m',
    ],
    [['--mode', 'c'], 'invalid value "c" for --mode: expected one of a, b'],
    [
      ['--stages', 'prefill'],
      'invalid value ["prefill"] for --stages: expected a comma-separated list of prefiller, decoder, encoder',
    ],
    [['--secure=maybe'], 'invalid value "maybe" for --secure: expected true or false'],
    [['--prot', '1'], 'unknown flag --prot (did you mean --port?); run pd-router test --help for the list'],
    [['--port'], 'flag --port needs a value'],
  ])('rejects %j with a message naming the flag, value and what is allowed', (argv, message) => {
    expect(() => loadOptions(def, { argv, env: {} })).toThrow(new ConfigError(message));
  });

  it('rejects unknown and bad keys in a config file', () => {
    const unknown = tmpFile('u.yaml', 'prot: 1\n');
    expect(() => loadOptions(def, { argv: ['--config', unknown], env: {} })).toThrow(
      `unknown key "prot" in config file ${unknown} (did you mean "port"?)`,
    );
    const bad = tmpFile('b.yaml', 'port: -1\n');
    expect(() => loadOptions(def, { argv: ['--config', bad], env: {} })).toThrow(
      `invalid value -1 for "port" in config file ${bad}: expected an integer between 1 and 65535`,
    );
    const notMap = tmpFile('n.yaml', '- 1\n- 2\n');
    expect(() => loadOptions(def, { argv: ['--config', notMap], env: {} })).toThrow(/must be a mapping/);
    expect(() => loadOptions(def, { argv: ['--config', '/nonexistent/x.yaml'], env: {} })).toThrow(
      'cannot read config file /nonexistent/x.yaml: ENOENT',
    );
  });

  it('names the environment variable when an env value is bad', () => {
    expect(() => loadOptions(def, { argv: [], env: { PD_TEST_PORT: 'eighty' } })).toThrow(
      'invalid value "eighty" for environment variable PD_TEST_PORT: expected an integer between 1 and 65535',
    );
  });

  it('renders help listing every flag with its default and env var', () => {
    try {
      loadOptions(def, { argv: ['--help'], env: {} });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(HelpRequested);
      const help = (e as HelpRequested).helpText;
      for (const flag of [
        '--port <int>',
        '--timeout <duration>',
        '--secure',
        '--model-server-port',
        '--stages',
        '--mode <a|b>',
        '--limit <bytes>',
      ]) {
        expect(help).toContain(flag);
      }
      expect(help).toContain('(default 8000) [env PD_TEST_PORT]');
      expect(help).toContain('(default 1s)');
      expect(help).toContain('(also accepted: --vllm-port)');
    }
  });
});

describe('option values', () => {
  // What each kind accepts and refuses (the rules zod applied before these checks replaced it; unchanged).
  const accepts = (spec: { parse(raw: unknown): unknown }, raw: unknown) => {
    try {
      return { value: spec.parse(raw) };
    } catch (err) {
      return { refused: (err as Error).message };
    }
  };
  it('parses every kind from text and from config-file values, and refuses the rest with what is expected', () => {
    const int = opt.int({ default: 0, min: 1, max: 10, description: '' });
    expect(accepts(int, ' +7 ')).toEqual({ value: 7 });
    expect(accepts(int, 3)).toEqual({ value: 3 });
    for (const bad of ['7.5', '0', '11', '', '1e1', 2.5, Number.NaN, Infinity, true, null, ['3']])
      expect(accepts(int, bad)).toEqual({ refused: 'an integer between 1 and 10' });
    const big = opt.int({ default: 0, description: '' });
    expect(accepts(big, String(2 ** 53 - 1))).toEqual({ value: 2 ** 53 - 1 });
    expect(accepts(big, String(2 ** 53))).toEqual({ refused: 'an integer' });
    const num = opt.number({ default: 0, min: 0, max: 1, description: '' });
    expect(accepts(num, '.5')).toEqual({ value: 0.5 });
    expect(accepts(num, '1e-1')).toEqual({ value: 0.1 });
    for (const bad of ['1.5', 'x', Infinity, Number.NaN, '0x1']) expect(accepts(num, bad)).toHaveProperty('refused');
    const str = opt.string({ default: '', pattern: /^[a-z]+$/, patternHint: 'lower-case letters', description: '' });
    expect(accepts(str, 'abc')).toEqual({ value: 'abc' });
    expect(accepts(opt.string({ default: '', description: '' }), 42)).toEqual({ value: '42' });
    expect(accepts(str, 'ab1')).toEqual({ refused: 'lower-case letters' });
    expect(accepts(str, Infinity)).toHaveProperty('refused');
    const flag = opt.bool({ default: false, description: '' });
    expect(accepts(flag, ' On ')).toEqual({ value: true });
    expect(accepts(flag, 'f')).toEqual({ value: false });
    expect(accepts(flag, 1)).toEqual({ refused: 'true or false' });
    const dur = opt.duration({ default: 0, min: 1, description: '' });
    expect(accepts(dur, '1.5s')).toEqual({ value: 1500 });
    expect(accepts(dur, 250)).toEqual({ value: 250 });
    expect(accepts(dur, '0s')).toEqual({ refused: 'a duration such as 200ms, 1.5s or 2m of at least 1ms' });
    expect(accepts(dur, 'soon')).toHaveProperty('refused');
    const mode = opt.oneOf(['a', ''] as const, { default: 'a', description: '' });
    expect(accepts(mode, ' a ')).toEqual({ value: 'a' });
    expect(accepts(mode, 'b')).toEqual({ refused: 'one of a, ""' });
    const stages = opt.list({ default: [], choices: ['x', 'y'], description: '' });
    expect(accepts(stages, ['x', ' y, x ', ''])).toEqual({ value: ['x', 'y', 'x'] });
    expect(accepts(opt.list({ default: [], description: '' }), [1, 'a'])).toEqual({ value: ['1', 'a'] });
    expect(accepts(stages, 'x,z')).toEqual({ refused: 'a comma-separated list of x, y' });
    expect(accepts(stages, [null])).toHaveProperty('refused');
    const size = opt.bytes({ default: 0, min: 1, description: '' });
    expect(accepts(size, ' 1.5 KiB ')).toEqual({ value: 1536 });
    expect(accepts(size, 2048)).toEqual({ value: 2048 });
    for (const bad of ['10XB', '1constructor', '-1', 0, 1.5, '99999999999GiB'])
      expect(accepts(size, bad)).toEqual({ refused: 'a size such as 10MiB, 512KiB or a number of bytes' });
  });
});

describe('pd-router CLI', () => {
  it('exits 2 with a clear message for a bad flag', async () => {
    const r = await runCli(['sim', '--max-num-seqs', 'lots']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('pd-router sim: invalid value "lots" for --max-num-seqs: expected an integer >= 1\n');
  });

  it('exits 2 for a cross-field rule', async () => {
    const r = await runCli(['sim', '--time-to-first-token', '100ms', '--time-to-first-token-std-dev', '50ms']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'time to first token standard deviation (50ms) cannot be more than 30% of time to first token (100ms)',
    );
  });

  it('prints help with every simulator flag and its default', async () => {
    const r = await runCli(['sim', '--help']);
    expect(r.code).toBe(0);
    for (const line of [
      '--port <int>',
      '(default 8000)',
      '--max-num-seqs <int>',
      '(default 5)',
      '--max-waiting-queue-length',
      '(default 1000)',
      '--max-model-len',
      '(default 1024)',
      '--kv-cache-size',
      '--block-size',
      '(default 16)',
      '--latency-calculator <""|constant|per-token>',
      '--time-factor-under-load',
      '--kv-cache-transfer-time-per-token',
      '--seed',
      '--time-scale',
    ]) {
      expect(r.stdout).toContain(line);
    }
  });

  it('lists commands and rejects unknown ones', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('sim');
    const bad = await runCli(['nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown command "nope"');
  });
});

describe('toArgs', () => {
  it('turns typed values back into flags that load to the same values', async () => {
    const { toArgs } = await import('../../src/common/index.js');
    const values = {
      port: 9000,
      timeout: 1500,
      secure: false,
      stages: ['decoder', 'encoder'],
      mode: 'b' as const,
      limit: 2048,
      pool: 'ns/p',
    };
    const args = toArgs(options, values);
    expect(args).toEqual([
      '--port=9000',
      '--timeout=1500ms',
      '--secure=false',
      '--stages=decoder,encoder',
      '--mode=b',
      '--limit=2048',
      '--pool=ns/p',
    ]);
    expect(loadOptions(def, { argv: args, env: {} }).values).toMatchObject(values);
    expect(toArgs(options, { port: 8000 })).toEqual([]);
  });
});

describe('positional argument', () => {
  it('pd-router sim takes the model positionally, as vllm serve does', async () => {
    const { simCommand } = await import('../../src/sim/index.js');
    expect(loadOptions(simCommand, { argv: ['Qwen/Qwen3-8B', '--port=9'], env: {} }).values.model).toEqual([
      'Qwen/Qwen3-8B',
    ]);
    expect(() => loadOptions(simCommand, { argv: ['a', 'b'], env: {} })).toThrow(
      'unexpected argument "b": pd-router sim takes one model and flags (see --help)',
    );
    expect(() => loadOptions(def, { argv: ['x'], env: {} })).toThrow('takes only flags');
  });
});
