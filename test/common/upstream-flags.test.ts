/**
 * The upstream compatibility tables (src/<component>/upstream-flags.ts): every flag of every upstream release is
 * accepted; Go flag syntax; the logging mapping; precedence against pd-router's own names; one warning per ignored
 * flag; unknown flags still exit 2.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  checkCompatTable,
  compatCounts,
  flagName,
  loadOptions,
  type CommandDefinition,
  type CompatEntry,
  type OptionSpec,
  type OptionsSpec,
} from '../../src/common/index.js';
import { eppCommand } from '../../src/epp/index.js';
import { sidecarCommand } from '../../src/sidecar/index.js';
import { simCommand } from '../../src/sim/index.js';
import { componentBinary, runCli, runProcess } from '../helpers.js';

// eslint-disable-next-line no-restricted-syntax -- the three commands' option types differ; this test reads only what every definition has
const COMMANDS = { epp: eppCommand, sidecar: sidecarCommand, sim: simCommand } as unknown as Record<
  string,
  CommandDefinition<OptionsSpec>
>;

/** A valid command-line form of a value: the spec's default, as upstream would print it. */
function sampleArg(name: string, spec: OptionSpec<unknown>): string {
  const d = spec.default;
  if (spec.kind === 'bool') return `--${name}=${String(d)}`;
  if (spec.kind === 'duration') return `--${name}=${String(d)}ms`;
  if (Array.isArray(d)) return `--${name}=${d.join(',')}`;
  return `--${name}=${String(d)}`;
}

function specOf(def: CommandDefinition<OptionsSpec>, entry: CompatEntry): OptionSpec<unknown> {
  return entry.status === 'implemented' ? def.options[entry.option!] : entry.spec!;
}

/** Loads with no environment, so the machine's KUBECONFIG, POD_IP ... do not leak in. */
const load = (def: CommandDefinition<OptionsSpec>, argv: string[], env: NodeJS.ProcessEnv = {}) =>
  loadOptions(def, { argv, env });

