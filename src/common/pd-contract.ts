/**
 * The P/D wire contract, written once: the header names the EPP, the gateway, the routing sidecar and the model server
 * exchange (llm-d `pkg/common/routing/common.go`, `pkg/epp/metadata/consts.go`), and which of them steer routing.
 *
 * Every component imports its names from here. When the EPP and the sidecar each kept their own list, the lists
 * drifted: the sidecar read `x-prefiller-url` and the EPP never stripped it, so a client could pick the prefill target.
 */

/** Where Envoy routes the request (ORIGINAL_DST `http_header_name`); also the `envoy.lb` metadata key. */
export const DESTINATION_ENDPOINT = 'x-gateway-destination-endpoint';
export const DESTINATION_ENDPOINT_SERVED = 'x-gateway-destination-endpoint-served';
export const DESTINATION_METADATA_NAMESPACE = 'envoy.lb';
export const SUBSET_HINT_NAMESPACE = 'envoy.lb.subset_hint';
export const SUBSET_HINT_KEY = 'x-gateway-destination-endpoint-subset';
export const DROPPED_REASON = 'x-llm-d-request-dropped-reason';

/** The decode sidecar runs remote prefill on this `host:port` (a comma list: several candidates). */
export const PREFILLER_HOST_PORT = 'x-prefiller-host-port';
/** The prefill target's older name, still read by the sidecar when `x-prefiller-host-port` is absent. */
export const PREFILLER_URL = 'x-prefiller-url';
/** E/PD: comma-joined encoder `host:port`s. */
export const ENCODER_HOSTS_PORTS = 'x-encoder-hosts-ports';
/** Deprecated pd-profile-handler's `primaryPort` mode: the data-parallel rank's `host:port` inside the pod. */
export const DATA_PARALLEL_HOST_PORT = 'x-data-parallel-host-port';
/** vLLM pins a request to this data-parallel rank (llm-d's sidecar sets it on MoRI-IO legs). */
export const DATA_PARALLEL_RANK = 'x-data-parallel-rank';
/** The pod holding the most cached prefix blocks, for the P2P (offloading) connector to pull from. */
export const KV_CACHE_SOURCE_HOST_PORT = 'x-kv-cache-source-host-port';

/**
 * Every request header that the gateway, the sidecar or the model server interprets as a routing instruction: where
 * the request goes, where its prefill, encoder or KV pull goes, and which data-parallel rank serves it. A client must
 * never set one: the EPP removes the client's copies on every decision (or overwrites them with its own), the gateway
 * strips them when it skips a failed EPP, and the sidecar never forwards them to a model server.
 */
export const ROUTING_HEADERS: readonly string[] = Object.freeze([
  DESTINATION_ENDPOINT,
  PREFILLER_HOST_PORT,
  PREFILLER_URL,
  ENCODER_HOSTS_PORTS,
  DATA_PARALLEL_HOST_PORT,
  DATA_PARALLEL_RANK,
  KV_CACHE_SOURCE_HOST_PORT,
]);

/** {@link ROUTING_HEADERS} as a set, for per-header lookups on the hot path. */
export const ROUTING_HEADER_SET: ReadonlySet<string> = new Set(ROUTING_HEADERS);

/** True when `name` (lower case) is a routing header. */
export function isRoutingHeader(name: string): boolean {
  return ROUTING_HEADER_SET.has(name);
}

/** Request headers that carry the inference objective, current name first. */
export const OBJECTIVE_HEADERS: readonly string[] = ['x-llm-d-inference-objective', 'x-gateway-inference-objective'];
/** Request headers that ask for a model-name rewrite, current name first. */
export const MODEL_REWRITE_HEADERS: readonly string[] = ['x-llm-d-model-name-rewrite', 'x-gateway-model-name-rewrite'];
/** Request headers that name the flow-control fairness id, current name first. */
export const FAIRNESS_ID_HEADERS: readonly string[] = ['x-llm-d-inference-fairness-id', 'x-gateway-inference-fairness-id'];

/** The request id both legs and every log line carry. */
export const REQUEST_ID_HEADER = 'x-request-id';
