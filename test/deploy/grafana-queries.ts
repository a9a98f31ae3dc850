/** Reading Grafana dashboards' PromQL: every query (rows included), the metric names in it, its `or` alternatives. */
import { readFileSync } from 'node:fs';

export interface DashboardQuery {
  panel: string;
  refId: string;
  expr: string;
}

interface Panel {
  title?: string;
  type?: string;
  panels?: Panel[];
  targets?: Array<{ expr?: string; refId?: string }>;
}

export function dashboardQueries(file: string): DashboardQuery[] {
  const d = JSON.parse(readFileSync(file, 'utf8')) as { panels: Panel[] };
  const out: DashboardQuery[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      if (p.panels) walk(p.panels); // a collapsed row keeps its panels inside
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '', refId: t.refId ?? '', expr: t.expr });
    }
  };
  walk(d.panels);
  return out;
}

const FUNCTIONS_AND_KEYWORDS = new Set([
  'sum', 'avg', 'max', 'min', 'count', 'topk', 'bottomk', 'rate', 'irate', 'increase', 'deriv', 'histogram_quantile', 'max_over_time', 'min_over_time',
  'avg_over_time', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'le',
]);

/** Metric names a PromQL expression reads (identifiers that are not functions, keywords, labels or variables). */
export function metricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  // Label lists of by/without/on/ignoring, and label matchers in braces, are not metric names.
  const withoutLabels = withoutStrings.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1').replace(/\{[^}]*\}/g, '');
  const names = new Set<string>();
  for (const m of withoutLabels.matchAll(/(?<![\w$:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])/g)) {
    const id = m[1]!;
    if (FUNCTIONS_AND_KEYWORDS.has(id)) continue;
    if (/^\d/.test(id)) continue;
    names.add(id.replace(/_(bucket|sum|count)$/, ''));
  }
  return [...names];
}

/** Splits `s` where `at(s, i)` says so, outside brackets; `width` characters are dropped at each split. */
function splitTop(text: string, at: (settings: string, i: number) => boolean, width: number): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0 && at(text, i)) {
      parts.push(text.slice(start, i));
      start = i + width;
    }
  }
  parts.push(text.slice(start));
  return parts.map((path) => path.trim());
}

const isOr = (text: string, i: number) => i > 0 && text.startsWith('or', i) && /\s/.test(text[i - 1]!) && /\s/.test(text[i + 2] ?? '');

/**
 * The variants of an expression with every `or` resolved to one of its sides (at any depth): the queries that must
 * each be answerable when only one side's metrics exist. An expression without `or` is its own only variant.
 */
export function orVariants(expr: string): string[] {
  const args = splitTop(expr, (text, i) => text[i] === ',', 1);
  if (args.length > 1) return args.map(orVariants).reduce<string[]>((acc, vs) => acc.flatMap((left) => vs.map((value) => `${left}, ${value}`)), ['']).map((value) => value.slice(2));
  const sides = splitTop(expr, isOr, 2);
  if (sides.length > 1) return sides.flatMap(orVariants);
  // No top-level `or` or comma: resolve the parenthesised groups, each independently.
  let variants = [''];
  let i = 0;
  while (i < expr.length) {
    if (expr[i] !== '(') {
      const next = expr.indexOf('(', i);
      const chunk = next < 0 ? expr.slice(i) : expr.slice(i, next);
      variants = variants.map((value) => value + chunk);
      i = next < 0 ? expr.length : next;
      continue;
    }
    let depth = 0;
    let j = i;
    for (; j < expr.length; j++) {
      if (expr[j] === '(') depth++;
      else if (expr[j] === ')' && --depth === 0) break;
    }
    const inner = orVariants(expr.slice(i + 1, j));
    variants = variants.flatMap((value) => inner.map((text) => `${value}(${text})`));
    i = j + 1;
  }
  return variants;
}
