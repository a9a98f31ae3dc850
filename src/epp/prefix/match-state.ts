/**
 * What `approx-prefix-cache-producer` (and the precise producers) leave in the scheduling context for its consumers (prefix-cache-scorer,
 * no-hit-lru-scorer, the disagg handler's decider): per endpoint, how many of the request's blocks it is believed to
 * hold, plus the request's block hashes so the index can be updated on the pick.
 */
import type { PrefixMatch } from '../../decider/index.js';
import type { SchedulingContext } from '../framework/types.js';

export interface PrefixMatchState {
  blockSizeTokens: number;
  totalBlocks: number;
  /** Endpoint id → matched blocks (absent = 0). */
  matched: Map<string, number>;
  /** Block keys (see PrefixIndex.blockKey) of each prompt's hash chain. */
  keys: number[][];
}

export const APPROX_PREFIX_PRODUCER_TYPE = 'approx-prefix-cache-producer';

/**
 * The data a prefix-match producer writes (approx-, burst- and precise-prefix-cache-producer, v0.7.1's
 * precise-prefix-cache-scorer) and its consumers require (PluginDefinition `produces` / `requires`).
 */
export const PREFIX_MATCH_DATA = 'prefix-match';

export function prefixStateKey(producerName: string): string {
  return `prefix-match/${producerName}`;
}

export function prefixState(ctx: SchedulingContext, producerName: string): PrefixMatchState | undefined {
  return ctx.state.get(prefixStateKey(producerName)) as PrefixMatchState | undefined;
}

/** The match info of one endpoint, or undefined when the producer did not run for this request. */
export function prefixMatchOf(
  ctx: SchedulingContext,
  producerName: string,
  endpointId: string,
): PrefixMatch | undefined {
  const s = prefixState(ctx, producerName);
  if (!s) return undefined;
  return {
    matchedBlocks: s.matched.get(endpointId) ?? 0,
    totalBlocks: s.totalBlocks,
    blockSizeTokens: s.blockSizeTokens,
  };
}
