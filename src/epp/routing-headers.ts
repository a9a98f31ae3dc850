/**
 * What the EPP does with the P/D wire contract's headers (their names live in `common/pd-contract.ts`): writes the
 * disaggregation headers from a scheduling result, and knows which request headers it never echoes back to Envoy.
 */

import type { SchedulingResult } from './framework/types.js';
import {
  DESTINATION_ENDPOINT,
  DESTINATION_ENDPOINT_SERVED,
  DROPPED_REASON,
  ENCODER_HOSTS_PORTS,
  FAIRNESS_ID_HEADERS,
  MODEL_REWRITE_HEADERS,
  OBJECTIVE_HEADERS,
  PREFILLER_HOST_PORT,
  SUBSET_HINT_KEY,
} from '../common/pd-contract.js';

/**
 * Writes the P/D routing headers from a scheduling result, after dropping whatever the request carried:
 * `x-prefiller-host-port` from the first pick of `prefillProfile`, `x-encoder-hosts-ports` from every pick of
 * `encodeProfile`.
 */
export function writeDisaggHeaders(headers: Record<string, string>, result: SchedulingResult, prefillProfile: string, encodeProfile: string): void {
  delete headers[PREFILLER_HOST_PORT];
  delete headers[ENCODER_HOSTS_PORTS];
  const prefill = result.results.get(prefillProfile)?.targets[0];
  if (prefill) headers[PREFILLER_HOST_PORT] = prefill.hostPort;
  const encoders = result.results.get(encodeProfile)?.targets ?? [];
  if (encoders.length > 0) headers[ENCODER_HOSTS_PORTS] = encoders.map((endpoint) => endpoint.hostPort).join(',');
}

/**
 * Headers the EPP never echoes back to Envoy (llm-d `IsSystemOwnedHeader`): input controls, its own outputs and
 * content-length.
 */
export const SYSTEM_OWNED_HEADERS: ReadonlySet<string> = new Set([
  ...FAIRNESS_ID_HEADERS,
  'x-llm-d-inference-ttl',
  ...OBJECTIVE_HEADERS,
  ...MODEL_REWRITE_HEADERS,
  SUBSET_HINT_KEY,
  'x-llm-d-slo-ttft-ms',
  'x-slo-ttft-ms',
  'x-llm-d-slo-tpot-ms',
  'x-slo-tpot-ms',
  'x-llm-d-video-fps',
  'x-llm-d-video-duration-seconds',
  'x-llm-d-video-resolution',
  'x-llm-d-audio-duration-seconds',
  DESTINATION_ENDPOINT,
  DESTINATION_ENDPOINT_SERVED,
  'x-llm-d-flow-queue-duration-ms',
  DROPPED_REASON,
  'content-length',
]);

/** First present header among names (current name first, then deprecated aliases). */
export function firstHeader(headers: Readonly<Record<string, string>>, names: readonly string[]): string | undefined {
  for (const n of names) {
    const v = headers[n];
    if (v !== undefined) return v;
  }
  return undefined;
}
