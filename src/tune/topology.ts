/**
 * Topologies (the DoE's setup treatments): xPyD with a tensor-parallel degree per role, or an aggregated baseline of
 * N replicas serving both phases. Names follow llm-d-benchmark's treatment names: `ms-d1xTP4-p2xTP2` for P/D
 * (modelservice), `sa-d2xTP4` for aggregated (standalone); short forms `2P1D`, `2P1D-tp1-2` and `agg4` are accepted.
 *
 * On simulators a topology becomes a local stack whose simulators' latencies are scaled by their TP degree:
 *   prefill per-token time × (0.1 + 0.9 / TP)   compute-bound, 90% of it parallelises
 *   inter-token latency    × (0.3 + 0.7 / TP)   memory-bound: weights are split, communication is not
 *   KV cache blocks        × TP                 each GPU adds memory
 * Prefill overhead and KV-transfer time per token are not scaled (fixed costs, network).
 */
import type { SimConfig } from '../sim/index.js';

export interface Topology {
  name: string;
  kind: 'pd' | 'aggregated';
  prefill: { replicas: number; tp: number };
  decode: { replicas: number; tp: number };
}

export function gpus(topology: Topology): number {
  return topology.prefill.replicas * topology.prefill.tp + topology.decode.replicas * topology.decode.tp;
}

export function topologyName(value: Omit<Topology, 'name'>): string {
  return value.kind === 'aggregated' ? `sa-d${value.decode.replicas}xTP${value.decode.tp}` : `ms-d${value.decode.replicas}xTP${value.decode.tp}-p${value.prefill.replicas}xTP${value.prefill.tp}`;
}

/**
 * The xPyD shape of an llm-d-benchmark name, in the short form `parseTopology` accepts: `ms-d1xTP1-p2xTP1` is 2P1D
 * (p = prefill replicas, d = decode replicas), `ms-d1xTP4-p2xTP2` is 2P1D-tp2-4 (prefill TP, decode TP), `sa-d2xTP1`
 * is agg2 (two aggregated replicas). Undefined for other names (e.g. a --label of a real deployment).
 */
export function shapeName(name: string): string | undefined {
  let m = /^ms-d(\d+)xTP(\d+)-p(\d+)xTP(\d+)$/i.exec(name);
  if (m) return `${m[3]}P${m[1]}D${m[2] === '1' && m[4] === '1' ? '' : `-tp${m[4]}-${m[2]}`}`;
  m = /^sa-d(\d+)xTP(\d+)$/i.exec(name);
  if (m) return `agg${m[1]}${m[2] === '1' ? '' : `-tp${m[2]}`}`;
  return undefined;
}

/** How reports name a topology: its shape first, then the llm-d-benchmark name, e.g. "2P1D (ms-d1xTP1-p2xTP1)". */
export function displayName(name: string): string {
  const shape = shapeName(name);
  return shape && shape !== name ? `${shape} (${name})` : name;
}

/** Parses a topology name; throws with the accepted forms when it cannot. */
export function parseTopology(text: string): Topology {
  const s = text.trim();
  let m = /^ms-d(\d+)xTP(\d+)-p(\d+)xTP(\d+)$/i.exec(s);
  if (m) return make('pd', +m[3]!, +m[4]!, +m[1]!, +m[2]!, s);
  m = /^sa-d(\d+)xTP(\d+)$/i.exec(s);
  if (m) return make('aggregated', 0, 1, +m[1]!, +m[2]!, s);
  m = /^(\d+)P(\d+)D(?:-tp(\d+)-(\d+))?$/i.exec(s);
  if (m) return make('pd', +m[1]!, m[3] ? +m[3] : 1, +m[2]!, m[4] ? +m[4] : 1);
  m = /^agg(\d+)(?:-tp(\d+))?$/i.exec(s);
  if (m) return make('aggregated', 0, 1, +m[1]!, m[2] ? +m[2] : 1);
  throw new Error(`invalid topology "${text}": expected e.g. 2P1D, 2P1D-tp1-2 (prefill TP, decode TP), agg4, agg2-tp2, ms-d1xTP4-p2xTP2 or sa-d2xTP4`);
}

function make(kind: Topology['kind'], pr: number, ptp: number, dr: number, dtp: number, name?: string): Topology {
  if (dr < 1 || (kind === 'pd' && pr < 1)) throw new Error('a topology needs at least one decode replica, and P/D at least one prefill replica');
  for (const tp of [ptp, dtp]) if (![1, 2, 4, 8].includes(tp)) throw new Error(`tensor parallelism ${tp} is not one of 1, 2, 4, 8`);
  const t = { kind, prefill: { replicas: pr, tp: ptp }, decode: { replicas: dr, tp: dtp } };
  return { ...t, name: name ?? topologyName(t) };
}

/** Simulator settings for a role at a TP degree, scaled from the TP1 profile. */
export function scaleByTp(profile: Partial<SimConfig>, tp: number): Partial<SimConfig> {
  const scaled: Partial<SimConfig> = { ...profile };
  if (profile.prefillTimePerToken !== undefined) scaled.prefillTimePerToken = profile.prefillTimePerToken * (0.1 + 0.9 / tp);
  if (profile.interTokenLatency !== undefined) scaled.interTokenLatency = profile.interTokenLatency * (0.3 + 0.7 / tp);
  if (profile.interTokenLatencyStdDev !== undefined) scaled.interTokenLatencyStdDev = profile.interTokenLatencyStdDev * (0.3 + 0.7 / tp);
  if (profile.kvCacheSize !== undefined) scaled.kvCacheSize = profile.kvCacheSize * tp;
  if (profile.maxNumSeqs !== undefined) scaled.maxNumSeqs = profile.maxNumSeqs * tp;
  return scaled;
}
