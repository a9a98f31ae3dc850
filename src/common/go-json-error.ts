/**
 * Go's encoding/json syntax-error messages for a body JSON.parse rejected, so a 400 reads exactly as llm-d's EPP
 * writes it (e.g. `invalid character 'o' in literal null (expecting 'u')`, `unexpected end of JSON input`). This is a
 * validating scanner with Go's states and wording; it runs on the error path, and on bodies that may nest too deep.
 * The EPP's request parsers and the simulator (which imitates llm-d-inference-sim, also Go) both answer with it.
 */

class SyntaxFailure {
  constructor(readonly message: string) {}
}

const C0_ESCAPES: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r' };

/** Go's quoteChar: the byte as a one-character Go-quoted literal in single quotes. */
function quoteChar(count: number): string {
  if (count === 0x27) return "'\\''";
  if (count === 0x22) return "'\"'";
  if (count === 0x5c) return "'\\\\'";
  if (C0_ESCAPES[count]) return `'${C0_ESCAPES[count]}'`;
  if (count < 0x20 || count === 0x7f) return `'\\x${count.toString(16).padStart(2, '0')}'`;
  // Go converts the byte to the rune U+00XX; C1 controls, NBSP and the soft hyphen are not printable.
  if ((count >= 0x80 && count <= 0xa0) || count === 0xad) return `'\\u00${count.toString(16).padStart(2, '0')}'`;
  return `'${String.fromCharCode(count)}'`;
}

const isSpace = (count: number) => count === 0x20 || count === 0x09 || count === 0x0a || count === 0x0d;
const isDigit = (count: number) => count >= 0x30 && count <= 0x39;
const isHex = (count: number) => isDigit(count) || (count >= 0x61 && count <= 0x66) || (count >= 0x41 && count <= 0x46);

/** Go encoding/json's maxNestingDepth: a deeper value is "exceeded max depth". */
export const GO_MAX_NESTING_DEPTH = 10_000;

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;

/**
 * Go's scanner, iterative: nesting is an explicit stack, so a body nested a million levels costs memory linear in
 * its size, never call stack. Containers deeper than `maxDepth` fail as Go's do beyond its maxNestingDepth.
 */
