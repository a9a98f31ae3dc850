/**
 * Loads a component's options from the command line, an optional YAML/JSON config file and the environment, with the
 * precedence flag > file > env > default (the order llm-d's sidecar documents). Unknown flags, unknown file keys and bad
 * values are rejected with a ConfigError that names the flag or key, the bad value and what is allowed.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { OptionValueError, type OptionSpec } from './option-types.js';
import { envName, flagName, kebab } from './names.js';
import { resolveCompat, type CompatEntry, type CompatTable, type CompatWarning } from './compat.js';

/** An option table: option specs by key. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one table holds option specs of every value type; `any` is the slot each of their types fits
export type OptionsSpec = Record<string, OptionSpec<any>>;
/** Parsed option values by key. */
export type OptionValues<S extends OptionsSpec> = { [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };
/** Where an option's value came from. */
export type ValueSource = 'flag' | 'file' | 'env' | 'default';

/** A configuration error: the process exits with status 2 and this message, no stack trace. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A command: its name, summary, option table and upstream flags. */
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
  /** Upstream (llm-d) flags and environment variables accepted besides the options; see compat.ts. */
  compat?: CompatTable;
}

/** Parsed options, with where each value came from and the warnings for ignored flags. */
export interface LoadedOptions<S extends OptionsSpec> {
  values: OptionValues<S>;
  sources: Record<keyof S, ValueSource>;
  configFile?: string;
  /** Upstream flags and variables given whose feature pd-router lacks: logged once each at start. */
  warnings: CompatWarning[];
  /** Upstream flags and variables that set pd-router options, with the options they drove. */
  upstreamApplied: Array<{ name: string; mapsTo: string }>;
}

export interface LoadInput {
  argv: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** How the program was invoked, for --help and messages: `pd-router epp` (default) or `pd-router-epp`. */
  program?: string;
}

/** `pd-router <name>` unless the caller says how it was invoked. */
export function programName(def: { name: string }, program?: string): string {
  return program ?? `pd-router ${def.name}`;
}

export { kebab, flagName, envName };

/** Result of `--help`: the caller prints `helpText` and exits 0. */
export class HelpRequested extends Error {
  constructor(readonly helpText: string) {
    super('help requested');
  }
}

interface NameIndex {
  byName: Map<string, string>; // flag or alias -> key
  /** Upstream names pd-router has no option for (maps-to, ignored) -> entry. */
  compat: Map<string, CompatEntry>;
  /** pflag shorthand letter (`-v`) -> upstream flag name. */
  shorthand: Map<string, string>;
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
  const compat = new Map<string, CompatEntry>();
  const shorthand = new Map<string, string>();
  for (const [name, entry] of Object.entries(def.compat?.flags ?? {})) {
    if (entry.shorthand) shorthand.set(entry.shorthand, name);
    if (entry.status === 'implemented') continue;
    if (byName.has(name))
      throw new Error(`upstream flag ${name} of ${def.name} is also a pd-router option; mark it implemented`);
    compat.set(name, entry);
  }
  return { byName, compat, shorthand };
}

function configFlagSet<S extends OptionsSpec>(def: CommandDefinition<S>) {
  return {
    file: new Set(['config', ...(def.configFileFlags ?? [])]),
    text: new Set(def.configTextFlags ?? []),
  };
}

function shown(raw: unknown): string {
  return typeof raw === 'string' ? JSON.stringify(raw) : (JSON.stringify(raw) ?? String(raw));
}

