/**
 * Flow-control policies as GAIE v1.5 defines them (`framework/plugins/flowcontrol/{fairness,ordering}`):
 * - ordering picks the request inside one flow's queue: `fcfs-ordering-policy` (earliest enqueue first),
 *   `edf-ordering-policy` (earliest deadline = enqueue + TTL first, no TTL last, ties by enqueue time),
 *   `slo-deadline-ordering-policy` (earliest received + `x-llm-d-slo-ttft-ms` first, requests without a valid one last,
 *   ties by receipt time);
 * - fairness picks the flow inside one priority band: `global-strict-fairness-policy` (the flow whose head the ordering
 *   policy ranks best, so the band behaves as one queue), `round-robin-fairness-policy` (the next non-empty flow after
 *   the one served last, in the order flows appeared).
 */

export interface QueuedItem {
  readonly seq: number;
  readonly enqueuedAt: number;
  /** Absolute deadline in ms; Infinity when the request has none. */
  readonly deadline: number;
  /** When the EPP received the request (ms); default `enqueuedAt`. */
  readonly receivedAt?: number;
  /** `receivedAt` + the request's `x-llm-d-slo-ttft-ms` (ms); Infinity (the default) without a valid one. */
  readonly sloDeadline?: number;
}

/**
 * The TTFT SLO of a request in ms (llm-d-router's `x-llm-d-slo-ttft-ms`, else the deprecated `x-slo-ttft-ms`; the
 * first header present is read, even empty): a base-10 integer (sign allowed, spaces trimmed), undefined when missing,
 * not an integer, negative or beyond Go's time.Duration in ms.
 */
export function sloTtftMs(headers: Readonly<Record<string, string | undefined>>): number | undefined {
  const value = headers['x-llm-d-slo-ttft-ms'] ?? headers['x-slo-ttft-ms'];
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  const ms = Number(text);
  return ms < 0 || ms > 9_223_372_036_854 ? undefined : ms;
}

const compareNumbers = (left: number, right: number) => (left === right ? 0 : left < right ? -1 : 1);

export type OrderingPolicy = (queuedItem: QueuedItem, item: QueuedItem) => number;

export const ORDERING_POLICIES: Readonly<Record<string, OrderingPolicy>> = {
  'fcfs-ordering-policy': (queuedItem, item) => queuedItem.enqueuedAt - item.enqueuedAt || queuedItem.seq - item.seq,
  'edf-ordering-policy': (queuedItem, item) =>
    (queuedItem.deadline === item.deadline ? 0 : queuedItem.deadline < item.deadline ? -1 : 1) ||
    queuedItem.enqueuedAt - item.enqueuedAt ||
    queuedItem.seq - item.seq,
  'slo-deadline-ordering-policy': (queuedItem, item) =>
    compareNumbers(queuedItem.sloDeadline ?? Infinity, item.sloDeadline ?? Infinity) ||
    compareNumbers(queuedItem.receivedAt ?? queuedItem.enqueuedAt, item.receivedAt ?? item.enqueuedAt) ||
    queuedItem.seq - item.seq,
};

/** A flow as fairness sees it: its id and the head its ordering policy would dispatch next. */
export interface FlowView<T extends QueuedItem> {
  readonly id: string;
  head(): T | undefined;
}

/** Picks the flow to serve; `flows` lists the band's flows in the order they appeared. */
export interface FairnessPolicy {
  pick<T extends QueuedItem>(flows: readonly FlowView<T>[], order: OrderingPolicy): FlowView<T> | undefined;
  /** A request of the fairness id was dispatched after waiting `waitedMs` in the gate (0: at once). */
  dispatched?(fairnessId: string, waitedMs?: number): void;
  /** A dispatched request of the fairness id is over, with the tokens its answer reported (none: 0). */
  completed?(fairnessId: string, usage: { promptTokens: number; completionTokens: number } | undefined): void;
}

export function globalStrictFairness(): FairnessPolicy {
  return {
    pick(flows, order) {
      let best: (typeof flows)[number] | undefined;
      let bestHead: QueuedItem | undefined;
      for (const f of flows) {
        const h = f.head();
        if (h && (!bestHead || order(h, bestHead) < 0)) {
          best = f;
          bestHead = h;
        }
      }
      return best;
    },
  };
}

export function roundRobinFairness(): FairnessPolicy {
  let last: string | undefined;
  return {
    pick(flows) {
      if (flows.length === 0) return undefined;
      const at = last === undefined ? -1 : flows.findIndex((flowView) => flowView.id === last);
      // Empty flows stay listed until the gate collects them, so the cycle rarely loses its place; when it does, it restarts.
      const start = at + 1;
      for (let i = 0; i < flows.length; i++) {
        const f = flows[(start + i) % flows.length];
        if (f.head()) {
          last = f.id;
          return f;
        }
      }
      return undefined;
    },
  };
}

