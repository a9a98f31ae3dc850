/**
 * ext_proc header mutations, applied as Envoy's ext_proc filter applies them with its default HeaderMutationRules
 * (source/extensions/filters/http/ext_proc/mutation_utils.cc and filters/common/mutation_rules/mutation_rules.cc):
 *
 * - A name or value with characters HTTP does not allow (CR, LF, NUL, a name outside RFC 9110's token characters) is
 *   an error: Envoy drops the stream and answers the client 500, whatever failure_mode_allow says.
 * - Removals come first. `host`, every pseudo-header (`:path`, `:method`, ...) and `x-envoy-*` headers are never
 *   removed (the removal is ignored and counted).
 * - A set header replaces the header's values unless its (deprecated) `append` is true, which adds a value. Envoy's
 *   ext_proc reads only `append` and ignores `append_action`, so an EPP that leaves both unset (as llm-d's EPPs do for
 *   Content-Length and the echoed request headers) replaces the header rather than doubling it.
 * - Ignored (counted): the routing headers `host`, `:authority`, `:method` and `:scheme` (Envoy allows them only with
 *   allow_all_routing), `x-envoy-*` headers, a second value for a pseudo-header, and a `:status` that is not a number
 *   of at least 200.
 * - Applied: `:path` (the path the request goes upstream with) and, on a response, `:status` (its status code).
 *   Pseudo-headers live in the same map under their `:` names; the caller never sends them as headers.
 *
 * llm-d-router's EPP echoes every request header it received, pseudo-headers included: `:method`, `:authority` and
 * `:scheme` are ignored and the echoed `:path` is the path the request already had.
 */
import { headerValueText, type HeaderMutation } from '../common/envoy/ext-proc.js';

/** Headers as a multi-map of lower-case names; pseudo-headers under their `:` names. */
export type HeaderMultiMap = Map<string, string[]>;

/** What Envoy does not let an ext_proc server change by default. */
const ROUTING_HEADERS = new Set(['host', ':authority', ':method', ':scheme']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const INVALID_VALUE = /[\0\r\n]/;

/** An ext_proc answer whose header mutation Envoy refuses as a whole (the client gets 500). */
export class InvalidHeaderMutation extends Error {}

function validName(name: string): boolean {
  return TOKEN.test(name.startsWith(':') ? name.slice(1) : name);
}

/** Envoy's Checker::isAllowed for the default rules (the operation: set, append a second value, or remove). */
function allowed(op: 'set' | 'append' | 'remove', name: string): boolean {
  if (op === 'remove' && (name.startsWith(':') || name === 'host')) return false;
  if (ROUTING_HEADERS.has(name)) return false;
  if (name.startsWith(':') && op === 'append') return false;
  return !name.startsWith('x-envoy-');
}

/** Envoy's Checker::isValidValue: `:status` must be a status code of at least 200. */
function validValue(name: string, value: string): boolean {
  if (name !== ':status') return true;
  return /^\d+$/.test(value) && Number(value) >= 200 && Number(value) <= 999;
}

/**
 * Applies a mutation to `h` in place; returns how many of its changes were ignored by the rules. Throws
 * InvalidHeaderMutation (before changing anything) when a name or value has characters HTTP does not allow.
 */
export function applyMutation(h: HeaderMultiMap, m: HeaderMutation | undefined | null): number {
  if (!m) return 0;
  const removals = (m.remove_headers ?? []).map((n) => n.toLowerCase());
  const sets = (m.set_headers ?? []).filter((o) => o?.header).map((o) => ({ name: o.header.key.toLowerCase(), value: headerValueText(o.header), append: o.append?.value === true }));
  for (const name of removals) if (!validName(name)) throw new InvalidHeaderMutation(`header_mutation_remove_contains_invalid_character: ${JSON.stringify(name)}`);
  for (const s of sets) {
    if (!validName(s.name) || INVALID_VALUE.test(s.value)) throw new InvalidHeaderMutation(`header_mutation_set_contains_invalid_character: ${JSON.stringify(s.name)}`);
  }
  let rejected = 0;
  for (const name of removals) {
    if (allowed('remove', name)) h.delete(name);
    else rejected++;
  }
  for (const s of sets) {
    const existing = h.get(s.name);
    const op = s.append && existing && existing.length > 0 ? 'append' : 'set';
    if (!allowed(op, s.name) || !validValue(s.name, s.value)) {
      rejected++;
      continue;
    }
    h.set(s.name, op === 'append' ? [...existing!, s.value] : [s.value]);
  }
  return rejected;
}