describe.each(Object.entries(COMMANDS))('%s: upstream compatibility table', (component, def) => {
  const table = def.compat!;

  it('is consistent with the options: implemented names are real options, the others have a spec and a reason', () => {
    expect(checkCompatTable(table, def.options, def.envPrefix)).toEqual([]);
    const counts = compatCounts(table);
    expect(counts.flags.implemented + counts.flags['maps-to'] + counts.flags.ignored).toBe(
      Object.keys(table.flags).length,
    );
  });

  it.each(Object.keys(table.releases))('accepts every flag of %s with a valid value', (release) => {
    const entries = Object.entries(table.flags).filter(([, entry]) => entry.releases.includes(release));
    expect(entries.length).toBeGreaterThan(component === 'sim' ? 60 : 20);
    for (const [name, entry] of entries) {
      if (entry.status === 'implemented' && entry.option === undefined) continue; // config file flags: tested with a file
      const arg = sampleArg(name, specOf(def, entry));
      try {
        load(def, [arg]);
      } catch (e) {
        // Only a cross-field rule may object (e.g. --endpoint-target-ports needs --endpoint-selector): never the flag
        // or its value.
        expect(e, arg).toBeInstanceOf(ConfigError);
        expect((e as Error).message, arg).not.toMatch(/unknown flag|invalid value/);
      }
    }
  });

  it('lists every upstream flag and variable in --help, in the compatibility group', async () => {
    const r = await runProcess(process.execPath, [componentBinary(component), '--help'], { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    const group = r.stdout.slice(r.stdout.indexOf('Compatibility flags (llm-d)'));
    expect(group.length).toBeGreaterThan(100);
    for (const [name, entry] of Object.entries(table.flags)) {
      if (entry.status === 'implemented') expect(group, name).toMatch(new RegExp(`--${name}[,.]`));
      else expect(group, name).toMatch(new RegExp(`--${name}[ \\n]`));
    }
    for (const name of Object.keys(table.env)) expect(group, name).toContain(name);
  }, 60_000);

  it('an upstream flag in the config file counts as the flag (maps-to and ignored names are valid keys)', () => {
    const [name, entry] = Object.entries(table.flags).find(
      ([, flag]) => flag.status === 'ignored' && flag.spec!.kind === 'bool',
    )!;
    const dir = mkdtempSync(path.join(tmpdir(), 'pdr-compat-'));
    const file = path.join(dir, 'c.yaml');
    writeFileSync(file, `${name}: ${!entry.spec!.default}\n`);
    const configFlag = component === 'sidecar' ? '--configuration-file' : '--config';
    const loaded = load(def, [configFlag, file]);
    const warned = loaded.warnings.filter((warning) => warning.name === `--${name}`);
    expect(warned.length, name).toBeLessThanOrEqual(1);
    if (!entry.harmless?.(!entry.spec!.default)) expect(warned).toEqual([expect.objectContaining({ source: 'file' })]);
  });
});

describe('Go flag syntax', () => {
  it.each([
    [['--v', '4'], 'debug'],
    [['--v=4'], 'debug'],
    [['-v=4'], 'debug'],
    [['-v', '4'], 'debug'],
    [['-v4'], 'debug'],
    [['-v5'], 'trace'],
    [['--v', '1'], 'info'],
    [['--v=0'], 'info'],
  ])('EPP %j sets the level to %s', (argv, level) => {
    expect(load(eppCommand as never, ['--pool-name', 'p', ...argv]).values.logLevel).toBe(level);
  });

  it('--zap-encoder json / console with a separate value; booleans as --flag and --flag=false', () => {
    expect(load(eppCommand as never, ['--pool-name', 'p', '--zap-encoder', 'console']).values.logFormat).toBe('pretty');
    expect(
      load(eppCommand as never, ['--pool-name', 'p', '--zap-encoder', 'JSON', '--log-format', 'pretty']).values
        .logFormat,
    ).toBe('pretty');
    const on = load(sidecarCommand as never, ['--prefiller-use-tls', '--decoder-tls-insecure-skip-verify=true']);
    expect(on.values.enableTls).toEqual(['prefiller']);
    expect(on.values.tlsInsecureSkipVerify).toEqual(['decoder']);
    expect(load(sidecarCommand as never, ['--prefiller-use-tls=false']).values.enableTls).toEqual([]);
    // pflag never lets a boolean take the next argument.
    expect(() => load(eppCommand as never, ['--pool-name', 'p', '--tracing', 'false'])).toThrow(
      /unexpected argument "false"/,
    );
  });

  it("llm-d-inference-sim's space-separated lists: --served-model-name a b", () => {
    const v = load(simCommand as never, [
      '--served-model-name',
      'a',
      'b',
      '--model',
      'm',
      '--lora-modules',
      '{"name":"x"}',
      '{"name":"y"}',
    ]).values;
    expect(v.servedModelName).toEqual(['a', 'b']);
    expect(v.model).toEqual(['m']);
  });

  it('an empty argument (an empty $(VAR) in a manifest) is skipped, as upstream', () => {
    expect(load(simCommand as never, ['--port=8200', '', '--model=m']).values.model).toEqual(['m']);
  });
});

describe('logging: zap/logr and klog verbosity onto pino', () => {
  const epp = (argv: string[]) => load(eppCommand as never, ['--pool-name', 'p', ...argv]).values;
  const sidecar = (argv: string[]) => load(sidecarCommand as never, argv).values;
  const sim = (argv: string[]) => load(simCommand as never, argv).values;

  it.each([
    ['debug', 'debug'],
    ['info', 'info'],
    ['error', 'error'],
    ['panic', 'fatal'],
    ['DEBUG', 'debug'],
    ['3', 'info'],
    ['4', 'debug'],
    ['5', 'trace'],
  ])('--zap-log-level=%s is %s', (zap, level) => {
    expect(epp([`--zap-log-level=${zap}`]).logLevel).toBe(level);
    expect(sidecar([`--zap-log-level=${zap}`]).logLevel).toBe(level);
  });

  it('--zap-log-level beats --v whatever the order; --log-level beats both', () => {
    expect(epp(['--zap-log-level=error', '--v=5']).logLevel).toBe('error');
    expect(epp(['--v=5', '--zap-log-level=error']).logLevel).toBe('error');
    expect(epp(['--log-level=warn', '--v=5', '--zap-log-level=debug']).logLevel).toBe('warn');
  });

  it('--zap-devel: console encoder; debug on the sidecar (no --v), the EPP keeps --v', () => {
    expect(sidecar(['--zap-devel'])).toMatchObject({ logFormat: 'pretty', logLevel: 'debug' });
    expect(sidecar(['--zap-devel', '--zap-encoder=json', '--zap-log-level=info'])).toMatchObject({
      logFormat: 'json',
      logLevel: 'info',
    });
    expect(epp(['--zap-devel'])).toMatchObject({ logFormat: 'pretty', logLevel: 'info' });
  });

  it('the simulator reads klog verbosity: 1 warn, 2 info, 4 debug', () => {
    expect(sim(['-v=1']).logLevel).toBe('warn');
    expect(sim(['--v', '2']).logLevel).toBe('info');
    expect(sim(['-v4']).logLevel).toBe('debug');
    expect(sim(['-v=0']).logLevel).toBe('error');
  });

  it('bad values are errors naming the flag (upstream rejects them too)', () => {
    expect(() => epp(['--zap-encoder=xml'])).toThrow('invalid value "xml" for --zap-encoder: expected json or console');
    expect(() => epp(['--zap-log-level=0'])).toThrow(
      'invalid value "0" for --zap-log-level: expected one of debug, info, error, panic or an integer > 0',
    );
    expect(() => epp(['--v=x'])).toThrow('invalid value "x" for --v: expected an integer');
    expect(() => epp(['--zap-time-encoding=nano'])).toThrow('invalid value "nano" for --zap-time-encoding');
  });
});

describe('mapping and precedence', () => {
  it("the sidecar's deprecated v0.7.1 flags and variables drive pd-router's options", () => {
    const v = load(sidecarCommand as never, [
      '--connector=sglang',
      '--inference-pool-namespace=llm',
      '--inference-pool-name=pool',
      '--decoder-use-tls',
    ]).values;
    expect(v).toMatchObject({ kvConnector: 'sglang', inferencePool: 'llm/pool', enableTls: ['decoder'] });
    const env = load(sidecarCommand as never, [], { INFERENCE_POOL_NAMESPACE: 'ns', INFERENCE_POOL_NAME: 'p' }).values;
    expect(env.inferencePool).toBe('ns/p');
    expect(load(sidecarCommand as never, [], { INFERENCE_POOL_NAME: 'p' }).values.inferencePool).toBe('p');
    // --enable-ssrf-protection is satisfied by the deprecated variables, as upstream.
    expect(() =>
      load(sidecarCommand as never, ['--enable-ssrf-protection'], {
        INFERENCE_POOL_NAME: 'p',
        INFERENCE_POOL_NAMESPACE: 'ns',
      }),
    ).not.toThrow();
  });

  it("a pd-router name beats the upstream one; an upstream flag beats files and variables; upstream's INFERENCE_POOL beats the deprecated pair", () => {
    expect(
      load(sidecarCommand as never, ['--connector=sglang', '--kv-connector=shared-storage']).values.kvConnector,
    ).toBe('shared-storage');
    expect(
      load(sidecarCommand as never, ['--connector=sglang'], { PD_SIDECAR_KV_CONNECTOR: 'shared-storage' }).values
        .kvConnector,
    ).toBe('sglang');
    expect(
      load(sidecarCommand as never, [], { INFERENCE_POOL: 'a/b', INFERENCE_POOL_NAME: 'c' }).values.inferencePool,
    ).toBe('a/b');
    expect(load(eppCommand as never, ['--pool-name=p', '--drain-timeout=45s']).values.shutdownTimeout).toBe(45_000);
    expect(
      load(eppCommand as never, ['--pool-name=p', '--drain-timeout=45s', '--shutdown-timeout=5s']).values
        .shutdownTimeout,
    ).toBe(5_000);
    expect(load(simCommand as never, ['--max-request-body-size-mb=8']).values.maxRequestBodySize).toBe(8 * 1024 * 1024);
  });

  it('ignored flags warn once each, only when the value asks for something pd-router lacks', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pdr-compat-'));
    const file = path.join(dir, 'sidecar.yaml');
    writeFileSync(file, 'moriio-write-mode: true\n');
    const loaded = load(
      sidecarCommand as never,
      [
        '--moriio-write-mode',
        '--moriio-write-mode=true',
        '--configuration-file',
        file,
        '--moriio-decode-notify-port=61005',
        '--tracing',
      ],
      {
        MORIIO_METRICS_ADDR: ':9100',
        // Implemented: read by the tracing module, never warned about.
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317',
      },
    );
    expect(loaded.warnings.map((warning) => warning.name)).toEqual(['--moriio-write-mode', 'MORIIO_METRICS_ADDR']);
    expect(loaded.values.tracing).toBe(true);
    const quiet = load(eppCommand as never, [
      '--pool-name=p',
      '--tracing=false',
      '--metrics-endpoint-auth=false',
      '--enable-pprof=false',
      '--zap-time-encoding=rfc3339',
    ]);
    expect(quiet.warnings).toEqual([]);
  });

  it('only a flag no upstream release has is unknown', () => {
    expect(() => load(sidecarCommand as never, ['--connectr=nixlv2'])).toThrow(
      'unknown flag --connectr (did you mean --connector?)',
    );
    expect(() => load(eppCommand as never, ['--pool-name=p', '--leader-election'])).toThrow(
      /unknown flag --leader-election/,
    );
  });

  it('every pd-router flag keeps its own name; upstream names never shadow one', () => {
    for (const def of Object.values(COMMANDS)) {
      const native = new Set(
        Object.entries(def.options).flatMap(([k, spec]) => [flagName(k, spec), ...(spec.aliases ?? [])]),
      );
      for (const [name, e] of Object.entries(def.compat!.flags))
        expect(e.status === 'implemented' || !native.has(name), name).toBe(true);
    }
  });
});

describe('processes', () => {
  it.each([
    ['epp', ['--pool-nmae=x'], 'pd-router-epp: unknown flag --pool-nmae (did you mean --pool-name?)'],
    ['sidecar', ['--port=8000', '--no-such-flag'], 'pd-router-sidecar: unknown flag --no-such-flag'],
    ['sim', ['--port=8000', '--zap-encoder=json'], 'pd-router-sim: unknown flag --zap-encoder'],
    [
      'sidecar',
      ['--moriio-dp-size=two'],
      'pd-router-sidecar: invalid value "two" for --moriio-dp-size: expected an integer',
    ],
  ])(
    'pd-router-%s %j exits 2',
    async (component, args, message) => {
      const r = await runProcess(process.execPath, [componentBinary(component), ...args], {
        timeoutMs: 30_000,
        env: { INFERENCE_POOL: '' },
      });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    },
    60_000,
  );

  it('pd-router given flags first (an upstream manifest on the all-in-one image) names the binary that takes them', async () => {
    const r = await runCli(['--port=8000', '--vllm-port=8200', '--kv-connector=nixlv2', '--secure-proxy=false'], {
      timeoutMs: 30_000,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`pd-router: "--port=8000" is a flag, but pd-router's first argument is a command`);
    expect(r.stderr).toContain(
      '  pd-router-sidecar --port=8000 --vllm-port=8200 --kv-connector=nixlv2 --secure-proxy=false',
    );
    expect(r.stderr).not.toContain('pd-router-sim --port');
    const epp = await runCli(['--pool-name', 'p', '--v', '4', '--zap-encoder', 'json'], { timeoutMs: 30_000 });
    expect(epp.stderr).toContain('  pd-router-epp --pool-name p --v 4 --zap-encoder json');
  }, 60_000);
});
