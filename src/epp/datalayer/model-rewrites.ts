/**
 * InferenceModelRewrite (v1alpha2; `llm-d.ai` or GAIE's `inference.networking.x-k8s.io`): model aliasing and weighted
 * splits, with GAIE's precedence (its `modelrewritestore.go` and the API's "Precedence and Conflict Resolution"):
 *
 * 1. A rule whose `matches` name the request's model exactly beats a generic rule (empty `matches`), whichever object
 *    holds them.
 * 2. Among rules of the same kind, the oldest object (creationTimestamp) wins. Timestamps have one-second resolution,
 *    so objects created in the same second tie; pd-router breaks that tie by name (upstream's order is then
 *    unspecified).
 * 3. Within one object, the first matching rule in list order wins.
 *
 * A rule's target is chosen at random, in proportion to the weights (weight / sum of weights); without weights, evenly.
 *
 * Objects are validated here, where upstream trusts the API server's schema: what the schema lets through but cannot
 * be served (a target with no model name, weights on some targets only, a rule with no targets) makes the object
 * invalid, and the watcher keeps the object's last valid version instead.
 */
import { z } from 'zod';

/** The CRD schema's bounds of a weight. */
export const MAX_TARGET_WEIGHT = 1_000_000;

export interface RewriteTarget {
  readonly model: string;
  /** Undefined: the rule's targets have no weights (even split). */
  readonly weight: number | undefined;
}

export interface RewriteRule {
  /** Exact model names matched; empty: a generic rule (matches every request). */
  readonly models: readonly string[];
  readonly targets: readonly RewriteTarget[];
  /** Running sums of the weights (empty when unweighted), for the pick. */
  readonly cumulative: readonly number[];
}

export interface ModelRewrite {
  readonly name: string;
  /** creationTimestamp in ms (precedence: oldest first). */
  readonly createdAt: number;
  readonly rules: readonly RewriteRule[];
}

export interface RewriteDecision {
  /** Name of the InferenceModelRewrite whose rule matched (the metric's model_rewrite_name). */
  readonly rewriteName: string;
  readonly targetModel: string;
}

const nonEmpty = (what: string) => z.string({ error: `${what} must be a string` }).min(1, `${what} must not be empty`);

const ruleSchema = z.object({
  matches: z
    .array(
      z.object({
        model: z.object(
          {
            type: z.enum(['Exact'], { error: 'match type must be Exact' }).optional(),
            value: nonEmpty('match model value'),
          },
          { error: 'a match needs a model' },
        ),
      }),
    )
    .optional(),
  targets: z
    .array(
      z.object({
        modelRewrite: nonEmpty('modelRewrite'),
        weight: z
          .number({ error: 'weight must be an integer' })
          .int('weight must be an integer')
          .min(1, `weight must be between 1 and ${MAX_TARGET_WEIGHT}`)
          .max(MAX_TARGET_WEIGHT, `weight must be between 1 and ${MAX_TARGET_WEIGHT}`)
          .nullish(),
      }),
      { error: 'a rule needs at least one target' },
    )
    .min(1, 'a rule needs at least one target'),
});

const specSchema = z.object({ rules: z.array(ruleSchema, { error: 'rules must be a list' }) }, { error: 'the object has no spec' });

function issues(e: z.ZodError): string {
  return e.issues.map((i) => `${['spec', ...i.path].join('.')}: ${i.message}`).join('; ');
}

/**
 * Validates an InferenceModelRewrite's spec (the poolRef is the watcher's business). Returns the rewrite, or the
 * reason it cannot be served.
 */
