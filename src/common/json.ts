/**
 * JSON as every component handles it once parsed: a body, an answer or a config value is `unknown` until
 * {@link isObject} says it is an object. One definition, so "object" means the same thing everywhere (not null, not an
 * array).
 */

/** A parsed JSON object: its values are unknown until checked. */
export type JsonObject = Record<string, unknown>;

/** Whether a parsed JSON value is an object (not null, not an array). */
export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
