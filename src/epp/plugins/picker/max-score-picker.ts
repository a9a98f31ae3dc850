/**
 * `max-score-picker`: shuffles the candidates, stable-sorts them by descending score and takes the first
 * `maxNumOfEndpoints` (default 1), so ties are broken at random.
 */
import type { Picker } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { pickerParams, resultOf, shuffle } from './picker-params.js';

export const maxScorePicker = definePlugin({
  kind: 'picker',
  description: 'Highest score wins; ties broken at random.',
  params: pickerParams,
  create: (ctx, params): Picker => ({
    type: ctx.type,
    name: ctx.name,
    pick(_context, scored) {
      if (params.maxNumOfEndpoints === 1) {
        // One pass, uniform among the ties (reservoir sampling): what shuffle + stable sort gives, without the sort.
        let best: (typeof scored)[number] | undefined;
        let ties = 0;
        for (const s of scored) {
          if (best === undefined || s.score > best.score) {
            best = s;
            ties = 1;
          } else if (s.score === best.score && ctx.random() * ++ties < 1) {
            best = s;
          }
        }
        return resultOf(best ? [best] : [], scored);
      }
      const order = shuffle([...scored], ctx.random).sort((left, right) => right.score - left.score);
      return resultOf(order.slice(0, params.maxNumOfEndpoints), scored);
    },
  }),
});