export const FAIRNESS_POLICIES: Readonly<Record<string, () => FairnessPolicy>> = {
  'global-strict-fairness-policy': globalStrictFairness,
  'round-robin-fairness-policy': roundRobinFairness,
};

/**
 * Usage-limit policies (llm-d-router `framework/plugins/flowcontrol/usagelimits`): the dispatch ceiling of each priority
 * band, given the pool's saturation and the bands' priorities (highest first). A band dispatches only while saturation
 * is below its ceiling, and a band over its ceiling stops the whole dispatch cycle (head-of-line blocking, so lower
 * bands never take capacity a higher one is held back from). Ceilings below 1 keep headroom for higher priorities:
 * - `static-usage-limit-policy` (upstream's default): one ceiling, `threshold` (1.0), for every band;
 * - `priority-holdback-policy`: from `maxCeiling` for the highest band down to `minCeiling` for the lowest, spaced
 *   evenly by rank (`domain: rank`) or in proportion to the priority values (`domain: value`); one band gets
 *   `maxCeiling`;
 * - `soft-reflective-ceiling-policy` (no parameters): the highest band's ceiling is 1; band i of n has the reflective
 *   ceiling `1 − i × saturation / (n − 1)`. A band below it is open (ceiling 1); at saturation >= 1 the others are shut
 *   (0); in between (saturation in [0.5, 1), where the lowest band reaches its reflective ceiling) a band at or past it
 *   is open on one call in `period = max(1, round(saturation / (1 − saturation)))`, counted by one tick shared by all
 *   bands and advanced once per call in that regime, so gated bands open and close together and the lowest band's
 *   dispatch rate falls with saturation. One band: always 1. Stateful: each call is one dispatch decision.
 */
export type UsageLimitPolicy = (saturation: number, priorities: readonly number[]) => number[];

export function staticUsageLimit(threshold: number): UsageLimitPolicy {
  return (_saturation, priorities) => priorities.map(() => threshold);
}

export function priorityHoldback(params: {
  minCeiling: number;
  maxCeiling: number;
  domain: 'rank' | 'value';
}): UsageLimitPolicy {
  const { minCeiling: min, maxCeiling: max, domain } = params;
  return (_saturation, priorities) => {
    const n = priorities.length;
    if (n <= 1) return priorities.map(() => max);
    if (domain === 'rank') return priorities.map((_, i) => max - (i * (max - min)) / (n - 1));
    const high = priorities[0];
    const low = priorities[n - 1];
    if (high === low) return priorities.map(() => max);
    return priorities.map((priority) => min + ((priority - low) / (high - low)) * (max - min));
  };
}

export function softReflectiveCeiling(): UsageLimitPolicy {
  let tick = 0;
  return (saturation, priorities) => {
    const n = priorities.length;
    if (n <= 1) return priorities.map(() => 1);
    let open = false;
    if (saturation >= 1 - saturation && saturation < 1) {
      // upstream's 1e-9 keeps the division finite as saturation nears 1
      const period = Math.max(1, Math.round(saturation / (1 - saturation + 1e-9)));
      open = ++tick % period === 0;
    }
    return priorities.map((_, i) => {
      if (i === 0) return 1;
      if (saturation < 1 - (i * saturation) / (n - 1)) return 1;
      if (saturation >= 1) return 0;
      return open ? 1 : 0;
    });
  };
}

/** Where program-aware-fairness reports (llm-d-router's `llm_d_epp_program_aware_*` gauges). */
export interface ProgramAwareObserver {
  attainedService(programId: string, tokens: number): void;
  averageWait(programId: string, ms: number): void;
  fairnessIndex(value: number): void;
  /** The program was forgotten: drop its series. */
  forget(programId: string): void;
}

export interface ProgramAwareSettings {
  evictionTtlSeconds: number;
  evictionSweepSeconds: number;
  lasWeightService: number;
  lasWeightHeadWait: number;
  lasHalfLifeSeconds: number;
}

/**
 * `program-aware-fairness` (llm-d-router `fairness/program-aware`, strategy `las`: least attained service). A program
 * is a fairness id. Its attained service is the tokens its completed requests used, `prompt + 2 × completion`, decayed
 * with half-life `lasHalfLifeSeconds` (0: never). Among the flows with a request waiting the policy picks the best
 * `lasWeightService × (1 − norm(service)) + lasWeightHeadWait × norm(head wait ms)`, each term min-max normalised over
 * those flows (0.5 when all are equal); ties go to the flow that appeared first. One instance serves every band that
 * names the plugin, as upstream's one plugin. A program with nothing in flight and no completion for
 * `evictionTtlSeconds` (0: never) is forgotten, checked every `evictionSweepSeconds`.
 */
