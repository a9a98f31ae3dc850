/**
 * Command-line options of the benchmark scripts: `--name value` or `--name=value` pairs, a boolean option may stand
 * alone. bench/peers declares its options in a table (name, default, help); the older scripts read theirs with `arg()`
 * and are checked with `checkArgs()` first. Either way `--help` prints the usage and exits 0, and an unknown option, a
 * missing value or a value out of range is refused (exit 2) before any work: a mistyped option never runs a long
 * benchmark with its defaults over the recorded results.
 */

export interface Option {
  name: string;
  def: string;
  /** The default under bench/peers' --smoke. */
  smoke?: string;
  help: string;
}

/**
 * The options given on `argv`, each else its default (its smoke default when `--smoke true` is given and the table
 * has one). `--help` prints `usage` and exits 0; anything else that is not a known option throws.
 */
export function parseOptions(
  argv: readonly string[],
  options: readonly Option[],
  usage: string,
): Record<string, string> {
  const given: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(usage + '\n');
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    const opt = m && options.find((option) => option.name === m[1]);
    if (!m || !opt) throw new Error(`unknown argument ${JSON.stringify(a)}\n\n${usage}`);
    let v = m[2] as string | undefined;
    if (v === undefined) {
      const next = argv[i + 1] as string | undefined;
      // Boolean options may stand alone (--smoke, --cpu-prof).
      if ((opt.def === 'true' || opt.def === 'false') && (next === undefined || next.startsWith('--'))) v = 'true';
      else if (next === undefined) throw new Error(`--${opt.name} needs a value`);
      else v = argv[++i]!;
    }
    given[opt.name] = v;
  }
  const smoke = given.smoke === 'true';
  const out: Record<string, string> = {};
  for (const o of options) out[o.name] = given[o.name] ?? (smoke && o.smoke !== undefined ? o.smoke : o.def);
  return out;
}

/** A comma-separated list of numbers, each from `min` to `max`; throws otherwise. */
export function numbers(name: string, value: string, min: number, max: number): number[] {
  const list = value.split(',').filter(Boolean).map(Number);
  if (list.length === 0 || list.some((num) => !Number.isFinite(num) || num < min || num > max))
    throw new Error(`--${name} must list numbers from ${min} to ${max}, not ${JSON.stringify(value)}`);
  return list;
}

/** One number from `min` to `max`; throws otherwise. */
export function number(name: string, value: string, min: number, max: number): number {
  const [n, ...rest] = numbers(name, value, min, max);
  if (rest.length > 0) throw new Error(`--${name} takes one number`);
  return n;
}

export function bool(name: string, value: string): boolean {
  if (value !== 'true' && value !== 'false')
    throw new Error(`--${name} must be true or false, not ${JSON.stringify(value)}`);
  return value === 'true';
}

/** Runs a check of the command line; its error is printed and the process exits 2. */
export function orExit<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
}

/**
 * For the scripts that read their options with `arg()`: `--help` prints `usage` and exits 0; an argument that is not
 * one of the `known` options with a value exits 2 with the reason and the usage.
 */
export function checkArgs(usage: string, known: readonly string[], argv = process.argv.slice(2)): void {
  const options = known.map((name) => ({ name, def: '', help: '' }));
  orExit(() => parseOptions(argv, options, usage.trim()));
}

/** The value of `--name value` or `--name=value` on the command line, else `fallback` (also when it is empty). */
export function arg(name: string, fallback: string): string {
  const argv = process.argv;
  const i = argv.indexOf(`--${name}`);
  if (i >= 0) return argv[i + 1] || fallback;
  const joined = argv.find((word) => word.startsWith(`--${name}=`));
  return joined?.slice(name.length + 3) || fallback;
}