function parseValue(spec: OptionSpec<unknown>, raw: unknown, where: string): unknown {
  try {
    return spec.parse(raw);
  } catch (e) {
    if (e instanceof OptionValueError)
      throw new ConfigError(`invalid value ${shown(raw)} for ${where}: expected ${e.expected}`);
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

function editDistance(left: string, right: string): number {
  const prev = Array.from({ length: right.length + 1 }, (_, i) => i);
  for (let i = 1; i <= left.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= right.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (left[i - 1] === right[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[right.length];
}

interface ParsedArgv {
  flags: Map<string, unknown[]>; // key -> raw values in order
  /** Upstream flags without a pd-router option: name -> raw values in order. */
  compat: Map<string, unknown[]>;
  positional?: string;
  configFiles: string[];
  configTexts: string[];
  help: boolean;
}

function parseArgv<S extends OptionsSpec>(
  def: CommandDefinition<S>,
  argv: readonly string[],
  names: NameIndex,
  program?: string,
): ParsedArgv {
  const out: ParsedArgv = { flags: new Map(), compat: new Map(), configFiles: [], configTexts: [], help: false };
  const cfg = configFlagSet(def);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h' || arg === 'help') {
      out.help = true;
      continue;
    }
    // An empty argument is what Kubernetes leaves for an empty $(VAR) or envsubst variable; upstream ignores it too.
    if (arg === '') continue;
    if (!arg.startsWith('-') || arg === '-' || arg === '--') {
      if (def.positional && out.positional === undefined && arg !== '-' && arg !== '--') {
        out.positional = arg;
        continue;
      }
      const what = def.positional ? `one ${kebab(def.positional)} and flags` : 'only flags';
      throw new ConfigError(
        `unexpected argument ${JSON.stringify(arg)}: ${programName(def, program)} takes ${what} (see --help)`,
      );
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    let name = eq >= 0 ? body.slice(0, eq) : body;
    let value: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    // pflag's shorthand with the value attached: `-v4` is `-v 4`.
    if (
      !arg.startsWith('--') &&
      eq < 0 &&
      !names.byName.has(name) &&
      !names.compat.has(name) &&
      names.shorthand.has(name[0])
    ) {
      value = name.slice(1);
      name = name[0]!;
    }
    if (!names.byName.has(name) && !names.compat.has(name) && names.shorthand.has(name))
      name = names.shorthand.get(name)!;
    const takeValue = (): string => {
      if (value !== undefined) return value;
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2))
        throw new ConfigError(`flag --${name} needs a value`);
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
    const upstream = key === undefined ? names.compat.get(name) : undefined;
    if (key === undefined && upstream === undefined) {
      const hint = suggest(name, [...names.byName.keys(), ...names.compat.keys(), ...cfg.file, ...cfg.text]);
      throw new ConfigError(
        `unknown flag --${name}${hint ? ` (did you mean --${hint}?)` : ''}; run ${programName(def, program)} --help for the list`,
      );
    }
    const spec = key !== undefined ? def.options[key] : upstream!.spec!;
    // Go's pflag never lets a boolean swallow the next argument: `--flag` is true, `--flag=false` is false.
    let raw: unknown = spec.kind === 'bool' ? (value ?? 'true') : takeValue();
    if (spec.variadic && value === undefined) {
      // llm-d-inference-sim's list flags take the following arguments up to the next flag: `--served-model-name a b`.
      const items = [raw as string];
      while (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) items.push(argv[++i]);
      raw = items.join(',');
    }
    const target = key !== undefined ? out.flags : out.compat;
    const list = target.get(key ?? name) ?? [];
    list.push(raw);
    target.set(key ?? name, list);
  }
  return out;
}

let yamlParse: typeof import('yaml').parse | undefined;

/**
 * YAML (or JSON) text to a value, with the yaml package loaded on first use: most processes take flags only, and the
 * sidecar (one per decode pod) would otherwise keep its ~5 MB for nothing.
 */
export function parseYaml(text: string): unknown {
  yamlParse ??= (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse;
  return yamlParse(text);
}

function readConfigDocument(text: string, origin: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`cannot parse ${origin} as YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new ConfigError(`${origin} must be a mapping of option names to values`);
  return doc as Record<string, unknown>;
}

/** Loads and validates options. Throws HelpRequested for --help, ConfigError for bad input. */
export function loadOptions<S extends OptionsSpec>(def: CommandDefinition<S>, input: LoadInput): LoadedOptions<S> {
  const env = input.env ?? process.env;
  const names = indexNames(def);
  const argv = parseArgv(def, input.argv, names, input.program);
  if (argv.help) throw new HelpRequested(renderHelp(def, input.program));
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
      throw new ConfigError(
        `cannot read config file ${configPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    configFile = configPath;
    fileOrigin = `config file ${configPath}`;
    fileValues = readConfigDocument(text, fileOrigin);
  } else if (argv.configTexts[0] !== undefined) {
    fileOrigin = 'inline configuration';
    fileValues = readConfigDocument(argv.configTexts[0], fileOrigin);
  }
  const fileByKey = new Map<string, { name: string; raw: unknown }>();
  const compatFile = new Map<string, unknown>();
  for (const [name, raw] of Object.entries(fileValues)) {
    const key = names.byName.get(name);
    if (key === undefined && names.compat.has(name)) {
      compatFile.set(name, raw);
      continue;
    }
    if (key === undefined) {
      const hint = suggest(name, [...names.byName.keys(), ...names.compat.keys()]);
      throw new ConfigError(`unknown key "${name}" in ${fileOrigin}${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
    if (fileByKey.has(key))
      throw new ConfigError(`${fileOrigin} sets "${name}" twice (also as "${fileByKey.get(key)!.name}")`);
    fileByKey.set(key, { name, raw });
  }

  const values: Record<string, unknown> = {};
  const sources: Record<string, ValueSource> = {};
  for (const [key, spec] of Object.entries(def.options)) {
    const flag = flagName(key, spec);
    const flagRaw =
      argv.flags.get(key) ?? (def.positional === key && argv.positional !== undefined ? [argv.positional] : undefined);
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
    const envHit = envNames.find((count) => env[count] !== undefined && env[count] !== '');
    if (envHit !== undefined) {
      values[key] = parseValue(spec, env[envHit], `environment variable ${envHit}`);
      sources[key] = 'env';
      continue;
    }
    values[key] = spec.default;
    sources[key] = 'default';
  }
  let warnings: CompatWarning[] = [];
  let upstreamApplied: LoadedOptions<S>['upstreamApplied'] = [];
  if (def.compat) {
    ({ warnings, applied: upstreamApplied } = resolveCompat(
      def.compat,
      { flags: argv.compat, file: compatFile, fileOrigin, env },
      values,
      sources,
      parseValue,
    ));
  }
  const typed = values as OptionValues<S>;
  const problems = def.validate?.(typed) ?? [];
  if (problems.length > 0) throw new ConfigError(problems.join('; '));
  return { values: typed, sources: sources as Record<keyof S, ValueSource>, configFile, warnings, upstreamApplied };
}

/** Every flag name a command accepts (options, aliases, config-file flags, upstream names, shorthands), without dashes. */
export function acceptedFlags<S extends OptionsSpec>(def: CommandDefinition<S>): Set<string> {
  const names = indexNames(def);
  const cfg = configFlagSet(def);
  return new Set([
    ...names.byName.keys(),
    ...names.compat.keys(),
    ...names.shorthand.keys(),
    ...Object.keys(def.compat?.flags ?? {}),
    ...cfg.file,
    ...cfg.text,
    'help',
    'h',
  ]);
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
    // eslint-disable-next-line @typescript-eslint/restrict-template-expressions, @typescript-eslint/no-base-to-string -- option values are strings, numbers and booleans (arrays above)
    else if (spec.kind === 'duration') args.push(`${flag}=${v}ms`);
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- as above
    else args.push(`${flag}=${String(v)}`);
  }
  return args;
}

/** --help text: every flag with its type, default and environment variable, then the upstream compatibility names. */
export function renderHelp<S extends OptionsSpec>(def: CommandDefinition<S>, program?: string): string {
  const lines: string[] = [];
  lines.push(
    `Usage: ${programName(def, program)}${def.positional ? ` [${kebab(def.positional)}]` : ''} [flags]`,
    '',
    def.summary,
  );
  if (def.description) lines.push('', def.description.trim());
  lines.push('', 'Flags:');
  const rows: Array<[string, string]> = [];
  const cfgNames = ['config', ...(def.configFileFlags ?? [])];
  rows.push([
    `--${cfgNames.join(', --')} <path>`,
    `YAML/JSON file with the same keys as the flags (strict: unknown keys are errors). Precedence: flag > file > env > default. [env ${def.envPrefix}_CONFIG]`,
  ]);
  for (const t of def.configTextFlags ?? [])
    rows.push([`--${t} <yaml>`, 'Inline YAML/JSON configuration, same keys as the config file.']);
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
  pushRows(lines, rows);
  if (def.epilog) lines.push('', def.epilog.trim());
  if (def.compat) renderCompat(lines, def.compat, def.options);
  return lines.join('\n') + '\n';
}

function pushRows(lines: string[], rows: Array<[string, string]>): void {
  const width = Math.min(44, Math.max(...rows.map(([label]) => label.length)) + 2);
  for (const [l, r] of rows) {
    if (l.length + 2 > width) lines.push(`  ${l}`, `  ${' '.repeat(width)}${r}`);
    else lines.push(`  ${l.padEnd(width)}${r}`);
  }
}

/** The compatibility group: every upstream flag and variable, with what pd-router does with it. */
function renderCompat(lines: string[], table: CompatTable, options: OptionsSpec): void {
  const releases = Object.entries(table.releases).map(([k, value]) => `${k} = ${value}`);
  const tag = (compatEntry: CompatEntry) =>
    ` [${compatEntry.releases.join(', ')}${compatEntry.deprecated ? '; deprecated upstream' : ''}]`;
  const what = (compatEntry: CompatEntry) =>
    compatEntry.status === 'maps-to'
      ? `Sets ${compatEntry.mapsTo}. ${compatEntry.spec!.description}`
      : `Ignored: ${compatEntry.reason}`;
  lines.push('', 'Compatibility flags (llm-d): accepted so manifests written for upstream run unchanged.');
  lines.push(...releases.map((text) => `  ${text}`));
  const same = Object.entries(table.flags).filter(([, entry]) => entry.status === 'implemented');
  if (same.length > 0) lines.push(`  Same name and meaning as above: ${same.map(([name]) => `--${name}`).join(', ')}.`);
  lines.push('  An ignored value is logged once as a warning at start; the process keeps running.');
  const rows: Array<[string, string]> = [];
  for (const [name, e] of Object.entries(table.flags)) {
    if (e.status === 'implemented') continue;
    const left = `${e.shorthand ? `-${e.shorthand}, ` : ''}--${name}${e.spec!.placeholder ? ` ${e.spec!.placeholder}` : ''}`;
    rows.push([left, what(e) + tag(e)]);
  }
  if (rows.length > 0) pushRows(lines, rows);
  const envRows: Array<[string, string]> = [];
  for (const [name, e] of Object.entries(table.env)) {
    const native = e.option !== undefined ? options[e.option] : undefined;
    const text =
      (native ? `Sets --${flagName(e.option!, native)}.` : e.status === 'implemented' ? `Read by ${e.via}.` : what(e)) +
      tag(e);
    // Variables of one feature (OTEL_*) share a row.
    const last = envRows[envRows.length - 1];
    if (last && last[1] === text) last[0] += `, ${name}`;
    else envRows.push([name, text]);
  }
  if (envRows.length > 0) {
    lines.push('', 'Upstream environment variables:');
    pushRows(lines, envRows);
  }
}