export function programAwareFairness(
  settings: ProgramAwareSettings,
  now: () => number = Date.now,
  observer?: ProgramAwareObserver,
): FairnessPolicy & { service(fairnessId: string): number; readonly programs: number } {
  interface Program {
    service: number;
    anchor: number | undefined;
    inFlight: number;
    lastCompletion: number;
    waitCount: number;
    averageWaitMs: number;
  }
  /** Jain's index over the programs' average waits (1 with fewer than two programs or no wait at all). */
  const fairnessIndex = () => {
    let [sum, sumSq, n] = [0, 0, 0];
    for (const p of programs.values())
      if (p.waitCount > 0) {
        sum += p.averageWaitMs;
        sumSq += p.averageWaitMs * p.averageWaitMs;
        n++;
      }
    return n <= 1 || sumSq === 0 ? 1 : (sum * sum) / (n * sumSq);
  };
  const programs = new Map<string, Program>();
  let lastSweep = now();
  const program = (id: string): Program => {
    let p = programs.get(id);
    if (!p)
      programs.set(
        id,
        (p = { service: 0, anchor: undefined, inFlight: 0, lastCompletion: now(), waitCount: 0, averageWaitMs: 0 }),
      );
    return p;
  };
  const decay = (state: Program, at: number) => {
    if (state.anchor === undefined) {
      state.anchor = at;
      return;
    }
    const elapsed = (at - state.anchor) / 1000;
    if (elapsed <= 0) return;
    if (settings.lasHalfLifeSeconds > 0) state.service *= Math.pow(2, -elapsed / settings.lasHalfLifeSeconds);
    state.anchor = at;
  };
  const sweep = (at: number) => {
    if (settings.evictionTtlSeconds <= 0 || at - lastSweep < settings.evictionSweepSeconds * 1000) return;
    lastSweep = at;
    for (const [id, state] of programs)
      if (state.inFlight === 0 && at - state.lastCompletion > settings.evictionTtlSeconds * 1000) {
        programs.delete(id);
        observer?.forget(id);
      }
  };
  const norm = (value: number, min: number, max: number) => (max === min ? 0.5 : (value - min) / (max - min));
  return {
    // eslint-disable-next-line no-restricted-syntax -- built once per policy/server, not per request
    get programs() {
      return programs.size;
    },
    service(id) {
      const p = programs.get(id);
      if (!p) return 0;
      decay(p, now());
      return p.service;
    },
    pick(flows) {
      const t = now();
      sweep(t);
      const entries: Array<{ flow: (typeof flows)[number]; service: number; wait: number }> = [];
      for (const flow of flows) {
        const head = flow.head();
        if (!head) continue;
        const p = program(flow.id);
        decay(p, t);
        entries.push({ flow, service: p.service, wait: Math.trunc(t - head.enqueuedAt) });
      }
      if (entries.length === 0) {
        observer?.fairnessIndex(fairnessIndex());
        return undefined;
      }
      const services = entries.map((entry) => entry.service);
      const waits = entries.map((entry) => entry.wait);
      const [sMin, sMax, wMin, wMax] = [
        Math.min(...services),
        Math.max(...services),
        Math.min(...waits),
        Math.max(...waits),
      ];
      let best = entries[0].flow;
      let bestScore = -Infinity;
      for (const entry of entries) {
        const score =
          settings.lasWeightService * (1 - norm(entry.service, sMin, sMax)) +
          settings.lasWeightHeadWait * norm(entry.wait, wMin, wMax);
        if (score > bestScore) {
          bestScore = score;
          best = entry.flow;
        }
      }
      observer?.fairnessIndex(fairnessIndex());
      return best;
    },
    dispatched(id, waitedMs) {
      const p = program(id);
      p.inFlight++;
      if (waitedMs === undefined) return;
      p.waitCount++;
      p.averageWaitMs += (Math.trunc(waitedMs) - p.averageWaitMs) / p.waitCount;
      observer?.averageWait(id, p.averageWaitMs);
    },
    completed(id, usage) {
      const t = now();
      const p = program(id);
      p.inFlight = Math.max(0, p.inFlight - 1);
      decay(p, t);
      if (usage) p.service += usage.promptTokens + 2 * usage.completionTokens;
      observer?.attainedService(id, p.service);
      p.lastCompletion = t;
      sweep(t);
    },
  };
}
