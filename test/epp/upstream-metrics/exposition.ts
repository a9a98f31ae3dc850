/**
 * Metric families as Prometheus sees them in a text exposition (name, type, help, label names, histogram buckets),
 * in the shape of the upstream references next to this file: `gaie-v1.4.0.json` is what
 * test/interop/upstream-metrics (GAIE v1.4.0 and llm-d-inference-scheduler v0.7.1's own code, run by the interop
 * suite) prints; `llm-d-router-ebab687.json` is transcribed from llm-d-router's sources at ebab687
 * (pkg/epp/metrics/llm_d_router_metrics.go, grpc_stream_metrics.go, the approximate-prefix and disagg plugins'
 * metrics.go).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../helpers.js';

export interface FamilySchema {
  name: string;
  type: string;
  help: string;
  /** Label names, sorted (without `le`). */
  labels: string[];
  buckets?: number[];
}

export function upstreamReference(file: 'gaie-v1.4.0.json' | 'llm-d-router-ebab687.json'): FamilySchema[] {
  return JSON.parse(readFileSync(path.join(ROOT, 'test/epp/upstream-metrics', file), 'utf8')) as FamilySchema[];
}

function unescapeHelp(text: string): string {
  return text.replace(/\\(n|\\)/g, (_message, config: string) => (config === 'n' ? '\n' : '\\'));
}

/** Families with at least one sample, by name. */
export function familiesOf(text: string): Map<string, FamilySchema & { samples: number }> {
  const out = new Map<string, FamilySchema & { samples: number; labelSet: Set<string> }>();
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      help.set(m[1]!, unescapeHelp(m[2]!));
      continue;
    }
    m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      type.set(m[1]!, m[2]!);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+/.exec(line);
    if (!s) throw new Error(`unparsable sample line: ${line}`);
    let name = s[1]!;
    if (!type.has(name)) name = name.replace(/_(bucket|sum|count)$/, '');
    const labels: Record<string, string> = {};
    for (const pair of (s[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    let f = out.get(name);
    if (!f) {
      f = { name, type: type.get(name) ?? '?', help: help.get(name) ?? '', labels: [], samples: 0, labelSet: new Set() };
      out.set(name, f);
    }
    f.samples++;
    for (const k of Object.keys(labels)) if (k !== 'le') f.labelSet.add(k);
    if (s[1] === `${name}_bucket` && labels.le !== undefined && labels.le !== '+Inf') {
      f.buckets ??= [];
      const le = Number(labels.le);
      if (!f.buckets.includes(le)) f.buckets.push(le);
    }
  }
  for (const f of out.values()) {
    f.labels = [...f.labelSet].sort();
    f.buckets?.sort((left, right) => left - right);
    delete (f as Partial<typeof f>).labelSet;
  }
  return out;
}
