/**
 * Typed option definitions. Each option knows its default, its help text and how to turn a raw value (a string from the
 * command line or the environment, or a YAML/JSON value from a config file) into a typed value. A refused value becomes
 * an `expected ...` phrase that the loader turns into one error naming the flag, the bad value and what is allowed.
 *
 * Plain checks rather than a schema library: every component loads this module, and the sidecar (one per decode pod)
 * would otherwise carry a validation library's ~10 MB of heap and code for the one parse it does at start.
 */
import { parseDuration, formatDuration, DurationSyntaxError } from './duration.js';

/** The kinds of option values. */
export type OptionKind = 'string' | 'int' | 'number' | 'bool' | 'duration' | 'enum' | 'list' | 'bytes';

/** One option: its kind, default, description and validation. */
export interface OptionSpec<T> {
  readonly kind: OptionKind;
  readonly default: T;
  readonly description: string;
  /** Flag name when it is not the kebab-case form of the property name. */
  readonly flag?: string;
  /** Other accepted names (deprecated upstream flags, legacy config keys). */
  readonly aliases?: readonly string[];
  /** Environment variables read for this option, in order, besides the component's prefixed name. */
  readonly env?: readonly string[];
  /** Kept out of --help (internal or deprecated). */
  readonly hidden?: boolean;
  /** A list flag that also takes the following arguments up to the next flag (`--served-model-name a b`). */
  readonly variadic?: boolean;
  /** Type placeholder shown in --help, e.g. `<int>`. */
  readonly placeholder: string;
  /** Turns a raw value into T, or throws OptionValueError with what was expected. */
  parse(raw: unknown): T;
  /** Default as shown in --help. */
  formatDefault(): string;
}

/** An option value that its spec refuses; the message names the option. */
export class OptionValueError extends Error {
  constructor(readonly expected: string) {
    super(expected);
  }
}

interface Common<T> {
  default: T;
  description: string;
  flag?: string;
  aliases?: readonly string[];
  env?: readonly string[];
  hidden?: boolean;
  variadic?: boolean;
}

/** What a check returns for a value it refuses. */
const REFUSED: unique symbol = Symbol('refused');
type Check<T> = (raw: unknown) => T | typeof REFUSED;

function make<T>(
  kind: OptionKind,
  common: Common<T>,
  placeholder: string,
  check: Check<T>,
  expected: string,
  format: (value: T) => string,
): OptionSpec<T> {
  return {
    kind,
    default: common.default,
    description: common.description,
    flag: common.flag,
    aliases: common.aliases,
    env: common.env,
    hidden: common.hidden,
    variadic: common.variadic,
    placeholder,
    parse(raw: unknown): T {
      const value = check(raw);
      if (value === REFUSED) throw new OptionValueError(expected);
      return value;
    },
    formatDefault: () => format(common.default),
  };
}

/** A finite number (NaN and the infinities are refused, as a YAML `.nan` or `.inf` would be). */
function isFiniteNumber(raw: unknown): raw is number {
  return typeof raw === 'number' && Number.isFinite(raw);
}

const INT_TEXT = /^[-+]?\d+$/;
const NUMBER_TEXT = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

/** A number from a number or its decimal text (trimmed), or REFUSED. */
function numberFrom(raw: unknown, text: RegExp): number | typeof REFUSED {
  if (typeof raw === 'number') return raw;
  if (typeof raw !== 'string') return REFUSED;
  const trimmed = raw.trim();
  return text.test(trimmed) ? Number(trimmed) : REFUSED;
}

function inRange(value: number, min?: number, max?: number): boolean {
  return (min === undefined || value >= min) && (max === undefined || value <= max);
}

function rangePhrase(what: string, min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `${what} between ${min} and ${max}`;
  if (min !== undefined) return `${what} >= ${min}`;
  if (max !== undefined) return `${what} <= ${max}`;
  return what;
}

export function int(config: Common<number> & { min?: number; max?: number }): OptionSpec<number> {
  const check: Check<number> = (raw) => {
    const value = numberFrom(raw, INT_TEXT);
    return value !== REFUSED && Number.isSafeInteger(value) && inRange(value, config.min, config.max) ? value : REFUSED;
  };
  return make('int', config, '<int>', check, rangePhrase('an integer', config.min, config.max), String);
}

export function number(config: Common<number> & { min?: number; max?: number }): OptionSpec<number> {
  const check: Check<number> = (raw) => {
    const value = numberFrom(raw, NUMBER_TEXT);
    return value !== REFUSED && Number.isFinite(value) && inRange(value, config.min, config.max) ? value : REFUSED;
  };
  return make('number', config, '<number>', check, rangePhrase('a number', config.min, config.max), String);
}

