/** `random-picker`: picks `maxNumOfEndpoints` (default 1) candidates uniformly at random, ignoring scores. */
import type { Picker } from '../../framework/types.js';
import { definePlugin } from '../definition.js';
import { pickerParams, resultOf, shuffle } from './picker-params.js';

export const randomPicker = definePlugin({
  kind: 'picker',
  description: 'Uniformly random.',
  params: pickerParams,
  create: (ctx, params): Picker => ({
    type: ctx.type,
    name: ctx.name,
    pick: (_context, scored) => resultOf(shuffle([...scored], ctx.random).slice(0, params.maxNumOfEndpoints), scored),
  }),
});
