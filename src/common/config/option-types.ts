/**
 * Typed option definitions. Each option knows its default, its help text and how to turn a raw value (a string from the
 * command line or the environment, or a YAML/JSON value from a config file) into a typed value. Validation is done with
 * zod; a failure becomes an `expected ...` phrase that the loader turns into one error naming the flag, the bad value and
 * what is allowed.
 */
import { z } from 'zod';
import { parseDuration, formatDuration, DurationSyntaxError } from './duration.js';

export type OptionKind = 'string' | 'int' | 'number' | 'bool' | 'duration' | 'enum' | 'list' | 'bytes';

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

function make<T>(
  kind: OptionKind,
  common: Common<T>,
  placeholder: string,
  schema: z.ZodType<T>,
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
      const r = schema.safeParse(raw);
      if (!r.success) throw new OptionValueError(expected);
      return r.data;
    },
    formatDefault: () => format(common.default),
  };
}

const intFromString = z
  .string()
  .trim()
  .regex(/^[-+]?\d+$/)
  .transform(Number);
const numberFromString = z
  .string()
  .trim()
  .regex(/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/)
  .transform(Number);

function rangePhrase(what: string, min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `${what} between ${min} and ${max}`;
  if (min !== undefined) return `${what} >= ${min}`;
  if (max !== undefined) return `${what} <= ${max}`;
  return what;
}

function bounded(zodNumber: z.ZodNumber, min?: number, max?: number): z.ZodNumber {
  let out = zodNumber;
  if (min !== undefined) out = out.min(min);
  if (max !== undefined) out = out.max(max);
  return out;
}

export function int(config: Common<number> & { min?: number; max?: number }): OptionSpec<number> {
  const target = bounded(z.number().int(), config.min, config.max);
  return make('int', config, '<int>', z.union([z.number(), intFromString]).pipe(target), rangePhrase('an integer', config.min, config.max), String);
}

export function number(config: Common<number> & { min?: number; max?: number }): OptionSpec<number> {
  const target = bounded(z.number().finite(), config.min, config.max);
  return make('number', config, '<number>', z.union([z.number(), numberFromString]).pipe(target), rangePhrase('a number', config.min, config.max), String);
}

export function string(config: Common<string> & { pattern?: RegExp; patternHint?: string }): OptionSpec<string> {
  let target = z.string();
  if (config.pattern) target = target.regex(config.pattern);
  const schema = z.union([z.string(), z.number().transform(String)]).pipe(target);
  return make('string', config, '<string>', schema, config.patternHint ?? 'a string', (value) => (value === '' ? '""' : value));
}

const TRUE = new Set(['true', '1', 't', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'f', 'no', 'off']);

/** Booleans accept Go's `--flag=false` form and the usual spellings in files and env. */
export function bool(common: Common<boolean>): OptionSpec<boolean> {
  const schema = z.union([
    z.boolean(),
    z
      .string()
      .trim()
      .toLowerCase()
      .refine((text) => TRUE.has(text) || FALSE.has(text))
      .transform((text) => TRUE.has(text)),
  ]);
  return make('bool', common, '', schema, 'true or false', String);
}

/** Durations in milliseconds; accepts Go syntax ("200ms", "1.5s", "2m") or a bare number of milliseconds. */
export function duration(config: Common<number> & { min?: number; max?: number }): OptionSpec<number> {
  const schema = z.union([z.string(), z.number()]).transform((value, ctx) => {
    try {
      const ms = parseDuration(value);
      if ((config.min !== undefined && ms < config.min) || (config.max !== undefined && ms > config.max)) {
        ctx.addIssue({ code: 'custom', message: 'out of range' });
        return z.NEVER;
      }
      return ms;
    } catch (e) {
      if (e instanceof DurationSyntaxError) {
        ctx.addIssue({ code: 'custom', message: e.message });
        return z.NEVER;
      }
      throw e;
    }
  });
  let expected = 'a duration such as 200ms, 1.5s or 2m';
  if (config.min !== undefined && config.max !== undefined) expected += ` between ${formatDuration(config.min)} and ${formatDuration(config.max)}`;
  else if (config.min !== undefined) expected += ` of at least ${formatDuration(config.min)}`;
  return make('duration', config, '<duration>', schema, expected, formatDuration);
}

export function oneOf<const C extends readonly [string, ...string[]]>(choices: C, common: Common<C[number]>): OptionSpec<C[number]> {
  const schema = z
    .string()
    .trim()
    .pipe(z.enum(choices as unknown as [C[number], ...C[number][]]));
  const shownChoices = choices.map((text) => (text === '' ? '""' : text));
  return make('enum', common, `<${shownChoices.join('|')}>`, schema as z.ZodType<C[number]>, `one of ${shownChoices.join(', ')}`, (value) => (value === '' ? '""' : value));
}

/** A list: repeated flags accumulate, and a comma-separated string is split. */
export function list(config: Common<string[]> & { choices?: readonly string[]; itemHint?: string }): OptionSpec<string[]> {
  const item = config.choices ? z.enum(config.choices as [string, ...string[]]) : z.string().min(1);
  const schema = z
    .union([z.string(), z.array(z.union([z.string(), z.number().transform(String)]))])
    .transform((value) =>
      (Array.isArray(value) ? value : [value])
        .flatMap((text) => text.split(','))
        .map((text) => text.trim())
        .filter((text) => text !== ''),
    )
    .pipe(z.array(item));
  const expected = config.choices ? `a comma-separated list of ${config.choices.join(', ')}` : (config.itemHint ?? 'a comma-separated list');
  return make('list', config, '<list>', schema, expected, (items) => (items.length === 0 ? '[]' : items.join(',')));
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
  const fromString = z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?\s*[a-zA-Z]*$/)
    .transform((text, ctx) => {
      const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text)!;
      const unit = BYTE_UNITS[m[2]!.toLowerCase()];
      if (unit === undefined) {
        ctx.addIssue({ code: 'custom', message: 'unit' });
        return z.NEVER;
      }
      return Math.round(Number(m[1]) * unit);
    });
  const target = bounded(z.number().int(), config.min ?? 0);
  return make('bytes', config, '<bytes>', z.union([z.number(), fromString]).pipe(target), 'a size such as 10MiB, 512KiB or a number of bytes', formatBytes);
}

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
