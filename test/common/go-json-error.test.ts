/** Go encoding/json syntax-error wording, which llm-d's 400 bodies carry. */
import { describe, expect, it } from 'vitest';
import { GO_MAX_NESTING_DEPTH, goJsonSyntaxError, goUnmarshalTypeError, mayNestDeeperThan } from '../../src/common/go-json-error.js';

describe("Go's JSON syntax errors", () => {
  const cases: Array<[string, string | undefined]> = [
    ['no json', "invalid character 'o' in literal null (expecting 'u')"],
    ['', 'unexpected end of JSON input'],
    ['   ', 'unexpected end of JSON input'],
    ['{"a":1,}', "invalid character '}' looking for beginning of object key string"],
    ['{"a" 1}', "invalid character '1' after object key"],
    ['{"a":1 "b":2}', 'invalid character \'"\' after object key:value pair'],
    ['[1 2]', "invalid character '2' after array element"],
    ['tru', 'unexpected end of JSON input'],
    ['trux', "invalid character 'x' in literal true (expecting 'e')"],
    ['{"a":01}', "invalid character '1' after object key:value pair"],
    ['{"a":1.}', "invalid character '}' after decimal point in numeric literal"],
    ['{"a":1e}', "invalid character '}' in exponent of numeric literal"],
    ['"\\q"', "invalid character 'q' in string escape code"],
    ['{"a":"\\u12G4"}', "invalid character 'G' in \\u hexadecimal character escape"],
    ['{} x', "invalid character 'x' after top-level value"],
    ['"a\nb"', "invalid character '\\n' in string literal"],
    ['-a', "invalid character 'a' in numeric literal"],
    ["'single'", "invalid character '\\'' looking for beginning of value"],
    ['@', "invalid character '@' looking for beginning of value"],
    ['{"ok": [1, 2.5e-3, true, null, "é"]}', undefined],
  ];
  for (const [input, message] of cases) {
    it(JSON.stringify(input), () => expect(goJsonSyntaxError(Buffer.from(input))).toBe(message));
  }

  it('non-object values are type errors', () => {
    expect(goUnmarshalTypeError([1])).toBe('json: cannot unmarshal array into Go value of type map[string]interface {}');
    expect(goUnmarshalTypeError('s')).toBe('json: cannot unmarshal string into Go value of type map[string]interface {}');
    expect(goUnmarshalTypeError(1)).toBe('json: cannot unmarshal number into Go value of type map[string]interface {}');
    expect(goUnmarshalTypeError(true)).toBe('json: cannot unmarshal bool into Go value of type map[string]interface {}');
  });

  it("nesting: Go's maxNestingDepth (10000) is fine, one more is 'exceeded max depth' at the bracket that opens it", () => {
    const nested = (count: number, open = '[', close = ']') => Buffer.from(open.repeat(count) + close.repeat(count));
    expect(goJsonSyntaxError(nested(GO_MAX_NESTING_DEPTH))).toBeUndefined();
    expect(goJsonSyntaxError(nested(GO_MAX_NESTING_DEPTH + 1))).toBe("invalid character '[' exceeded max depth");
    expect(goJsonSyntaxError(Buffer.from(`{"a":${'{"b":'.repeat(3)}1${'}'.repeat(3)}}`), 3)).toBe("invalid character '{' exceeded max depth");
    expect(goJsonSyntaxError(Buffer.from(`{"a":${'{"b":'.repeat(2)}1${'}'.repeat(2)}}`), 3)).toBeUndefined();
    // An error before the depth is exceeded is reported first, as Go scans in order.
    expect(goJsonSyntaxError(Buffer.from(`{"a":x${'['.repeat(20)}`), 5)).toBe("invalid character 'x' looking for beginning of value");
  });

  it('a million levels: the scanner keeps its stack on the heap (no RangeError)', () => {
    expect(goJsonSyntaxError(Buffer.from('['.repeat(1_000_000)), 2_000_000)).toBe('unexpected end of JSON input');
    expect(goJsonSyntaxError(Buffer.from(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`), 2_000_000)).toBeUndefined();
    expect(goJsonSyntaxError(Buffer.from(`${'{"a":'.repeat(500_000)}1${'}'.repeat(500_000)}`), 2_000_000)).toBeUndefined();
  });

  it('mayNestDeeperThan counts opening brackets: a body with few cannot nest deep', () => {
    expect(mayNestDeeperThan(Buffer.from('{"messages":[{"a":1},{"b":[2]}]}'), 5)).toBe(false);
    expect(mayNestDeeperThan(Buffer.from('{"messages":[{"a":1},{"b":[2]},{}]}'), 5)).toBe(true);
  });
});
