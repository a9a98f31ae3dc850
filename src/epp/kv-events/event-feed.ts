/**
 * From a received KV-event message to the precise index (llm-d's kvevents pool): checks the frames and size, limits
 * each source's rate, decodes the batch, finds the pool endpoint it belongs to, and applies its events in order.
 * Nothing a publisher sends can throw out of here: every rejected message or event is counted by reason and dropped.
 *
 * Which endpoint a message is for:
 * - from a per-endpoint connection (`discoverPods`): that endpoint, whatever the topic says (as llm-d);
 * - from the bound socket (`zmqEndpoint`): the topic's `<pod-id>`, `ip:port` of an endpoint, or an `ip` that one
 *   endpoint has; when several endpoints share the IP (data-parallel ranks), the batch's `data_parallel_rank` picks
 *   `<pod>-rank-<r>`. A pod that is not in the pool is dropped (`unknown_pod`).
 *
 * BlockStored: request keys are computed from the event's token ids, chained from the request key of its parent
 * (looked up through the parent's engine hash) or from the model's start (the topic's model, or the event's LoRA
 * name). An event whose parent is unknown, or whose blocks carry extra hash inputs (multimodal, LoRA, cache salt)
 * the EPP cannot reproduce, is dropped so it can never produce a false match. A sequence number going back means the
 * engine restarted: its endpoint's entries are cleared first.
 */
import type { Logger } from 'pino';
import {
  decodeEventBatch,
  KvEventDecodeError,
  parseTopic,
  type BlockKeyHasher,
  type DecodeLimits,
  type KvEventBatch,
} from '../../common/kv-events/index.js';
import type { Endpoint } from '../framework/types.js';
import type { DropReason, KvEventsMetrics } from './metrics.js';
import { requestKey, tierBit, type PreciseIndex } from './precise-index.js';

export interface FeedLimits extends DecodeLimits {
  /** Largest message (all frames) accepted. */
  maxMessageBytes: number;
  /** Messages per second one source may send (token bucket, burst = one second's worth); beyond it they are dropped. */
  maxMessagesPerSecond: number;
}

/** Where a message came from: an endpoint's own connection, or the bound socket (identity from the topic). */
export type MessageSource = { kind: 'endpoint'; endpoint: Endpoint } | { kind: 'bound' };

export interface EndpointLookup {
  all(): readonly Endpoint[];
}

const RANK = /-rank-(\d+)$/;

export function rankOf(endpoint: Endpoint): number {
  const m = RANK.exec(endpoint.name);
  return m ? Number(m[1]) : 0;
}

interface SourceState {
  tokens: number;
  at: number;
  lastSeq: bigint | undefined;
}

export class EventFeed {
  private readonly sources = new Map<string, SourceState>();

