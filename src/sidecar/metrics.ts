/**
 * The sidecar's own metrics (upstream has none for requests): traffic by path, connector and outcome; how many
 * requests were disaggregated; the latency split (prefill, decode time to first byte, true TTFT, the sidecar's own
 * overhead); retries, fallbacks, timeouts, SSRF denials and client aborts.
 */
import { Counter } from 'prom-client';
import {
  BoundCounter,
  BoundGauge,
  BoundHistogram,
  type GaugeChild,
  LATENCY_BUCKETS_SECONDS,
  OVERHEAD_BUCKETS_SECONDS,
  createRegistry,
  type Registry,
} from '../common/index.js';

export type Outcome = 'success' | 'client_error' | 'upstream_error' | 'timeout' | 'aborted' | 'denied';
/** How an inference request was served; `passthrough` (any other path) is never a label value. */
export type Mode = 'disaggregated' | 'local' | 'fallback_local' | 'passthrough';

/** The sidecar's metrics: requests by outcome, modes, the latency split, retries, fallbacks, timeouts, denials. */
export class SidecarMetrics {
  readonly registry: Registry = createRegistry();
  // Recorded on every request (the EPP's scrapes of vLLM's /metrics through the sidecar included): bound metrics,
  // the same exposition as prom-client's without its per-call label hashing.
  readonly requests: BoundCounter<'path' | 'connector' | 'outcome'>;
  readonly passthroughRequests: BoundCounter<'outcome'>;
  readonly modes: BoundCounter<'connector' | 'mode'>;
  readonly prefillDuration: BoundHistogram<'connector' | 'outcome'>;
  readonly decodeTtfb: BoundHistogram<'mode'>;
  readonly ttft: BoundHistogram<'mode'>;
  readonly overhead: BoundHistogram<'mode'>;
  readonly prefillRetries: Counter<'connector' | 'reason'>;
  readonly fallbacks: Counter<'reason'>;
  readonly timeouts: Counter<'stage'>;
  readonly ssrfDenied: Counter<never>;
  readonly clientAborts: Counter<'stage'>;
  readonly inflight: BoundGauge<never>;
  /** The inflight gauge's one series, as the request path moves it. */
  readonly inflightSeries: GaugeChild;
  readonly rewriteSkipped: Counter<'reason'>;

  constructor() {
    const registers = [this.registry];
    this.requests = new BoundCounter({
      name: 'pd_router_sidecar_requests_total',
      help: 'Inference requests (the P/D routes) handled, by path, connector and outcome (success, client_error, upstream_error, timeout, aborted, denied).',
      labelNames: ['path', 'connector', 'outcome'],
      registers,
    });
    this.passthroughRequests = new BoundCounter({
      name: 'pd_router_sidecar_passthrough_requests_total',
      help: "Requests relayed to the local vLLM unchanged (every other path: vLLM's /metrics, /v1/models, ...), by outcome; not in the request and latency metrics.",
      labelNames: ['outcome'],
      registers,
    });
    this.modes = new BoundCounter({
      name: 'pd_router_sidecar_pd_requests_total',
      help: 'Inference requests by how they were served: disaggregated, local (no prefill header), fallback_local (prefill failed, local prefill).',
      labelNames: ['connector', 'mode'],
      registers,
    });
    this.prefillDuration = new BoundHistogram({
      name: 'pd_router_sidecar_prefill_duration_seconds',
      help: 'Time from sending the prefill leg to its complete answer, including retries.',
      labelNames: ['connector', 'outcome'],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.decodeTtfb = new BoundHistogram({
      name: 'pd_router_sidecar_decode_ttfb_seconds',
      help: 'Time from sending the decode leg to its first body byte (KV transfer plus first decode step on a P/D request).',
      labelNames: ['mode'],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.ttft = new BoundHistogram({
      name: 'pd_router_sidecar_ttft_seconds',
      help: 'True time to first token as the client sees it: request arrival to the first decode byte written.',
      labelNames: ['mode'],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.overhead = new BoundHistogram({
      name: 'pd_router_sidecar_overhead_seconds',
      help: "The sidecar's own share of TTFT: time to first byte minus the prefill and decode upstream waits.",
      labelNames: ['mode'],
      buckets: OVERHEAD_BUCKETS_SECONDS,
      registers,
    });
    this.prefillRetries = new Counter({
      name: 'pd_router_sidecar_prefill_retries_total',
      help: 'Prefill retries, by reason (status code, connect_error, timeout).',
      labelNames: ['connector', 'reason'],
      registers,
    });
    this.fallbacks = new Counter({
      name: 'pd_router_sidecar_prefill_fallbacks_total',
      help: 'Requests prefilled on the local vLLM after a prefill failure (--prefill-failure-policy=local), by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.timeouts = new Counter({
      name: 'pd_router_sidecar_timeouts_total',
      help: 'Expired deadlines by stage: encode, prefill, decode_first_byte, decode_idle, request_body.',
      labelNames: ['stage'],
      registers,
    });
    this.ssrfDenied = new Counter({
      name: 'pd_router_sidecar_ssrf_denied_total',
      help: 'Prefill targets refused by SSRF protection.',
      registers,
    });
    this.clientAborts = new Counter({
      name: 'pd_router_sidecar_client_aborts_total',
      help: 'Clients that disconnected before the answer was complete, by stage (encode, prefill, decode); every upstream leg still running is aborted.',
      labelNames: ['stage'],
      registers,
    });
    this.inflight = new BoundGauge({
      name: 'pd_router_sidecar_inflight_requests',
      help: 'Inference requests in progress.',
      labelNames: [],
      registers,
    });
    this.inflightSeries = this.inflight.child({});
    this.rewriteSkipped = new Counter({
      name: 'pd_router_sidecar_cached_tokens_rewrite_skipped_total',
      help: 'Decode answers whose cached_tokens could not be rewritten (body over --max-rewrite-body-size, oversized SSE line).',
      labelNames: ['reason'],
      registers,
    });
  }
}