class Scanner {
  private i = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly maxDepth: number,
  ) {}

  private fail(count: number, context: string): never {
    throw new SyntaxFailure(`invalid character ${quoteChar(count)} ${context}`);
  }

  private next(): number {
    if (this.i >= this.bytes.length) throw new SyntaxFailure('unexpected end of JSON input');
    return this.bytes[this.i++]!;
  }

  private skipSpace(): number {
    let c = this.next();
    while (isSpace(c)) c = this.next();
    return c;
  }

  run(): void {
    const open: number[] = [];
    let c = this.skipSpace();
    for (;;) {
      // A value starts at c.
      if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        if (open.length >= this.maxDepth) this.fail(c, 'exceeded max depth');
        open.push(c);
        c = this.skipSpace();
        if (c === (open.at(-1) === OPEN_OBJECT ? 0x7d : 0x5d)) {
          open.pop();
        } else {
          if (open.at(-1) === OPEN_OBJECT) c = this.objectKey(c);
          continue;
        }
      } else {
        this.scalar(c);
      }
      // The value is complete: close containers until one expects another member.
      for (;;) {
        if (open.length === 0) {
          while (this.i < this.bytes.length) {
            const t = this.bytes[this.i++]!;
            if (!isSpace(t)) this.fail(t, 'after top-level value');
          }
          return;
        }
        c = this.skipSpace();
        if (open.at(-1) === OPEN_OBJECT) {
          if (c === 0x7d) {
            open.pop();
            continue;
          }
          if (c !== 0x2c) this.fail(c, 'after object key:value pair');
          c = this.objectKey(this.skipSpace());
        } else {
          if (c === 0x5d) {
            open.pop();
            continue;
          }
          if (c !== 0x2c) this.fail(c, 'after array element');
          c = this.skipSpace();
        }
        break;
      }
    }
  }

  /** An object key starting at c and its colon; returns the first byte of the member's value. */
  private objectKey(count: number): number {
    if (count !== 0x22) this.fail(count, 'looking for beginning of object key string');
    this.string();
    count = this.skipSpace();
    if (count !== 0x3a) this.fail(count, 'after object key');
    return this.skipSpace();
  }

  private scalar(count: number): void {
    if (count === 0x22) return this.string();
    if (count === 0x2d || isDigit(count)) return this.number(count);
    if (count === 0x74) return this.literal('true');
    if (count === 0x66) return this.literal('false');
    if (count === 0x6e) return this.literal('null');
    this.fail(count, 'looking for beginning of value');
  }

  private literal(word: string): void {
    for (let k = 1; k < word.length; k++) {
      const c = this.next();
      if (c !== word.charCodeAt(k)) this.fail(c, `in literal ${word} (expecting '${word[k]}')`);
    }
  }

  private string(): void {
    for (;;) {
      const c = this.next();
      if (c === 0x22) return;
      if (c < 0x20) this.fail(c, 'in string literal');
      if (c !== 0x5c) continue;
      const e = this.next();
      if (e === 0x75) {
        for (let k = 0; k < 4; k++) {
          const h = this.next();
          if (!isHex(h)) this.fail(h, 'in \\u hexadecimal character escape');
        }
      } else if (!'bfnrt\\/"'.includes(String.fromCharCode(e))) {
        this.fail(e, 'in string escape code');
      }
    }
  }

  /** Consumes a number; the byte after it is left for the caller, as Go re-scans it in the end-of-value state. */
  private number(first: number): void {
    let c = first;
    if (c === 0x2d) {
      c = this.next();
      if (!isDigit(c)) this.fail(c, 'in numeric literal');
    }
    const peek = () => (this.i < this.bytes.length ? this.bytes[this.i]! : -1);
    if (c !== 0x30) while (isDigit(peek())) this.i++;
    if (peek() === 0x2e) {
      this.i++;
      const d = this.next();
      if (!isDigit(d)) this.fail(d, 'after decimal point in numeric literal');
      while (isDigit(peek())) this.i++;
    }
    if (peek() === 0x65 || peek() === 0x45) {
      this.i++;
      let d = this.next();
      if (d === 0x2b || d === 0x2d) d = this.next();
      if (!isDigit(d)) this.fail(d, 'in exponent of numeric literal');
      while (isDigit(peek())) this.i++;
    }
  }
}

/**
 * Go's message for a JSON syntax error in `body` (containers nested deeper than `maxDepth` included), or undefined when
 * the body is valid JSON.
 */
export function goJsonSyntaxError(body: Uint8Array, maxDepth = GO_MAX_NESTING_DEPTH): string | undefined {
  try {
    new Scanner(body, maxDepth).run();
    return undefined;
  } catch (e) {
    if (e instanceof SyntaxFailure) return e.message;
    throw e;
  }
}

/** Go's json.Unmarshal message for a valid JSON value that is not an object, decoded into map[string]any. */
export function goUnmarshalTypeError(value: unknown): string {
  const kind = Array.isArray(value) ? 'array' : typeof value === 'string' ? 'string' : typeof value === 'number' ? 'number' : 'bool';
  return `json: cannot unmarshal ${kind} into Go value of type map[string]interface {}`;
}

/**
 * Whether `body` could nest deeper than `maxDepth`: it holds more than `maxDepth` opening brackets in all (counted
 * natively with indexOf, stopping early). Most bodies have a few dozen, so the scanner rarely needs to run.
 */
export function mayNestDeeperThan(body: Buffer, maxDepth: number): boolean {
  let n = 0;
  for (const open of [OPEN_OBJECT, OPEN_ARRAY]) {
    for (let i = body.indexOf(open); i !== -1; i = body.indexOf(open, i + 1)) if (++n > maxDepth) return true;
  }
  return false;
}
