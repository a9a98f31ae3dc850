/** Command-line arguments of the benchmark scripts, which take `--name value` pairs and nothing else. */

/**
 * Checks the command line before a script starts any work: `--help` (or `-h`) prints `usage` and exits 0; an argument
 * that is not one of `--<known> <value>` pairs is an error (exit 2), so a mistyped option never runs a long benchmark
 * with its defaults, and writes over the recorded results.
 */
export function checkArgs(usage: string, known: readonly string[], argv = process.argv.slice(2)): void {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage.trim()}\n`);
    process.exit(0);
  }
  const problem = argsProblem(known, argv);
  if (problem) {
    process.stderr.write(`${problem}\n${usage.trim()}\n`);
    process.exit(2);
  }
}

/** What is wrong with `argv` as `--<known> <value>` pairs, or undefined. */
export function argsProblem(known: readonly string[], argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    if (!name.startsWith('--') || !known.includes(name.slice(2))) return `unknown argument ${JSON.stringify(name)}`;
    if (i + 1 >= argv.length) return `${name} needs a value`;
  }
  return undefined;
}

/** The value after `--name` on the command line, else `fallback` (also when `--name` is the last argument). */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

/**
 * A comma-separated list of positive numbers (`--name 1,64,256`); `none` is the empty list when `allowNone`. Anything
 * else exits 2 with the reason: a zero or negative rate or level would otherwise run a loop that never ends.
 */
export function positiveNumbers(name: string, fallback: string, allowNone = false): number[] {
  const text = arg(name, fallback);
  if (allowNone && text === 'none') return [];
  const values = text.split(',').map((part) => Number(part.trim()));
  if (values.length === 0 || values.some((value) => !Number.isFinite(value) || value <= 0)) {
    process.stderr.write(
      `--${name} ${JSON.stringify(text)}: expected positive numbers separated by commas${allowNone ? ' or none' : ''}\n`,
    );
    process.exit(2);
  }
  return values;
}