export function parseModelRewrite(name: string, createdAt: number, spec: unknown): { rewrite: ModelRewrite } | { error: string } {
  const r = specSchema.safeParse(spec);
  if (!r.success) return { error: issues(r.error) };
  const rules: RewriteRule[] = [];
  for (const [i, rule] of r.data.rules.entries()) {
    const weighted = rule.targets.filter((t) => t.weight != null).length;
    // The API: "If a weight is set for any targetModel, it must be set for all targetModels."
    if (weighted > 0 && weighted < rule.targets.length) return { error: `spec.rules.${i}.targets: weights are set on ${weighted} of ${rule.targets.length} targets; set them on all or none` };
    const targets = rule.targets.map((t) => ({ model: t.modelRewrite, weight: t.weight ?? undefined }));
    let sum = 0;
    const cumulative = weighted === 0 ? [] : targets.map((t) => (sum += t.weight!));
    rules.push({ models: [...new Set((rule.matches ?? []).map((m) => m.model.value))], targets, cumulative });
  }
  return { rewrite: { name, createdAt, rules } };
}

/** A target of `rule`, at random in proportion to the weights (evenly without weights). */
export function pickTarget(rule: RewriteRule, random: () => number): string {
  const { targets, cumulative } = rule;
  if (targets.length === 1) return targets[0]!.model;
  if (cumulative.length === 0) return targets[Math.min(targets.length - 1, Math.floor(random() * targets.length))]!.model;
  const x = Math.floor(random() * cumulative[cumulative.length - 1]!);
  // Few targets: a linear scan beats a binary search.
  for (let i = 0; i < cumulative.length; i++) if (x < cumulative[i]!) return targets[i]!.model;
  return targets[targets.length - 1]!.model;
}

interface IndexedRule {
  rewrite: ModelRewrite;
  rule: RewriteRule;
  order: number;
}

function byPrecedence(a: IndexedRule, b: IndexedRule): number {
  return a.rewrite.createdAt - b.rewrite.createdAt || (a.rewrite.name < b.rewrite.name ? -1 : a.rewrite.name > b.rewrite.name ? 1 : 0) || a.order - b.order;
}

/** The valid InferenceModelRewrites of a pool, indexed for one lookup per request. */
export class ModelRewriteStore {
  private readonly byName = new Map<string, ModelRewrite>();
  private exact = new Map<string, IndexedRule>();
  private generic: IndexedRule | undefined;

  get size(): number {
    return this.byName.size;
  }

  get(name: string): ModelRewrite | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  set(rewrite: ModelRewrite): void {
    this.byName.set(rewrite.name, rewrite);
    this.reindex();
  }

  delete(name: string): boolean {
    const had = this.byName.delete(name);
    if (had) this.reindex();
    return had;
  }

  /** The rule that applies to requests for `model` (exact before generic, then oldest), with its object. */
  ruleFor(model: string): { rewrite: ModelRewrite; rule: RewriteRule } | undefined {
    return this.exact.get(model) ?? this.generic;
  }

  /** The rewrite of a request for `model`: a target of the rule that applies, or undefined when none does. */
  decide(model: string, random: () => number): RewriteDecision | undefined {
    const hit = this.ruleFor(model);
    return hit && { rewriteName: hit.rewrite.name, targetModel: pickTarget(hit.rule, random) };
  }

  /** Every model name the rewrites configure (matched and target), for metric label bounds. */
  configuredModels(): Set<string> {
    const out = new Set<string>();
    for (const rw of this.byName.values()) for (const rule of rw.rules) for (const m of [...rule.models, ...rule.targets.map((t) => t.model)]) out.add(m);
    return out;
  }

  /** Precedence is resolved once per change, so a request costs one map lookup. */
  private reindex(): void {
    const exact = new Map<string, IndexedRule[]>();
    const generic: IndexedRule[] = [];
    let order = 0;
    for (const rewrite of this.byName.values()) {
      for (const rule of rewrite.rules) {
        const entry = { rewrite, rule, order: order++ };
        if (rule.models.length === 0) generic.push(entry);
        for (const m of rule.models) {
          let list = exact.get(m);
          if (!list) exact.set(m, (list = []));
          list.push(entry);
        }
      }
    }
    this.exact = new Map([...exact].map(([m, list]) => [m, list.sort(byPrecedence)[0]!]));
    this.generic = generic.sort(byPrecedence)[0];
  }
}
