/**
 * `by-label` (deprecated upstream in favour of `label-selector-filter`): keeps endpoints whose label `label` has one of
 * `validValues`; endpoints without the label are kept iff `allowsNoLabel`. Also the building block of the role filters.
 *
 * Parameters: `label` (string, required), `validValues` (string[], default []), `allowsNoLabel` (bool, default false);
 * `validValues` must be non-empty unless `allowsNoLabel` (upstream's check).
 */
import { z } from 'zod';
import type { Endpoint, Filter } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

/** A filter keeping endpoints whose `label` is in `values` (or absent, if `allowsNoLabel`). */
export function labelValueFilter(type: string, name: string, label: string, values: Iterable<string>, allowsNoLabel: boolean): Filter {
  const valid = new Set(values);
  return {
    type,
    name,
    filter: (_ctx, endpoints) =>
      endpoints.filter((endpoint: Endpoint) => {
        const v = endpoint.labels[label];
        return v === undefined ? allowsNoLabel : valid.has(v);
      }),
  };
}

export const byLabelFilter = definePlugin({
  kind: 'filter',
  description: 'Keeps endpoints whose label has one of the valid values.',
  deprecatedFor: 'label-selector-filter',
  params: z
    .object({
      label: z.string({ message: 'is required' }).min(1, 'must be a non-empty label name'),
      validValues: z.array(z.string()).default([]),
      allowsNoLabel: z.boolean().default(false),
    })
    .strict()
    .refine((params) => params.validValues.length > 0 || params.allowsNoLabel, { message: 'either validValues must be non-empty or allowsNoLabel must be true', path: ['validValues'] }),
  create: (ctx, params) => labelValueFilter(ctx.type, ctx.name, params.label, params.validValues, params.allowsNoLabel),
});
