/**
 * Request attributes (llm-d's InferenceRequest attribute store): values a producer publishes for one request, keyed,
 * as upstream, by a data type and the producer's name. Kept in the scheduling context's state.
 */
import type { SchedulingContext } from './types.js';

const key = (dataType: string, producer: string) => `request-attribute:${dataType}/${producer}`;

export function putRequestAttribute(
  cycle: SchedulingContext,
  dataType: string,
  producer: string,
  value: unknown,
): void {
  cycle.state.set(key(dataType, producer), value);
}

export function requestAttribute(cycle: SchedulingContext, dataType: string, producer: string): unknown {
  return cycle.state.get(key(dataType, producer));
}
