/** Command-line arguments of the benchmark scripts, which take `--name value` pairs and nothing else. */

/** The value after `--name` on the command line, else `fallback` (also when `--name` is the last argument). */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
