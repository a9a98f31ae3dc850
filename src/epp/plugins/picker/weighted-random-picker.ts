/**
 * `weighted-random-picker`: picks `maxNumOfEndpoints` (default 1) candidates at random with probability proportional
 * to their score, without replacement (A-Res: key = U^(1/score), the largest keys win). Zero-score candidates are
 * only picked when nothing scores above 0, in which case the pick is uniform.
 */
import type { Picker, ScoredEndpoint } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { pickerParams, resultOf, shuffle } from './picker-params.js';

export const weightedRandomPicker = definePlugin({
  kind: 'picker',
  description: 'Random, proportional to score.',
  params: pickerParams,
  create: (ctx, params): Picker => ({
    type: ctx.type,
    name: ctx.name,
    pick(_context, scored) {
      if (!scored.some((endpoint) => endpoint.score > 0)) return resultOf(shuffle([...scored], ctx.random).slice(0, params.maxNumOfEndpoints), scored);
      const keyed: Array<{ s: ScoredEndpoint; key: number }> = scored.map((endpoint) => {
        if (endpoint.score <= 0) return { s: endpoint, key: 0 };
        const u = ctx.random() || 1e-10;
        return { s: endpoint, key: Math.pow(u, 1 / endpoint.score) };
      });
      keyed.sort((left, right) => right.key - left.key);
      return resultOf(keyed.slice(0, params.maxNumOfEndpoints).map((k) => k.s), scored);
    },
  }),
});
