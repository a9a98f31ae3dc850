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
  const [a, b] = parts.map((part) => part.trim()) as [string, string];
  if (!INTEGER.test(a) || !INTEGER.test(b)) return undefined;
  const min = Number(a);
  const max = Number(b);
  return min <= max ? { min, max } : undefined;
}

const MAX_FALLBACK = 0.3;

export function contextRangeScore(tokens: number, range: ContextRange): number {
  if (tokens >= range.min && tokens <= range.max) {
    const width = range.max - range.min;
    if (width === 0) return 1;
    const widthScore = 1 / (1 + width / 10000);
    const positionScore = (range.max - tokens) / width;
    return MAX_FALLBACK + (0.7 * widthScore + 0.3 * positionScore) * (1 - MAX_FALLBACK);
  }
  const distance = tokens > range.max ? tokens - range.max : range.min - tokens;
  return MAX_FALLBACK / (1 + distance / 1000);
}

export const contextLengthAware = definePlugin({
  kind: ['scorer', 'filter'],
  description: 'Scores (and optionally filters) pods by the context-length range in their label.',
  params: z
    .object({
      label: z
        .string()
        .default('llm-d.ai/context-length-range')
        .refine((label) => label !== '', "'label' must be specified"),
      enableFiltering: z.boolean().default(false),
    })
    .strict(),
  create: (ctx, params): Filter & Scorer => {
    // Endpoints are immutable (a label change replaces the object), so a parsed range never goes stale.
    const ranges = new WeakMap<Endpoint, ContextRange | null>();
    const rangeOf = (endpoint: Endpoint): ContextRange | null | undefined => {
      const text = Object.hasOwn(endpoint.labels, params.label) ? endpoint.labels[params.label] : undefined;
      if (text === undefined) return undefined;
      let r = ranges.get(endpoint);
      if (r === undefined) ranges.set(endpoint, (r = parseContextRange(text) ?? null));
      return r;
    };
    return {
      type: ctx.type,
      name: ctx.name,
      filter(cycle, endpoints) {
        if (!params.enableFiltering) return [...endpoints];
        const n = cycle.request.tokenCount;
        return endpoints.filter((endpoint) => {
          const r = rangeOf(endpoint);
          return r === undefined || (r !== null && n >= r.min && n <= r.max);
        });
      },
      score(cycle, endpoints) {
        const n = cycle.request.tokenCount;
        return endpoints.map((endpoint) => {
          const r = rangeOf(endpoint);
          return r === undefined ? 0.5 : r === null ? 0 : contextRangeScore(n, r);
        });
      },
    };
  },
});
