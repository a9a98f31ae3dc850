/**
 * Loads a component's options from the command line, an optional YAML/JSON config file and the environment, with the
 * precedence flag > file > env > default (the order llm-d's sidecar documents). Unknown flags, unknown file keys and bad
 * values are rejected with a ConfigError that names the flag or key, the bad value and what is allowed.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { OptionValueError, type OptionSpec } from './option-types.js';

export type OptionsSpec = Record<string, OptionSpec<any>>;
export type OptionValues<S extends OptionsSpec> = { [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };
export type ValueSource = 'flag' | 'file' | 'env' | 'default';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface CommandDefinition<S extends OptionsSpec> {
  /** Command name as typed after `pd-router`. */
  name: string;
  summary: string;
  description?: string;
  options: S;
  /** Prefix of the derived environment variable names, e.g. `PD_SIM` gives `PD_SIM_PORT`. */
  envPrefix: string;
  /** Flags whose value is a config file path. `config` is always accepted. */
  configFileFlags?: readonly string[];
  /** Flags whose value is inline YAML/JSON config text (upstream sidecar's `--configuration`). */
  configTextFlags?: readonly string[];
  /** Cross-field rules; return messages for violations. */
  validate?: (values: OptionValues<S>) => string[];
  /** Extra help text printed after the flag list. */
  epilog?: string;
  /** An option that may also be given as the one positional argument (e.g. `vllm serve <model>`). */
  positional?: keyof S & string;
}

export interface LoadedOptions<S extends OptionsSpec> {
  values: OptionValues<S>;
  sources: Record<keyof S, ValueSource>;
  configFile?: string;
}