export function string(config: Common<string> & { pattern?: RegExp; patternHint?: string }): OptionSpec<string> {
  const pattern = config.pattern;
  const check: Check<string> = (raw) => {
    const value = typeof raw === 'string' ? raw : isFiniteNumber(raw) ? String(raw) : undefined;
    if (value === undefined) return REFUSED;
    if (pattern) {
      pattern.lastIndex = 0;
      if (!pattern.test(value)) return REFUSED;
    }
    return value;
  };
  return make('string', config, '<string>', check, config.patternHint ?? 'a string', (value) =>
    value === '' ? '""' : value,
  );
}

const TRUE = new Set(['true', '1', 't', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'f', 'no', 'off']);

/** Booleans accept Go's `--flag=false` form and the usual spellings in files and env. */
export function bool(common: Common<boolean>): OptionSpec<boolean> {
  const check: Check<boolean> = (raw) => {
    if (typeof raw === 'boolean') return raw;
    if (typeof raw !== 'string') return REFUSED;
    const text = raw.trim().toLowerCase();
    return TRUE.has(text) ? true : FALSE.has(text) ? false : REFUSED;
  };
  return make('bool', common, '', check, 'true or false', String);
}

/** Durations in milliseconds; accepts Go syntax ("200ms", "1.5s", "2m") or a bare number of milliseconds. */
export function duration(config: Common<number> & { min?: number; max?: number }): OptionSpec<number> {
  const check: Check<number> = (raw) => {
    if (typeof raw !== 'string' && !isFiniteNumber(raw)) return REFUSED;
    let ms: number;
    try {
      ms = parseDuration(raw);
    } catch (e) {
      if (e instanceof DurationSyntaxError) return REFUSED;
      throw e;
    }
    return inRange(ms, config.min, config.max) ? ms : REFUSED;
  };
  let expected = 'a duration such as 200ms, 1.5s or 2m';
  if (config.min !== undefined && config.max !== undefined)
    expected += ` between ${formatDuration(config.min)} and ${formatDuration(config.max)}`;
  else if (config.min !== undefined) expected += ` of at least ${formatDuration(config.min)}`;
  return make('duration', config, '<duration>', check, expected, formatDuration);
}

export function oneOf<const C extends readonly [string, ...string[]]>(
  choices: C,
  common: Common<C[number]>,
): OptionSpec<C[number]> {
  const allowed: ReadonlySet<string> = new Set(choices);
  const check: Check<C[number]> = (raw) => {
    if (typeof raw !== 'string') return REFUSED;
    const text = raw.trim();
    return allowed.has(text) ? text : REFUSED;
  };
  const shownChoices = choices.map((text) => (text === '' ? '""' : text));
  return make('enum', common, `<${shownChoices.join('|')}>`, check, `one of ${shownChoices.join(', ')}`, (value) =>
    value === '' ? '""' : value,
  );
}

/** A list: repeated flags accumulate, and a comma-separated string is split. */
export function list(
  config: Common<string[]> & { choices?: readonly string[]; itemHint?: string },
): OptionSpec<string[]> {
  const allowed: ReadonlySet<string> | undefined = config.choices ? new Set(config.choices) : undefined;
  const check: Check<string[]> = (raw) => {
    let values: string[];
    if (typeof raw === 'string') values = [raw];
    else if (Array.isArray(raw)) {
      values = [];
      for (const item of raw as unknown[]) {
        if (typeof item === 'string') values.push(item);
        else if (isFiniteNumber(item)) values.push(String(item));
        else return REFUSED;
      }
    } else return REFUSED;
    const items = values
      .flatMap((text) => text.split(','))
      .map((text) => text.trim())
      .filter((text) => text !== '');
    return allowed && items.some((item) => !allowed.has(item)) ? REFUSED : items;
  };
  const expected = config.choices
    ? `a comma-separated list of ${config.choices.join(', ')}`
    : (config.itemHint ?? 'a comma-separated list');
  return make('list', config, '<list>', check, expected, (items) => (items.length === 0 ? '[]' : items.join(',')));
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  ki: 1024,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Byte sizes: "10MiB", "512KiB", "1MB", or a plain number of bytes. */
export function bytes(config: Common<number> & { min?: number }): OptionSpec<number> {
  const check: Check<number> = (raw) => {
    let value: number;
    if (typeof raw === 'number') value = raw;
    else if (typeof raw === 'string') {
      const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw.trim());
      const unit = m ? BYTE_UNITS[m[2].toLowerCase()] : undefined;
      if (m === null || unit === undefined) return REFUSED;
      value = Math.round(Number(m[1]) * unit);
    } else return REFUSED;
    return Number.isSafeInteger(value) && value >= (config.min ?? 0) ? value : REFUSED;
  };
  return make('bytes', config, '<bytes>', check, 'a size such as 10MiB, 512KiB or a number of bytes', formatBytes);
}

/** A byte count for --help: `64KiB`, `1MiB`. */
export function formatBytes(count: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (count >= size && count % size === 0) return `${count / size}${unit}`;
  }
  return `${count}`;
}