  constructor(
    private readonly index: PreciseIndex,
    private readonly hasher: BlockKeyHasher,
    private readonly pool: EndpointLookup,
    private readonly limits: FeedLimits,
    private readonly metrics: KvEventsMetrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Forget a source's rate and sequence state (its endpoint left). */
  forgetSource(key: string): void {
    this.sources.delete(key);
  }

  /** One ZMQ message (its frames). Returns the number of events applied. */
  receive(source: MessageSource, frames: readonly Buffer[]): number {
    const label = source.kind === 'endpoint' ? source.endpoint.id : 'local-subscriber';
    this.metrics.messagesReceived.inc({ pod_identifier: label });
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    if (bytes > this.limits.maxMessageBytes) return this.drop('oversized', label, `${bytes} bytes`);
    if (frames.length !== 3 || frames[1].length !== 8) return this.drop('frames', label, `${frames.length} frames`);
    const topic = frames[0].toString('utf8');
    const seq = frames[1].readBigUInt64BE(0);
    const { podId, model } = parseTopic(topic);
    const sourceKey = source.kind === 'endpoint' ? `endpoint/${source.endpoint.id}` : `topic/${podId}`;
    const state = this.sourceState(sourceKey);
    if (!this.admit(state)) return this.drop('rate_limited', label);
    let batch: KvEventBatch;
    try {
      batch = decodeEventBatch(frames[2], this.limits);
    } catch (e) {
      if (e instanceof KvEventDecodeError) return this.drop('malformed', label, e.message);
      throw e;
    }
    const endpoint = source.kind === 'endpoint' ? source.endpoint : this.resolve(podId, batch.dataParallelRank, label);
    if (!endpoint) return 0;
    if (state.lastSeq !== undefined && seq < state.lastSeq) {
      this.logger.info(
        { endpoint: endpoint.id, lastSeq: String(state.lastSeq), seq: String(seq) },
        'KV-event sequence went back (engine restart?); clearing its blocks',
      );
      this.index.clear(endpoint.id);
    }
    state.lastSeq = seq;
    return this.apply(endpoint.id, model, batch);
  }

  private sourceState(key: string): SourceState {
    let s = this.sources.get(key);
    if (!s) {
      // Bounded: one entry per endpoint or per topic pod id seen; topic entries of unknown pods are not kept.
      if (this.sources.size >= 4096) this.sources.clear();
      s = { tokens: this.limits.maxMessagesPerSecond, at: this.now(), lastSeq: undefined };
      this.sources.set(key, s);
    }
    return s;
  }

  private admit(state: SourceState): boolean {
    const rate = this.limits.maxMessagesPerSecond;
    if (rate <= 0) return true;
    const now = this.now();
    state.tokens = Math.min(rate, state.tokens + ((now - state.at) / 1000) * rate);
    state.at = now;
    if (state.tokens < 1) return false;
    state.tokens -= 1;
    return true;
  }

  private resolve(podId: string, rank: number | undefined, label: string): Endpoint | undefined {
    const all = this.pool.all();
    const exact = all.find((endpoint) => endpoint.hostPort === podId);
    if (exact) return exact;
    const byIp = all.filter((endpoint) => endpoint.address === podId);
    if (byIp.length === 1) return byIp[0];
    if (byIp.length > 1) {
      const ranked = byIp.filter((endpoint) => rankOf(endpoint) === (rank ?? 0));
      if (ranked.length === 1) return ranked[0];
      this.drop('ambiguous_pod', label, podId);
      return undefined;
    }
    this.sources.delete(`topic/${podId}`);
    this.drop('unknown_pod', label, podId);
    return undefined;
  }

  private drop(reason: DropReason, label: string, detail?: string): 0 {
    this.metrics.dropped.inc({ reason });
    if (this.logger.isLevelEnabled('debug'))
      this.logger.debug({ reason, source: label, detail }, 'KV-event message dropped');
    return 0;
  }

  /** Applies a decoded batch to one endpoint's entries, in order. */
  apply(endpointId: string, topicModel: string, batch: KvEventBatch): number {
    let applied = 0;
    for (const ev of batch.events) {
      switch (ev.type) {
        case 'BlockStored': {
          if (ev.extraKeys?.some((k) => k !== null && k.length > 0)) {
            this.drop('extra_keys', endpointId);
            continue;
          }
          let parent;
          if (ev.parentBlockHash) {
            parent = this.index.parentKey(endpointId, ev.parentBlockHash);
            if (!parent) {
              this.drop('unknown_parent', endpointId);
              continue;
            }
          }
          const model = ev.loraName || topicModel;
          const keys = this.hasher.keys(model, ev.tokenIds, parent).map(requestKey);
          this.index.store(endpointId, ev.blockHashes, keys, tierBit(ev.medium));
          break;
        }
        case 'BlockRemoved':
          this.index.remove(endpointId, ev.blockHashes, tierBit(ev.medium));
          break;
        case 'AllBlocksCleared':
          this.index.clear(endpointId);
          break;
        default:
          this.drop('unknown_event', endpointId, ev.tag);
          continue;
      }
      this.metrics.events.inc({ event_type: ev.type });
      applied++;
    }
    this.metrics.indexEntries.set(this.index.size);
    return applied;
  }
}
