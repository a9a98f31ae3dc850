/** The gateway's metrics: what a proxy operator watches (requests by status, EPP failures, fail-open use, latencies). */
import { Counter, Histogram } from 'prom-client';
import { LATENCY_BUCKETS_SECONDS, OVERHEAD_BUCKETS_SECONDS, createRegistry, type Registry } from '../common/index.js';

export class GatewayMetrics {
  readonly registry: Registry = createRegistry();
  readonly requests = new Counter({
    name: 'pd_router_gateway_requests_total',
    help: 'Requests answered, by HTTP status (0: the client left).',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly eppFailures = new Counter({
    name: 'pd_router_gateway_epp_failures_total',
    help: 'ext_proc failures by stage (connect, stream, request headers/body, response headers/body).',
    labelNames: ['stage'],
    registers: [this.registry],
  });
  readonly eppRetries = new Counter({
    name: 'pd_router_gateway_epp_retries_total',
    help: 'Requests asked of another --epp replica, by why the previous one did not route it (unavailable, not_leader).',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly failOpen = new Counter({
    name: 'pd_router_gateway_fail_open_total',
    help: 'Requests (or responses) served without the EPP because --failure-mode-allow is set.',
    registers: [this.registry],
  });
  readonly rejectedHeaderMutations = new Counter({
    name: 'pd_router_gateway_rejected_header_mutations_total',
    help: "ext_proc header changes ignored by Envoy's default mutation rules (Envoy's rejected_header_mutations): host, :authority, :method, :scheme, x-envoy-*, removals of pseudo-headers.",
    registers: [this.registry],
  });
  readonly eppDecision: Histogram<never> = new Histogram({
    name: 'pd_router_gateway_epp_decision_seconds',
    help: 'From the request arriving to the EPP\'s routing decision (includes reading the body).',
    buckets: OVERHEAD_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  readonly upstreamTtfb: Histogram<never> = new Histogram({
    name: 'pd_router_gateway_upstream_ttfb_seconds',
    help: 'From sending the request upstream to its response headers.',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [this.registry],
  });
}
