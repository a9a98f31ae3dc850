/**
 * JSON "shapes" for the differential test: which fields exist and what JSON types they hold, arrays merged over their
 * elements, values ignored. `shapeDiff` lists the differences as paths: `+a.b` only in the second, `-a.b` only in the
 * first, `~a.b: string -> number` types differ.
 */

export interface Shape {
  types: Set<string>;
  fields?: Map<string, Shape>;
  items?: Shape;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function mergeShape(a: Shape | undefined, b: Shape): Shape {
  if (!a) return b;
  const out: Shape = { types: new Set([...a.types, ...b.types]) };
  if (a.fields || b.fields) {
    out.fields = new Map(a.fields ?? []);
    for (const [k, v] of b.fields ?? []) out.fields.set(k, mergeShape(out.fields.get(k), v));
  }
  if (a.items || b.items) out.items = a.items && b.items ? mergeShape(a.items, b.items) : (a.items ?? b.items);
  return out;
}

export function shapeOf(v: unknown): Shape {
  const t = typeOf(v);
  const s: Shape = { types: new Set([t]) };
  if (t === 'object') {
    s.fields = new Map(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, shapeOf(x)]));
  } else if (t === 'array') {
    for (const x of v as unknown[]) s.items = mergeShape(s.items, shapeOf(x));
  }
  return s;
}

const typeList = (s: Shape) => [...s.types].sort().join('|');

export function shapeDiff(a: Shape, b: Shape, path = ''): string[] {
  const out: string[] = [];
  if (typeList(a) !== typeList(b)) out.push(`~${path || '.'}: ${typeList(a)} -> ${typeList(b)}`);
  const keys = new Set([...(a.fields?.keys() ?? []), ...(b.fields?.keys() ?? [])]);
  for (const k of [...keys].sort()) {
    const p = path ? `${path}.${k}` : k;
    const x = a.fields?.get(k);
    const y = b.fields?.get(k);
    if (!x) out.push(`+${p}`);
    else if (!y) out.push(`-${p}`);
    else out.push(...shapeDiff(x, y, p));
  }
  if (a.items && b.items) out.push(...shapeDiff(a.items, b.items, `${path}[]`));
  else if (a.items && !b.items && b.types.has('array')) out.push(`-${path}[] (elements)`);
  else if (!a.items && b.items && a.types.has('array')) out.push(`+${path}[] (elements)`);
  return out;
}

/** SSE frames as (kind, data) with kind = the `event:` name, else the data object's `object` field, else "data". */
export function sseFrames(text: string): Array<{ kind: string; data: unknown }> {
  return text
    .split('\n\n')
    .filter((f) => f.trim().length > 0)
    .map((f) => {
      const event = /^event: (.*)$/m.exec(f)?.[1];
      const raw = /^data: (.*)$/m.exec(f)?.[1] ?? '';
      if (raw === '[DONE]') return { kind: '[DONE]', data: null };
      const data = JSON.parse(raw) as Record<string, unknown>;
      return { kind: event ?? (typeof data.object === 'string' ? data.object : 'data'), data };
    });
}

/** The kinds in order (consecutive repeats collapsed) and one merged shape per kind. */
export function streamShape(text: string): { kinds: string[]; shapes: Map<string, Shape> } {
  const kinds: string[] = [];
  const shapes = new Map<string, Shape>();
  for (const f of sseFrames(text)) {
    if (kinds.at(-1) !== f.kind) kinds.push(f.kind);
    shapes.set(f.kind, mergeShape(shapes.get(f.kind), shapeOf(f.data)));
  }
  return { kinds, shapes };
}

export function streamDiff(a: string, b: string): string[] {
  const x = streamShape(a);
  const y = streamShape(b);
  const out: string[] = [];
  if (x.kinds.join(' ') !== y.kinds.join(' ')) out.push(`frames: ${x.kinds.join(' ')} -> ${y.kinds.join(' ')}`);
  for (const [kind, s] of x.shapes) {
    const t = y.shapes.get(kind);
    if (t) out.push(...shapeDiff(s, t, kind));
  }
  return out;
}
