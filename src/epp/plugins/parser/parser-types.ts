/**
 * Request parsers (`requestHandler.parsers`): each claims path suffixes; the longest claimed suffix matching the
 * request path wins, otherwise the first fallback parser in the list handles it (llm-d resolves parsers the same way).
 * Failures are 400s with llm-d's messages.
 */
import type { ApiType, Prompt } from '../../../common/openai/index.js';
import { InferenceError } from '../../framework/errors.js';
import type { Plugin } from '../../framework/types.js';
import { goJsonSyntaxError, goUnmarshalTypeError } from '../../extproc/go-json-error.js';

export interface ParsedBody {
  api: ApiType | undefined;
  /** The body as JSON (undefined for passthrough). */
  json: Record<string, unknown> | undefined;
  prompts: Prompt[];
  stream: boolean;
  cacheSalt: string;
  /** Whether the request must name a model (false for passthrough). */
  requiresModel: boolean;
}

export interface RequestParser extends Plugin {
  /** Path suffixes this parser claims. */
  readonly pathSuffixes: readonly string[];
  /** Handles paths nobody claims. */
  readonly fallback: boolean;
  /** Whether response bodies are OpenAI-shaped (usage parsing). */
  readonly parsesUsage: boolean;
  parse(body: Buffer, path: string): ParsedBody;
}

export const isRequestParser = (p: Plugin): p is RequestParser => typeof (p as RequestParser).parse === 'function' && Array.isArray((p as RequestParser).pathSuffixes);

export function badRequest(message: string): InferenceError {
  return new InferenceError('BadRequest', message);
}

/** JSON.parse into an object, with Go's error messages (the wording llm-d's 400s carry). */
export function parseJsonObject(body: Buffer): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (e) {
    const goMessage = goJsonSyntaxError(body);
    throw badRequest(`error unmarshaling request bodyMap: ${goMessage ?? (e as Error).message}`);
  }
  if (value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw badRequest(`error unmarshaling request bodyMap: ${goUnmarshalTypeError(value)}`);
  return value as Record<string, unknown>;
}

export function stripQuery(path: string): string {
  const q = path.indexOf('?');
  const p = q >= 0 ? path.slice(0, q) : path;
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/** The parser for a path: longest claimed suffix, else the first fallback. */
export function resolveParser(parsers: readonly RequestParser[], path: string): RequestParser | undefined {
  const p = stripQuery(path);
  let best: RequestParser | undefined;
  let bestLen = -1;
  for (const parser of parsers) {
    for (const suffix of parser.pathSuffixes) {
      if (p.endsWith(suffix) && suffix.length > bestLen) {
        best = parser;
        bestLen = suffix.length;
      }
    }
  }
  return best ?? parsers.find((x) => x.fallback);
}
