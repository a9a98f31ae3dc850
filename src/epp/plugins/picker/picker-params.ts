/** Parameters every picker shares: `maxNumOfEndpoints` (int, default 1; 0 or less means the default, as upstream). */
import { z } from 'zod';
import type { ScoredEndpoint } from '../../framework/types.js';

export const pickerParams = z
  .object({
    maxNumOfEndpoints: z
      .number()
      .int()
      .default(1)
      .transform((count) => (count <= 0 ? 1 : count)),
  })
  .strict();

/** Fisher-Yates shuffle in place. */
export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}

export function resultOf(picked: ScoredEndpoint[], all: ScoredEndpoint[]) {
  return { targets: picked.map((scoredEndpoint) => scoredEndpoint.endpoint), scored: all };
}
