/**
 * A summary of a V8 CPU profile (`node --cpu-prof`, the .cpuprofile JSON): where the samples fell, by function (self
 * samples), with V8's own buckets ((garbage collector), (program), (idle)) kept apart. bench/peers --cpu-prof profiles
 * pd-router's sidecar and EPP over the whole run and prints this for each.
 *
 * Shares are of sample counts, not of the time between samples: V8 samples on a wall-clock interval from a thread of
 * the same process, so on a contended CPU a sample taken just before the process is descheduled would otherwise carry
 * the whole time it waited, charged to whatever function it interrupted.
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
  /** Samples that were not idle, and the wall time they span. */
  busySamples: number;
  busyMs: number;
  idleSamples: number;
  gcSamples: number;
  /** Top functions by self samples (share of the busy samples). */
  top: Array<{ fn: string; where: string; samples: number; share: number }>;
}

export function summariseProfile(file: string, topN = 15): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((node) => [node.id, node]));
  const self = new Map<string, { fn: string; where: string; n: number }>();
  let idle = 0;
  let gc = 0;
  let busy = 0;
  let busyUs = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    // Each sample's time is the delta to the next one (the last sample gets the previous delta).
    const dt = Math.max(0, prof.timeDeltas[Math.min(i + 1, prof.timeDeltas.length - 1)]);
    const node = byId.get(prof.samples[i]);
    if (!node) continue;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle++;
      continue;
    }
    busy++;
    busyUs += dt;
    if (name === '(garbage collector)') gc++;
    const url = node.callFrame.url.replace(/^file:\/\//, '');
    const where = url ? `${shortPath(url)}:${node.callFrame.lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const e = self.get(key) ?? { fn: name, where, n: 0 };
    e.n++;
    self.set(key, e);
  }
  const top = [...self.values()]
    .sort((left, right) => right.n - left.n)
    .slice(0, topN)
    .map((entry) => ({ fn: entry.fn, where: entry.where, samples: entry.n, share: busy > 0 ? entry.n / busy : 0 }));
  return { file, busySamples: busy, busyMs: busyUs / 1000, idleSamples: idle, gcSamples: gc, top };
}

/** node_modules/<pkg>/..., dist/src/..., or node:internal paths, without the machine's directories. */
function shortPath(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.startsWith('node:') ? url : path.basename(url);
}
