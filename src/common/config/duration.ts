/**
 * Go-style durations ("200ms", "1.5s", "2m", "1h30m", "3us"), the syntax llm-d's sidecar, EPP and simulator flags use.
 * Values are carried as milliseconds (a float, so "250us" is 0.25).
 *
 * A bare number is accepted and read as milliseconds: older llm-d-inference-sim releases took latency flags as integer
 * milliseconds, and config files written for them still exist.
 */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

export class DurationSyntaxError extends Error {}

/** Parses a Go-style duration into milliseconds. Throws DurationSyntaxError on anything else. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new DurationSyntaxError(`duration must be a non-negative number, got ${input}`);
    return input;
  }
  const text = input.trim();
  if (text === '') throw new DurationSyntaxError('empty duration');
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  let rest = text;
  if (rest.startsWith('-')) throw new DurationSyntaxError(`duration must not be negative: "${input}"`);
  if (rest.startsWith('+')) rest = rest.slice(1);
  let total = 0;
  PART.lastIndex = 0;
  let pos = 0;
  while (pos < rest.length) {
    PART.lastIndex = pos;
    const m = PART.exec(rest);
    if (!m) throw new DurationSyntaxError(`invalid duration "${input}": expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 200ms or 1.5s`);
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = PART.lastIndex;
  }
  return total;
}

/** Formats milliseconds back into the shortest readable Go-style string, for --help and logs. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${trim(ms / 1000)}s`;
  if (ms >= 1) return `${trim(ms)}ms`;
  if (ms >= 1e-3) return `${trim(ms * 1000)}us`;
  return `${trim(ms * 1e6)}ns`;
}

function trim(count: number): string {
  return String(Number(count.toFixed(6)));
}