export interface LoadInput {
  argv: readonly string[];
  env?: NodeJS.ProcessEnv;
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function flagName(key: string, spec: OptionSpec<unknown>): string {
  return spec.flag ?? kebab(key);
}

export function envName(prefix: string, flag: string): string {
  return `${prefix}_${flag.replace(/-/g, '_').toUpperCase()}`;
}

/** Result of `--help`: the caller prints `helpText` and exits 0. */
export class HelpRequested extends Error {
  constructor(readonly helpText: string) {
    super('help requested');
  }
}

interface NameIndex {
  byName: Map<string, string>; // flag or alias -> key
}

function indexNames<S extends OptionsSpec>(def: CommandDefinition<S>): NameIndex {
  const byName = new Map<string, string>();
  for (const [key, spec] of Object.entries(def.options)) {
    const names = [flagName(key, spec), ...(spec.aliases ?? [])];
    for (const n of names) {
      if (byName.has(n)) throw new Error(`option name ${n} defined twice in ${def.name}`);
      byName.set(n, key);
    }
  }
  return { byName };
}

function configFlagSet<S extends OptionsSpec>(def: CommandDefinition<S>) {
  return {
    file: new Set(['config', ...(def.configFileFlags ?? [])]),
    text: new Set(def.configTextFlags ?? []),
  };
}

function shown(raw: unknown): string {
  return typeof raw === 'string' ? JSON.stringify(raw) : JSON.stringify(raw) ?? String(raw);
}

function parseValue(spec: OptionSpec<unknown>, raw: unknown, where: string): unknown {
  try {
    return spec.parse(raw);
  } catch (e) {
    if (e instanceof OptionValueError) throw new ConfigError(`invalid value ${shown(raw)} for ${where}: expected ${e.expected}`);
    throw e;
  }
}

/** Closest known name, for "did you mean" hints. */
function suggest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

interface ParsedArgv {
  flags: Map<string, unknown[]>; // key -> raw values in order
  positional?: string;
  configFiles: string[];
  configTexts: string[];
  help: boolean;
}

function parseArgv<S extends OptionsSpec>(def: CommandDefinition<S>, argv: readonly string[], names: NameIndex): ParsedArgv {
  const out: ParsedArgv = { flags: new Map(), configFiles: [], configTexts: [], help: false };
  const cfg = configFlagSet(def);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h' || arg === 'help') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-' || arg === '--') {
      if (def.positional && out.positional === undefined && arg !== '-' && arg !== '--') {
        out.positional = arg;
        continue;
      }
      const what = def.positional ? `one ${kebab(def.positional)} and flags` : 'only flags';
      throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}: pd-router ${def.name} takes ${what} (see --help)`);
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    let value: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    const takeValue = (): string => {
      if (value !== undefined) return value;
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) throw new ConfigError(`flag --${name} needs a value`);
      i++;
      return next;
    };
    if (cfg.file.has(name)) {
      out.configFiles.push(takeValue());
      continue;
    }
    if (cfg.text.has(name)) {
      out.configTexts.push(takeValue());
      continue;
    }
    const key = names.byName.get(name);
    if (key === undefined) {
      const hint = suggest(name, [...names.byName.keys(), ...cfg.file, ...cfg.text]);
      throw new ConfigError(`unknown flag --${name}${hint ? ` (did you mean --${hint}?)` : ''}; run pd-router ${def.name} --help for the list`);
    }
    const spec = def.options[key]!;
    // Go's pflag never lets a boolean swallow the next argument: `--flag` is true, `--flag=false` is false.
    const raw = spec.kind === 'bool' ? (value ?? 'true') : takeValue();
    const list = out.flags.get(key) ?? [];
    list.push(raw);
    out.flags.set(key, list);
  }
  return out;
}

function readConfigDocument(text: string, origin: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`cannot parse ${origin} as YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${origin} must be a mapping of option names to values`);
  return doc as Record<string, unknown>;
}

/** Loads and validates options. Throws HelpRequested for --help, ConfigError for bad input. */
export function loadOptions<S extends OptionsSpec>(def: CommandDefinition<S>, input: LoadInput): LoadedOptions<S> {
  const env = input.env ?? process.env;
  const names = indexNames(def);
  const argv = parseArgv(def, input.argv, names);
  if (argv.help) throw new HelpRequested(renderHelp(def));
  if (argv.configFiles.length + argv.configTexts.length > 1) {
    throw new ConfigError('give at most one config file or inline configuration');
  }

  let fileValues: Record<string, unknown> = {};
  let fileOrigin = '';
  let configFile: string | undefined;
  const envConfig = env[`${def.envPrefix}_CONFIG`];
  const configPath = argv.configFiles[0] ?? (argv.configTexts.length === 0 && envConfig ? envConfig : undefined);
  if (configPath !== undefined) {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${configPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    configFile = configPath;
    fileOrigin = `config file ${configPath}`;
    fileValues = readConfigDocument(text, fileOrigin);
  } else if (argv.configTexts[0] !== undefined) {
    fileOrigin = 'inline configuration';
    fileValues = readConfigDocument(argv.configTexts[0], fileOrigin);
  }
  const fileByKey = new Map<string, { name: string; raw: unknown }>();
  for (const [name, raw] of Object.entries(fileValues)) {
    const key = names.byName.get(name);
    if (key === undefined) {
      const hint = suggest(name, names.byName.keys());
      throw new ConfigError(`unknown key "${name}" in ${fileOrigin}${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
    if (fileByKey.has(key)) throw new ConfigError(`${fileOrigin} sets "${name}" twice (also as "${fileByKey.get(key)!.name}")`);
    fileByKey.set(key, { name, raw });
  }

