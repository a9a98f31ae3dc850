/** Go encoding/json syntax-error wording, which llm-d's 400 bodies carry. */
import { describe, expect, it } from 'vitest';
import { goJsonSyntaxError, goUnmarshalTypeError } from '../../src/epp/extproc/go-json-error.js';

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
});
