/**
 * Zod types for the value syntaxes upstream's config structs decode with Go's JSON rules: `metav1.Duration` (a Go
 * duration string, `"0"` allowed, no bare numbers), `resource.Quantity` (an integer or a Kubernetes quantity string
 * such as `1Gi` or `500M`), and plugin references (non-empty names).
 */
import { z } from 'zod';
import { parseDuration } from '../../common/index.js';

/** A Go duration string (`200ms`, `1m30s`, `"0"`), in milliseconds. */
export const goDuration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const s = String(value);
  const t = s.trim();
  if (t !== '0' && /^[+]?[\d.]+$/.test(t)) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is missing a unit (ns, us, ms, s, m, h), e.g. 200ms` });
    return z.NEVER;
  }
  try {
    return parseDuration(t === '0' ? '0s' : t);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const SUFFIX: Readonly<Record<string, number>> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Parses a Kubernetes quantity (`128974848`, `129e6`, `129M`, `123Mi`) to a number; undefined when malformed. */
export function parseQuantity(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) ? input : undefined;
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/.exec(input.trim());
  if (!m) return undefined;
  const base = Number(m[1]);
  if (m[2]) return Number(`${m[1]}${m[2]}`);
  return base * SUFFIX[m[3] ?? '']!;
}

/**
 * A non-negative `resource.Quantity`, as an integer (upstream takes `Quantity.Value()`, which rounds up). Negative
 * values are errors, as in llm-d's `resolveQuantity`.
 */
export const nonNegativeQuantity = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const n = parseQuantity(value);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a quantity (e.g. 1000, 64Mi, 1G)` });
    return z.NEVER;
  }
  if (n < 0) {
    ctx.addIssue({ code: 'custom', message: `must be non-negative, got ${value}` });
    return z.NEVER;
  }
  return Math.ceil(n);
});

export const pluginName = z.string().min(1, 'must name a plugin');

/** `{pluginRef: <name>}`. */
export const pluginRefObject = z.object({ pluginRef: pluginName }).strict();
