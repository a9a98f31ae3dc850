/**
 * Request parsers (`requestHandler.parsers`): each claims path suffixes; the longest claimed suffix matching the
 * request path wins, otherwise the first fallback parser in the list handles it (llm-d resolves parsers the same way).
 * Failures are 400s with llm-d's messages.
 */
import type { ApiType, Prompt } from '../../../common/openai/index.js';
import { InferenceError } from '../../framework/errors.js';
import type { Plugin } from '../../framework/types.js';
import { goJsonSyntaxError, goUnmarshalTypeError, mayNestDeeperThan } from '../../../common/go-json-error.js';

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

export const isRequestParser = (plugin: Plugin): plugin is RequestParser => typeof (plugin as RequestParser).parse === 'function' && Array.isArray((plugin as RequestParser).pathSuffixes);

export function badRequest(message: string): InferenceError {
  return new InferenceError('BadRequest', message);
}

/**
 * Deepest nesting of objects and arrays a request body may have. Go's decoder (llm-d) allows 10000, but the EPP's
 * later work on the body (JSON.stringify of a rewritten body or of tools, prompt rendering) recurses, and a body
 * nested some thousands of levels overflowed the stack: the stream failed with INTERNAL and a fail-open proxy skipped
 * the EPP. vLLM's Python decoder refuses beyond about 1000 levels anyway.
 */
export const MAX_REQUEST_JSON_DEPTH = 1_000;

/**
 * JSON.parse into an object, with Go's error messages (the wording llm-d's 400s carry). A body nested deeper than
 * {@link MAX_REQUEST_JSON_DEPTH} is a 400 `invalid character '[' exceeded max depth`, Go's message for its own limit.
 */
export function parseJsonObject(body: Buffer): Record<string, unknown> | null {
  if (mayNestDeeperThan(body, MAX_REQUEST_JSON_DEPTH)) {
    const goMessage = goJsonSyntaxError(body, MAX_REQUEST_JSON_DEPTH);
    if (goMessage) throw badRequest(`error unmarshaling request bodyMap: ${goMessage}`);
  }
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
  return best ?? parsers.find((parser) => parser.fallback);
}
