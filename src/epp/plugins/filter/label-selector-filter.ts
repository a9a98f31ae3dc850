/**
 * `label-selector-filter` (llm-d-router), and `by-label-selector`, its llm-d v0.7.1 name (deprecated in llm-d-router,
 * same parameters): keeps endpoints matching a Kubernetes label selector (`metav1.LabelSelector`).
 *
 * Parameters: `matchLabels` (map, default {}), `matchExpressions` ([{key, operator: In|NotIn|Exists|DoesNotExist,
 * values}], default []). All terms must hold; an empty selector keeps everything. As in Kubernetes, In/NotIn need at
 * least one value and Exists/DoesNotExist take none; NotIn and DoesNotExist match endpoints without the label.
 */
import { z } from 'zod';
import type { Endpoint, Filter } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

const expression = z
  .object({
    key: z.string().min(1),
    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
    values: z.array(z.string()).default([]),
  })
  .strict()
  .refine((entry) => ((entry.operator === 'In' || entry.operator === 'NotIn') ? entry.values.length > 0 : entry.values.length === 0), {
    message: 'In and NotIn need values; Exists and DoesNotExist take none',
  });

type Expression = z.infer<typeof expression>;

function matches(labels: Readonly<Record<string, string>>, matchLabels: Record<string, string>, expressions: Expression[]): boolean {
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false;
  for (const e of expressions) {
    const v = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (v === undefined || !e.values.includes(v)) return false;
        break;
      case 'NotIn':
        if (v !== undefined && e.values.includes(v)) return false;
        break;
      case 'Exists':
        if (v === undefined) return false;
        break;
      case 'DoesNotExist':
        if (v !== undefined) return false;
        break;
    }
  }
  return true;
}

export const labelSelectorFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps endpoints matching a Kubernetes label selector.',
  params: z
    .object({
      matchLabels: z.record(z.string(), z.string()).default({}),
      matchExpressions: z.array(expression).default([]),
    })
    .strict(),
  create: (ctx, params): Filter => ({
    type: ctx.type,
    name: ctx.name,
    filter: (_context, endpoints) => endpoints.filter((endpoint: Endpoint) => matches(endpoint.labels, params.matchLabels, params.matchExpressions)),
  }),
});
