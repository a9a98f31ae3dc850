/**
 * A summary of a V8 CPU profile (`node --cpu-prof`, the .cpuprofile JSON): where the samples fell, by function (self
 * time), with V8's own buckets ((garbage collector), (program), (idle)) kept apart. bench/peers --cpu-prof profiles
 * pd-router's sidecar and EPP over the whole run and prints this for each.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface ProfileSummary {
  file: string;
  /** Sampled milliseconds that were not idle. */
  busyMs: number;
  idleMs: number;
  gcMs: number;
  /** Top functions by self time (share of busy time). */
  top: Array<{ fn: string; where: string; selfMs: number; share: number }>;
}

export function summariseProfile(file: string, topN = 15): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let idleUs = 0;
  let gcUs = 0;
  let busyUs = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    // Each sample's time is the delta to the next one (the last sample gets the previous delta).
    const dt = Math.max(0, prof.timeDeltas[i + 1] ?? prof.timeDeltas[i] ?? 0);
    const node = byId.get(prof.samples[i]!);
    if (!node) continue;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idleUs += dt;
      continue;
    }
    busyUs += dt;
    if (name === '(garbage collector)') gcUs += dt;
    const url = node.callFrame.url.replace(/^file:\/\//, '');
    const where = url ? `${shortPath(url)}:${node.callFrame.lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const e = self.get(key) ?? { fn: name, where, us: 0 };
    e.us += dt;
    self.set(key, e);
  }
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, share: busyUs > 0 ? e.us / busyUs : 0 }));
  return { file, busyMs: busyUs / 1000, idleMs: idleUs / 1000, gcMs: gcUs / 1000, top };
}

/** node_modules/<pkg>/..., dist/src/..., or node:internal paths, without the machine's directories. */
function shortPath(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.startsWith('node:') ? url : path.basename(url);
}
