/** Turns zod issues into one readable sentence naming the plugin and the parameter at fault. */
import type { z } from 'zod';

export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((i) => {
      const path = i.path.map(String).join('.');
      if (i.code === 'unrecognized_keys') {
        const keys = (i as { keys: string[] }).keys.map((k) => `"${path ? `${path}.` : ''}${k}"`).join(', ');
        return `unknown parameter ${keys}`;
      }
      if (i.code === 'invalid_union') {
        // Strict alternative forms (disagg handler's nested and legacy parameters): report the branch that
        // recognised the keys, i.e. the one with the fewest unknown-key complaints.
        const branches = (i as { errors?: z.core.$ZodIssue[][] }).errors ?? [];
        const unknownCount = (items: z.core.$ZodIssue[]) => items.filter((issue) => issue.code === 'unrecognized_keys').length;
        const best = [...branches].sort((left, right) => unknownCount(left) - unknownCount(right))[0];
        if (best?.length) return describeIssues(best);
      }
      return path ? `parameter "${path}": ${i.message}` : i.message;
    })
    .join('; ');
}

/** Top-level keys a (possibly wrapped) zod object schema knows, or undefined when it cannot tell. */
export function knownKeys(schema: unknown): Set<string> | undefined {
  let s = schema as { shape?: Record<string, unknown>; def?: Record<string, unknown> } | undefined;
  for (let depth = 0; s && depth < 8; depth++) {
    if (s.shape && typeof s.shape === 'object') return new Set(Object.keys(s.shape));
    const def = s.def as { in?: unknown; innerType?: unknown; schema?: unknown } | undefined;
    s = (def?.in ?? def?.innerType ?? def?.schema) as typeof s;
  }
  return undefined;
}
