/**
 * KV-event and precise-index metrics. Names llm-d-router has (ebab687 `pkg/kvcache/metrics/collector.go`) are kept
 * with their labels: `llm_d_epp_kv_cache_events_messages_received_total{pod_identifier}`,
 * `_kv_cache_events_zmq_errors_total{pod_identifier, operation}`, `_kv_cache_events_active_subscribers`,
 * `_kv_cache_index_admissions_total`, `_kv_cache_index_evictions_total`, `_kv_cache_index_lookup_requests_total`,
 * `_kv_cache_index_lookup_hits_total`. pd-router adds what llm-d has no name for: events by type, messages and events
 * dropped by reason (decode errors among them), the index size, tokenization failures and precise-scoring fallbacks.
 * Registered once per registry, in every metrics family (llm-d-router emits them outside GAIE's families too).
 */
import { Counter, Gauge, type Registry } from 'prom-client';

const ALPHA = (help: string) => `[ALPHA] ${help}`;

export type DropReason =
  | 'malformed'
  | 'frames'
  | 'oversized'
  | 'unknown_event'
  | 'unknown_pod'
  | 'ambiguous_pod'
  | 'rate_limited'
  | 'unknown_parent'
  | 'extra_keys'
  | 'unavailable';

export class KvEventsMetrics {
  readonly messagesReceived: Counter<'pod_identifier'>;
  readonly zmqErrors: Counter<'pod_identifier' | 'operation'>;
  readonly activeSubscribers: Gauge;
  readonly admissions: Counter;
  readonly evictions: Counter;
  readonly lookupRequests: Counter;
  readonly lookupHits: Counter;
  /** pd-router: events applied, by type. */
  readonly events: Counter<'event_type'>;
  /** pd-router: messages or events dropped, by reason (`malformed` = a decode error). */
  readonly dropped: Counter<'reason'>;
  /** pd-router: (endpoint, block) entries in the precise index. */
  readonly indexEntries: Gauge;
  /** pd-router: evictions by reason. */
  readonly evictionsByReason: Counter<'reason'>;
  /** pd-router: tokenizations that failed, by plugin and reason. */
  readonly tokenizeFailures: Counter<'plugin_name' | 'reason'>;
  /** pd-router: requests a precise producer scored from its approximate fallback index, by reason. */
  readonly preciseFallbacks: Counter<'plugin_name' | 'reason'>;

  private constructor(registers: Registry[]) {
    const P = 'llm_d_epp_';
    this.messagesReceived = new Counter({
      name: `${P}kv_cache_events_messages_received_total`,
      help: ALPHA('Total number of messages received from ZMQ subscribers'),
      labelNames: ['pod_identifier'],
      registers,
    });
    this.zmqErrors = new Counter({
      name: `${P}kv_cache_events_zmq_errors_total`,
      help: ALPHA('Total number of ZMQ subscriber errors'),
      labelNames: ['pod_identifier', 'operation'],
      registers,
    });
    this.activeSubscribers = new Gauge({
      name: `${P}kv_cache_events_active_subscribers`,
      help: ALPHA('Number of ZMQ subscribers currently managed, including those retrying a failed connection'),
      registers,
    });
    this.admissions = new Counter({
      name: `${P}kv_cache_index_admissions_total`,
      help: ALPHA('Total number of KV-block admissions'),
      registers,
    });
    this.evictions = new Counter({
      name: `${P}kv_cache_index_evictions_total`,
      help: ALPHA('Total number of KV-block evictions'),
      registers,
    });
    this.lookupRequests = new Counter({
      name: `${P}kv_cache_index_lookup_requests_total`,
      help: ALPHA('Total number of lookup calls'),
      registers,
    });
    this.lookupHits = new Counter({
      name: `${P}kv_cache_index_lookup_hits_total`,
      help: ALPHA('Contiguous prefix blocks matched by the best pod per lookup'),
      registers,
    });
    this.events = new Counter({
      name: `${P}kv_cache_events_total`,
      help: 'KV-cache events applied to the precise index, by type (pd-router).',
      labelNames: ['event_type'],
      registers,
    });
    this.dropped = new Counter({
      name: `${P}kv_cache_events_dropped_total`,
      help: 'KV-event messages or events dropped, by reason: malformed (msgpack decode error), frames, oversized, unknown_event, unknown_pod, ambiguous_pod, rate_limited, unknown_parent, extra_keys, unavailable (pd-router).',
      labelNames: ['reason'],
      registers,
    });
    this.indexEntries = new Gauge({
      name: `${P}kv_cache_index_entries`,
      help: '(endpoint, block) entries in the precise prefix index, bounded by --kv-index-max-entries (pd-router).',
      registers,
    });
    this.evictionsByReason = new Counter({
      name: `${P}kv_cache_index_evictions_by_reason_total`,
      help: 'Precise index entries dropped, by reason: removed, capacity, cleared, endpoint-left, speculative-expired (pd-router).',
      labelNames: ['reason'],
      registers,
    });
    this.tokenizeFailures = new Counter({
      name: `${P}tokenization_failures_total`,
      help: 'Prompt tokenizations that failed (timeout, error, status, invalid), by plugin (pd-router).',
      labelNames: ['plugin_name', 'reason'],
      registers,
    });
    this.preciseFallbacks = new Counter({
      name: `${P}precise_prefix_cache_fallback_total`,
      help: 'Requests a precise prefix-cache producer scored from the approximate index instead (no tokens, events unavailable), by plugin and reason (pd-router).',
      labelNames: ['plugin_name', 'reason'],
      registers,
    });
    for (const r of ['malformed', 'unknown_event', 'unknown_pod', 'rate_limited', 'oversized'] as const)
      this.dropped.inc({ reason: r }, 0);
  }

  private static readonly byRegistry = new WeakMap<Registry, KvEventsMetrics>();

  static of(registry: Registry): KvEventsMetrics {
    let m = KvEventsMetrics.byRegistry.get(registry);
    if (!m) {
      m = new KvEventsMetrics([registry]);
      KvEventsMetrics.byRegistry.set(registry, m);
    }
    return m;
  }
}