  const values: Record<string, unknown> = {};
  const sources: Record<string, ValueSource> = {};
  for (const [key, spec] of Object.entries(def.options)) {
    const flag = flagName(key, spec);
    const flagRaw = argv.flags.get(key) ?? (def.positional === key && argv.positional !== undefined ? [argv.positional] : undefined);
    if (flagRaw !== undefined) {
      // Lists accumulate repeated flags; scalars take the last one, as Go's flag package does.
      const raw = spec.kind === 'list' ? flagRaw.map(String) : flagRaw[flagRaw.length - 1];
      values[key] = parseValue(spec, raw, `--${flag}`);
      sources[key] = 'flag';
      continue;
    }
    const fromFile = fileByKey.get(key);
    if (fromFile !== undefined) {
      values[key] = parseValue(spec, fromFile.raw, `"${fromFile.name}" in ${fileOrigin}`);
      sources[key] = 'file';
      continue;
    }
    const envNames = [envName(def.envPrefix, flag), ...(spec.env ?? [])];
    const envHit = envNames.find((n) => env[n] !== undefined && env[n] !== '');
    if (envHit !== undefined) {
      values[key] = parseValue(spec, env[envHit], `environment variable ${envHit}`);
      sources[key] = 'env';
      continue;
    }
    values[key] = spec.default;
    sources[key] = 'default';
  }
  const typed = values as OptionValues<S>;
  const problems = def.validate?.(typed) ?? [];
  if (problems.length > 0) throw new ConfigError(problems.join('; '));
  return { values: typed, sources: sources as Record<keyof S, ValueSource>, configFile };
}

/** Every option at its default, typed; components merge overrides onto it when started in-process. */
export function defaultValues<S extends OptionsSpec>(options: S): OptionValues<S> {
  return Object.fromEntries(Object.entries(options).map(([k, spec]) => [k, spec.default])) as OptionValues<S>;
}

/**
 * Command-line flags reproducing `values` (only those that differ from the defaults), so a supervisor can start a
 * component as a child process from the same typed config it would pass in-process.
 */
export function toArgs<S extends OptionsSpec>(options: S, values: Partial<OptionValues<S>>): string[] {
  const args: string[] = [];
  for (const [key, spec] of Object.entries(options)) {
    const v = (values as Record<string, unknown>)[key];
    if (v === undefined) continue;
    if (JSON.stringify(v) === JSON.stringify(spec.default)) continue;
    const flag = `--${flagName(key, spec)}`;
    if (Array.isArray(v)) args.push(`${flag}=${v.join(',')}`);
    else if (spec.kind === 'duration') args.push(`${flag}=${v}ms`);
    else args.push(`${flag}=${String(v)}`);
  }
  return args;
}

/** --help text: every flag with its type, default and environment variable. */
export function renderHelp<S extends OptionsSpec>(def: CommandDefinition<S>): string {
  const lines: string[] = [];
  lines.push(`Usage: pd-router ${def.name}${def.positional ? ` [${kebab(def.positional)}]` : ''} [flags]`, '', def.summary);
  if (def.description) lines.push('', def.description.trim());
  lines.push('', 'Flags:');
  const rows: Array<[string, string]> = [];
  const cfgNames = ['config', ...(def.configFileFlags ?? [])];
  rows.push([
    `--${cfgNames.join(', --')} <path>`,
    `YAML/JSON file with the same keys as the flags (strict: unknown keys are errors). Precedence: flag > file > env > default. [env ${def.envPrefix}_CONFIG]`,
  ]);
  for (const t of def.configTextFlags ?? []) rows.push([`--${t} <yaml>`, 'Inline YAML/JSON configuration, same keys as the config file.']);
  for (const [key, spec] of Object.entries(def.options)) {
    if (spec.hidden) continue;
    const flag = flagName(key, spec);
    const left = `--${flag}${spec.placeholder ? ` ${spec.placeholder}` : ''}`;
    const envs = [envName(def.envPrefix, flag), ...(spec.env ?? [])];
    let right = `${spec.description} (default ${spec.formatDefault()}) [env ${envs.join(', ')}]`;
    if (spec.aliases?.length) right += ` (also accepted: --${spec.aliases.join(', --')})`;
    rows.push([left, right]);
  }
  rows.push(['--help, -h', 'Show this help.']);
  rows.push(['--version', 'Print the pd-router version and exit.']);
  const width = Math.min(44, Math.max(...rows.map(([l]) => l.length)) + 2);
  for (const [l, r] of rows) {
    if (l.length + 2 > width) lines.push(`  ${l}`, `  ${' '.repeat(width)}${r}`);
    else lines.push(`  ${l.padEnd(width)}${r}`);
  }
  if (def.epilog) lines.push('', def.epilog.trim());
  return lines.join('\n') + '\n';
}
