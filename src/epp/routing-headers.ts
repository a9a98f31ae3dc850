/**
 * Header and metadata names of the Endpoint Picker Protocol and llm-d's P/D routing contract
 * (`pkg/epp/metadata/consts.go`, `pkg/common/routing/common.go`).
 */

import type { SchedulingResult } from './framework/types.js';

/** Where Envoy routes the request (ORIGINAL_DST `http_header_name`); also the `envoy.lb` metadata key. */
export const DESTINATION_ENDPOINT = 'x-gateway-destination-endpoint';
export const DESTINATION_ENDPOINT_SERVED = 'x-gateway-destination-endpoint-served';
export const DESTINATION_METADATA_NAMESPACE = 'envoy.lb';
export const SUBSET_HINT_NAMESPACE = 'envoy.lb.subset_hint';
export const SUBSET_HINT_KEY = 'x-gateway-destination-endpoint-subset';
export const DROPPED_REASON = 'x-llm-d-request-dropped-reason';

/** The decode sidecar runs remote prefill on this `host:port`. */
export const PREFILLER_HOST_PORT = 'x-prefiller-host-port';
/** E/PD: comma-joined encoder `host:port`s. */
export const ENCODER_HOSTS_PORTS = 'x-encoder-hosts-ports';
/** Deprecated pd-profile-handler's `primaryPort` mode. */
export const DATA_PARALLEL_HOST_PORT = 'x-data-parallel-host-port';

/**
 * Headers that steer routing. A client must never set them: every decision removes the client's copies (or overwrites
 * them with the EPP's own value), so nobody can point the sidecar at an arbitrary host.
 */
export const ROUTING_HEADERS = [DESTINATION_ENDPOINT, PREFILLER_HOST_PORT, ENCODER_HOSTS_PORTS, DATA_PARALLEL_HOST_PORT] as const;

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
  if (encoders.length > 0) headers[ENCODER_HOSTS_PORTS] = encoders.map((e) => e.hostPort).join(',');
}

export const OBJECTIVE_HEADERS = ['x-llm-d-inference-objective', 'x-gateway-inference-objective'];
export const MODEL_REWRITE_HEADERS = ['x-llm-d-model-name-rewrite', 'x-gateway-model-name-rewrite'];
export const FAIRNESS_ID_HEADERS = ['x-llm-d-inference-fairness-id', 'x-gateway-inference-fairness-id'];

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
