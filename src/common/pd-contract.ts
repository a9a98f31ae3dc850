/**
 * The P/D wire contract, written once: the header names the EPP, the gateway, the routing sidecar and the model server
 * exchange (llm-d `pkg/common/routing/common.go`, `pkg/epp/metadata/consts.go`), and which of them steer routing.
 *
 * Every component imports its names from here. When the EPP and the sidecar each kept their own list, the lists
 * drifted: the sidecar read `x-prefiller-url` and the EPP never stripped it, so a client could pick the prefill target.
 */

/** Where Envoy routes the request (ORIGINAL_DST `http_header_name`); also the `envoy.lb` metadata key. */
export const DESTINATION_ENDPOINT = 'x-gateway-destination-endpoint';
/** Set by Envoy on the answer: the endpoint that served the request. */
export const DESTINATION_ENDPOINT_SERVED = 'x-gateway-destination-endpoint-served';
/** The dynamic metadata namespace of the destination, read by Envoy's ORIGINAL_DST cluster. */
export const DESTINATION_METADATA_NAMESPACE = 'envoy.lb';
/** The metadata namespace of a subset hint: the endpoints the gateway allows for this request. */
export const SUBSET_HINT_NAMESPACE = 'envoy.lb.subset_hint';
/** The key of the subset hint in its namespace. */
export const SUBSET_HINT_KEY = 'x-gateway-destination-endpoint-subset';
/** Why the EPP dropped a request (with its 503). */
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
export const FAIRNESS_ID_HEADERS: readonly string[] = [
  'x-llm-d-inference-fairness-id',
  'x-gateway-inference-fairness-id',
];

/** The request id both legs and every log line carry. */
export const REQUEST_ID_HEADER = 'x-request-id';

/*
 * The body fields of the P/D handshake (llm-d `pkg/common/request/constants.go`): vLLM reads `kv_transfer_params` at
 * the body's root (every OpenAI-style API) and, for the generate API, in `sampling_params.extra_args`.
 */

/** The body field carrying NIXL's KV-transfer handshake, on the prefill leg, its answer and the decode leg. */
export const KV_TRANSFER_PARAMS = 'kv_transfer_params';
/** E/PD (`--ec-connector ec-nixl`): where each multimodal item's encoder cache is, from the encoder to the prefiller. */
export const EC_TRANSFER_PARAMS = 'ec_transfer_params';
/** The generate API's container of `extra_args`, where vLLM also reads `kv_transfer_params`. */
export const SAMPLING_PARAMS = 'sampling_params';
/** The field inside `sampling_params` that holds `kv_transfer_params` for the generate API. */
export const EXTRA_ARGS = 'extra_args';

/** `kv_transfer_params` of the prefill leg: compute the prompt's KV blocks, keep them for a remote decoder. */
export interface PrefillLegKvParams {
  readonly do_remote_decode: true;
  readonly do_remote_prefill: false;
  readonly remote_engine_id: null;
  readonly remote_block_ids: null;
  readonly remote_host: null;
  readonly remote_port: null;
}

/** The one value of {@link PrefillLegKvParams}: the sidecar sends it, the simulator recognises it. */
export const PREFILL_LEG_KV_PARAMS: PrefillLegKvParams = Object.freeze({
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
});

/**
 * `kv_transfer_params` of a prefiller's answer (vLLM's NIXL connector): where the decoder pulls the blocks from. The
 * sidecar copies it verbatim into the decode leg, so a decoder sees `do_remote_prefill: true`.
 */
export interface PrefillAnswerKvParams {
  readonly do_remote_decode: false;
  readonly do_remote_prefill: true;
  readonly remote_engine_id: string;
  readonly remote_block_ids: readonly number[];
  readonly remote_host: string;
  readonly remote_port: number;
  readonly tp_size: number;
  readonly remote_request_id?: string;
}

/*
 * The other connectors' kv_transfer_params fields (llm-d-router ebab687 pkg/sidecar/proxy/proxy.go).
 * Mooncake: both legs share a transfer_id; the decode leg names the prefiller's bootstrap server and engine.
 * OffloadingConnector P2P: the role is the nesting key, named for the remote party it describes.
 */
/** Mooncake: the id both legs of one transfer carry ("xfer-<uuid>"). */
export const TRANSFER_ID = 'transfer_id';
/** Mooncake decode leg: `http://<prefill host>:<bootstrap port>`. */
export const REMOTE_BOOTSTRAP_ADDR = 'remote_bootstrap_addr';
/** Offloading prefill leg: `{kv_request_id}`, the decoder that will pull the blocks. */
export const REMOTE_DECODER = 'remote_decoder';
/** Offloading decode leg: `{kv_request_id, remote_host, remote_port}`, the prefiller's P2P tier to pull from. */
export const REMOTE_PREFILLER = 'remote_prefiller';
/** A cached-prefix pull from a peer's P2P tier: `{kv_request_id, remote_host, remote_port}`. */
export const REMOTE_KV_SOURCE = 'remote_kv_source';
/** The id of one P2P transfer. */
export const KV_REQUEST_ID = 'kv_request_id';

/** Whether `kv_transfer_params` make a request an OffloadingConnector prefill leg (it stores KV for a decoder). */
export function isOffloadingPrefillLeg(params: Readonly<Record<string, unknown>> | undefined): boolean {
  const v = params?.[REMOTE_DECODER];
  return typeof v === 'object' && v !== null;
}

/** Whether `kv_transfer_params` make a request an OffloadingConnector decode leg (it pulls KV from a prefiller). */
export function isOffloadingDecodeLeg(params: Readonly<Record<string, unknown>> | undefined): boolean {
  const v = params?.[REMOTE_PREFILLER];
  return typeof v === 'object' && v !== null;
}

/** Whether a request's `kv_transfer_params` make it a prefill leg (prefill only, no tokens for the client). */
export function isPrefillLeg(params: Readonly<Record<string, unknown>> | undefined): boolean {
  return params?.do_remote_decode === true;
}

/** Whether a request's `kv_transfer_params` make it a decode leg (its prompt's KV blocks come from a prefiller). */
export function isDecodeLeg(params: Readonly<Record<string, unknown>> | undefined): boolean {
  return !isPrefillLeg(params) && params?.do_remote_prefill === true;
}

/** SGLang's counterpart of `kv_transfer_params`: both legs carry the prefill engine's bootstrap server and a room. */
export const SGLANG_BOOTSTRAP_FIELDS = ['bootstrap_host', 'bootstrap_port', 'bootstrap_room'] as const;
