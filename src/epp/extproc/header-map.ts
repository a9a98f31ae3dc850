/**
 * Request/response headers as received from Envoy: lower-cased names, values from `raw_value` (else `value`), and
 * the multi-valued ones remembered so they are never collapsed by an echo.
 */
import { headerValueText, type HeaderMap, type HeaderValueOption } from '../../common/envoy/ext-proc.js';
import { SYSTEM_OWNED_HEADERS } from '../routing-headers.js';
import { setHeader } from './messages.js';

export interface ReceivedHeaders {
  /** Last value of each header (what llm-d's map holds). */
  values: Record<string, string>;
  /** Names that appeared more than once. */
  repeated: Set<string>;
}

export function receiveHeaders(map: HeaderMap | null | undefined): ReceivedHeaders {
  const values = Object.create(null) as Record<string, string>;
  const repeated = new Set<string>();
  for (const h of map?.headers ?? []) {
    const key = h.key.toLowerCase();
    if (key in values) repeated.add(key);
    values[key] = headerValueText(h);
  }
  return { values, repeated };
}

/**
 * The echo group of llm-d's header response: every header that is not system-owned. Pseudo-headers and `host` are
 * left out (Envoy ignores or rejects mutations of them), and so are multi-valued headers: re-setting them with
 * OVERWRITE would collapse them to one value.
 */
export function echoHeaders(
  values: Record<string, string>,
  repeated: ReadonlySet<string>,
  skip: ReadonlySet<string> = new Set(),
): HeaderValueOption[] {
  const out: HeaderValueOption[] = [];
  for (const [k, v] of Object.entries(values)) {
    if (k.startsWith(':') || k === 'host' || SYSTEM_OWNED_HEADERS.has(k) || repeated.has(k) || skip.has(k)) continue;
    out.push(setHeader(k, v));
  }
  return out;
}
