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

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

export function mergeShape(shape: Shape | undefined, right: Shape): Shape {
  if (!shape) return right;
  const out: Shape = { types: new Set([...shape.types, ...right.types]) };
  if (shape.fields || right.fields) {
    out.fields = new Map(shape.fields ?? []);
    for (const [k, v] of right.fields ?? []) out.fields.set(k, mergeShape(out.fields.get(k), v));
  }
  if (shape.items || right.items)
    out.items = shape.items && right.items ? mergeShape(shape.items, right.items) : (shape.items ?? right.items);
  return out;
}

export function shapeOf(value: unknown): Shape {
  const t = typeOf(value);
  const s: Shape = { types: new Set([t]) };
  if (t === 'object') {
    s.fields = new Map(Object.entries(value as Record<string, unknown>).map(([key, field]) => [key, shapeOf(field)]));
  } else if (t === 'array') {
    for (const x of value as unknown[]) s.items = mergeShape(s.items, shapeOf(x));
  }
  return s;
}

const typeList = (shape: Shape) => [...shape.types].sort().join('|');

export function shapeDiff(shape: Shape, right: Shape, path = ''): string[] {
  const out: string[] = [];
  if (typeList(shape) !== typeList(right)) out.push(`~${path || '.'}: ${typeList(shape)} -> ${typeList(right)}`);
  const keys = new Set([...(shape.fields?.keys() ?? []), ...(right.fields?.keys() ?? [])]);
  for (const k of [...keys].sort()) {
    const p = path ? `${path}.${k}` : k;
    const x = shape.fields?.get(k);
    const y = right.fields?.get(k);
    if (!x) out.push(`+${p}`);
    else if (!y) out.push(`-${p}`);
    else out.push(...shapeDiff(x, y, p));
  }
  if (shape.items && right.items) out.push(...shapeDiff(shape.items, right.items, `${path}[]`));
  else if (shape.items && !right.items && right.types.has('array')) out.push(`-${path}[] (elements)`);
  else if (!shape.items && right.items && shape.types.has('array')) out.push(`+${path}[] (elements)`);
  return out;
}

/** SSE frames as (kind, data) with kind = the `event:` name, else the data object's `object` field, else "data". */
export function sseFrames(text: string): Array<{ kind: string; data: unknown }> {
  return text
    .split('\n\n')
    .filter((field) => field.trim().length > 0)
    .map((field) => {
      const event = /^event: (.*)$/m.exec(field)?.[1];
      const raw = /^data: (.*)$/m.exec(field)?.[1] ?? '';
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

export function streamDiff(left: string, right: string): string[] {
  const x = streamShape(left);
  const y = streamShape(right);
  const out: string[] = [];
  if (x.kinds.join(' ') !== y.kinds.join(' ')) out.push(`frames: ${x.kinds.join(' ')} -> ${y.kinds.join(' ')}`);
  for (const [kind, s] of x.shapes) {
    const t = y.shapes.get(kind);
    if (t) out.push(...shapeDiff(s, t, kind));
  }
  return out;
}
