import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/common/index.js';

describe('parseDuration (Go syntax)', () => {
  it.each([
    ['200ms', 200],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['1h30m', 5_400_000],
    ['250us', 0.25],
    ['3µs', 0.003],
    ['500ns', 0.0005],
    ['1m30.5s', 90_500],
    ['0', 0],
    ['15', 15],
  ])('%s = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 9);
  });

  it.each(['', 'abc', '10 ms', '-5s', '5x', 's', '1.2.3s'])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow(/duration/);
  });

  it('formats back to the shortest form', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(200)).toBe('200ms');
    expect(formatDuration(1500)).toBe('1.5s');
    expect(formatDuration(120_000)).toBe('2m');
    expect(formatDuration(0.25)).toBe('250us');
  });
});
