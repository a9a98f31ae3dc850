/**
 * JSON the sidecar parses (request bodies, prefill answers), bounded in nesting depth. V8's JSON.parse takes any depth,
 * but JSON.stringify, which builds every leg's body, recurses and overflows the stack at about 4,100 levels: a body
 * nested that deep was a 500 "Maximum call stack size exceeded". --max-json-depth refuses it first, with a message
 * that names the limit.
 */
import { isObject, type JsonObject } from '../common/json.js';

/** Whether some object or array in `value` lies deeper than `max` levels (the outermost one is level 1). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  // Iterative, so the check itself cannot overflow the stack; only containers are visited.
  const stack: unknown[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop()!;
    const depth = depths.pop()!;
    if (depth > max) return true;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (x !== null && typeof x === 'object') {
          stack.push(x);
          depths.push(depth + 1);
        }
      }
    } else {
      for (const k in v as JsonObject) {
        const x = (v as JsonObject)[k];
        if (x !== null && typeof x === 'object') {
          stack.push(x);
          depths.push(depth + 1);
        }
      }
    }
  }
  return false;
}

export function depthMessage(max: number): string {
  return `nested deeper than ${max} levels (--max-json-depth)`;
}

/** Parses a request body that must be a JSON object; `error` says why it is not one. */
export function parseJsonObject(raw: Buffer, maxDepth: number): { value: JsonObject } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    return { error: `invalid JSON: ${(err as Error).message}` };
  }
  if (!isObject(value)) return { error: 'invalid JSON: the request body must be a JSON object' };
  if (nestedDeeperThan(value, maxDepth)) return { error: `invalid JSON: ${depthMessage(maxDepth)}` };
  return { value };
}
