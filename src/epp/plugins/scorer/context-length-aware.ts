/**
 * `context-length-aware` (llm-d v0.7.1 and llm-d-router): routes by the request's context length (its estimated
 * prompt tokens) to pods labelled with the range they serve, `<label>: "min-max"` (e.g. `"0-2048"`). A scorer always,
 * and a filter when `enableFiltering` is set (listed in a profile it is both, as upstream).
 *
 * Score: a pod without the label 0.5 (neutral); a malformed label 0; in range
 * `0.3 + 0.7 × (0.7 × 1/(1 + width/10000) + 0.3 × (max − n)/width)` (tighter ranges and more headroom score higher;
 * width 0 → 1); out of range `0.3 / (1 + distance/1000)` (nearer ranges score higher, always below any in-range pod).
 * Filter: keeps pods without the label and pods whose range contains n; drops malformed and out-of-range ones.
 *
 * Parameters: `label` (default `llm-d.ai/context-length-range`; must not be empty), `enableFiltering` (false).
 */
import { z } from 'zod';
import type { Endpoint, Filter, Scorer } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

interface ContextRange {
  min: number;
  max: number;
}

/** Go's strconv.Atoi on a trimmed string: an optional sign and decimal digits. */
const INTEGER = /^[+-]?\d+$/;

/** `"min-max"` with min <= max, or undefined when malformed (as upstream's parseContextRange errors). */
export function parseContextRange(text: string): ContextRange | undefined {
  const parts = text.split('-');
  if (parts.length !== 2) return undefined;
  const [a, b] = parts.map((p) => p.trim()) as [string, string];
  if (!INTEGER.test(a) || !INTEGER.test(b)) return undefined;
  const min = Number(a);
  const max = Number(b);
  return min <= max ? { min, max } : undefined;
}

const MAX_FALLBACK = 0.3;

export function contextRangeScore(n: number, r: ContextRange): number {
  if (n >= r.min && n <= r.max) {
    const width = r.max - r.min;
    if (width === 0) return 1;
    const widthScore = 1 / (1 + width / 10000);
    const positionScore = (r.max - n) / width;
    return MAX_FALLBACK + (0.7 * widthScore + 0.3 * positionScore) * (1 - MAX_FALLBACK);
  }
  const distance = n > r.max ? n - r.max : r.min - n;
  return MAX_FALLBACK / (1 + distance / 1000);
}

export const contextLengthAware = definePlugin({
  kind: 'scorer',
  description: 'Scores (and optionally filters) pods by the context-length range in their label.',
  params: z
    .object({
      label: z.string().default('llm-d.ai/context-length-range').refine((l) => l !== '', "'label' must be specified"),
      enableFiltering: z.boolean().default(false),
    })
    .strict(),
  create: (ctx, p): Filter & Scorer => {
    // Endpoints are immutable (a label change replaces the object), so a parsed range never goes stale.
    const ranges = new WeakMap<Endpoint, ContextRange | null>();
    const rangeOf = (e: Endpoint): ContextRange | null | undefined => {
      const text = e.labels[p.label];
      if (text === undefined) return undefined;
      let r = ranges.get(e);
      if (r === undefined) ranges.set(e, (r = parseContextRange(text) ?? null));
      return r;
    };
    return {
      type: ctx.type,
      name: ctx.name,
      filter(c, endpoints) {
        if (!p.enableFiltering) return [...endpoints];
        const n = c.request.tokenCount;
        return endpoints.filter((e) => {
          const r = rangeOf(e);
          return r === undefined || (r !== null && n >= r.min && n <= r.max);
        });
      },
      score(c, endpoints) {
        const n = c.request.tokenCount;
        return endpoints.map((e) => {
          const r = rangeOf(e);
          return r === undefined ? 0.5 : r === null ? 0 : contextRangeScore(n, r);
        });
      },
    };
  },
});
