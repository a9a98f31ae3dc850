/**
 * InferenceObjective (v1alpha2; `llm-d.ai` or GAIE's `inference.networking.x-k8s.io`): a request names its objective
 * in `x-llm-d-inference-objective` (or the deprecated `x-gateway-inference-objective`), and the objective of that
 * name in the pool gives the request's priority. As upstream's Director: an unknown objective, no header, or an
 * objective without `priority` means priority 0. Priorities are int32 (llm-d-router's type); higher is more important.
 */
import { z } from 'zod';

const INT32_MIN = -2_147_483_648;
const INT32_MAX = 2_147_483_647;

export interface Objective {
  readonly name: string;
  readonly priority: number;
}

const specSchema = z.object({
  priority: z
    .number({ error: 'priority must be an integer' })
    .int('priority must be an integer')
    .min(INT32_MIN, 'priority must fit in 32 bits')
    .max(INT32_MAX, 'priority must fit in 32 bits')
    .nullish(),
});

/** Validates an InferenceObjective's spec (the poolRef is the watcher's business). */
export function parseObjective(name: string, spec: unknown): { objective: Objective } | { error: string } {
  const r = specSchema.safeParse(spec ?? {});
  if (!r.success) return { error: r.error.issues.map((i) => `${['spec', ...i.path].join('.')}: ${i.message}`).join('; ') };
  return { objective: { name, priority: r.data.priority ?? 0 } };
}

export class ObjectiveStore {
  private readonly byName = new Map<string, Objective>();

  get size(): number {
    return this.byName.size;
  }

  get(name: string): Objective | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  set(objective: Objective): void {
    this.byName.set(objective.name, objective);
  }

  delete(name: string): boolean {
    return this.byName.delete(name);
  }

  /** The priority of requests naming `objective` (0 when there is no such objective). */
  priority(objective: string): number {
    return objective === '' ? 0 : (this.byName.get(objective)?.priority ?? 0);
  }
}
