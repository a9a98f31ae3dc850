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
export const PRECISE_PREFIX_PRODUCER_TYPE = 'precise-prefix-cache-producer';
/** llm-d v0.7.1's precise scorer, which produces match info too. */
export const PRECISE_PREFIX_SCORER_TYPE = 'precise-prefix-cache-scorer';
/** Plugin types that leave prefix match info for consumers. */
export const PREFIX_PRODUCER_TYPES: ReadonlySet<string> = new Set([APPROX_PREFIX_PRODUCER_TYPE, PRECISE_PREFIX_PRODUCER_TYPE, PRECISE_PREFIX_SCORER_TYPE]);

export function prefixStateKey(producerName: string): string {
  return `prefix-match/${producerName}`;
}

export function prefixState(ctx: SchedulingContext, producerName: string): PrefixMatchState | undefined {
  return ctx.state.get(prefixStateKey(producerName)) as PrefixMatchState | undefined;
}

/** The match info of one endpoint, or undefined when the producer did not run for this request. */
export function prefixMatchOf(ctx: SchedulingContext, producerName: string, endpointId: string): PrefixMatch | undefined {
  const s = prefixState(ctx, producerName);
  if (!s) return undefined;
  return { matchedBlocks: s.matched.get(endpointId) ?? 0, totalBlocks: s.totalBlocks, blockSizeTokens: s.blockSizeTokens };
}
