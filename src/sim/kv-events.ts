/**
 * The simulator's KV-event publisher: vLLM's ZmqEventPublisher, fed by the simulated KV cache (kv-cache.ts). Each
 * message is `[topic, sequence (8 bytes, big-endian), msgpack KVEventBatch]`, exactly as vLLM sends it; events are
 * batched per event-loop turn (vLLM batches per engine step) up to `batchSize`, and the batch carries the
 * data-parallel rank.
 *
 * Configured either way:
 * - vLLM's `--kv-events-config '{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","topic":"kv@..."}'`:
 *   the endpoint is bound when it has `*`, `::`, or is ipc/inproc, else connected to (vLLM's rule), its port offset by
 *   the data-parallel rank; `topic` (vLLM's default "") and `hwm` are vLLM's; events are array_like.
 * - llm-d-inference-sim's `--zmq-endpoint tcp://<epp>:5557` (always connected to), topic `kv@<pod-ip>@<model>`,
 *   `--event-batch-size`, `--use-vllm-map-event-format` (map-encoded events), `--hash-seed`.
 *
 * Bounded: at most `maxQueue` events wait to be sent (vLLM's max_queue_size); beyond, events are dropped and
 * counted. libzmq drops messages beyond the send high-water mark when no subscriber keeps up (PUB never blocks).
 */
import type { Logger } from 'pino';
import { Publisher } from 'zeromq';
import {
  encodeEventBatch,
  encodeSequence,
  EVENT_ALL_BLOCKS_CLEARED,
  EVENT_BLOCK_REMOVED,
  EVENT_BLOCK_STORED,
  type EventFormat,
  type KvCacheEvent,
  type U64,
} from '../common/kv-events/index.js';
import type { KvCacheEventSink } from './kv-cache.js';

export interface KvEventPublisherSettings {
  endpoint: string;
  bind: boolean;
  topic: string;
  batchSize: number;
  format: EventFormat;
  maxQueue: number;
  sendHighWaterMark: number;
  blockSize: number;
  medium: string;
}

type Publishable = Exclude<KvCacheEvent, { type: 'unknown' }>;

/** vLLM's --kv-events-config (the fields the publisher reads). */
export interface VllmKvEventsConfig {
  enable_kv_cache_events?: boolean;
  publisher?: string;
  endpoint?: string;
  replay_endpoint?: string | null;
  buffer_steps?: number;
  hwm?: number;
  max_queue_size?: number;
  topic?: string;
}

/** vLLM's heuristic: bind stable endpoints (wildcards, ipc, inproc), connect to volatile ones. */
export function vllmBinds(endpoint: string): boolean {
  return (
    endpoint.includes('*') ||
    endpoint.includes('::') ||
    endpoint.startsWith('ipc://') ||
    endpoint.startsWith('inproc://')
  );
}

/** vLLM's offset_endpoint_port: rank r publishes on port + r (inproc: a `_dp<r>` suffix). */
export function offsetEndpointPort(endpoint: string, rank: number): string {
  if (rank === 0) return endpoint;
  if (endpoint.includes('inproc')) return `${endpoint}_dp${rank}`;
  const i = endpoint.lastIndexOf(':');
  if (!endpoint.includes('tcp') || i < 0) return endpoint;
  return `${endpoint.slice(0, i)}:${Number(endpoint.slice(i + 1)) + rank}`;
}

export class KvEventPublisher implements KvCacheEventSink {
  private readonly socket: Publisher;
  private queue: Publishable[] = [];
  private seq = 0n;
  private flushScheduled = false;
  private sending: Promise<void> = Promise.resolve();
  private closed = false;
  /** Events dropped because the queue was full. */
  dropped = 0;
  /** Batches handed to libzmq. */
  published = 0;
  boundEndpoint: string | undefined;

  constructor(
    readonly settings: KvEventPublisherSettings,
    readonly rank: number,
    private readonly logger: Logger,
  ) {
    this.socket = new Publisher({ sendHighWaterMark: settings.sendHighWaterMark, linger: 0 });
  }

  async start(): Promise<void> {
    if (this.settings.bind) {
      await this.socket.bind(this.settings.endpoint.replace(/:0$/, ':*'));
      this.boundEndpoint = this.socket.lastEndpoint ?? this.settings.endpoint;
    } else this.socket.connect(this.settings.endpoint);
    this.logger.info(
      {
        endpoint: this.boundEndpoint ?? this.settings.endpoint,
        bind: this.settings.bind,
        topic: this.settings.topic,
        rank: this.rank,
      },
      'publishing KV events',
    );
  }

  stored(blockHashes: U64[], parent: U64 | undefined, tokenIds: number[]): void {
    this.push({
      type: EVENT_BLOCK_STORED,
      blockHashes,
      parentBlockHash: parent,
      tokenIds: Uint32Array.from(tokenIds),
      blockSize: this.settings.blockSize,
      loraId: undefined,
      medium: this.settings.medium,
      loraName: undefined,
      extraKeys: undefined,
      groupIdx: undefined,
    });
  }

  removed(blockHashes: U64[]): void {
    this.push({ type: EVENT_BLOCK_REMOVED, blockHashes, medium: this.settings.medium, groupIdx: undefined });
  }

  cleared(): void {
    this.push({ type: EVENT_ALL_BLOCKS_CLEARED });
  }

  private push(event: Publishable): void {
    if (this.closed) return;
    if (this.queue.length >= this.settings.maxQueue) {
      this.dropped++;
      return;
    }
    this.queue.push(event);
    if (this.queue.length >= this.settings.batchSize) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends the queued events as batches of at most batchSize, in order. */
  private flush(): void {
    this.flushScheduled = false;
    while (this.queue.length > 0 && !this.closed) {
      const events = this.queue.splice(0, this.settings.batchSize);
      const payload = encodeEventBatch(
        { ts: Date.now() / 1000, events, dataParallelRank: this.rank },
        this.settings.format,
      );
      const frames = [
        Buffer.from(this.settings.topic, 'utf8'),
        encodeSequence(this.seq++),
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      ];
      // zeromq allows one send in flight per socket: sends are chained.
      this.sending = this.sending
        .then(() => (this.closed ? undefined : this.socket.send(frames)))
        .then(
          () => {
            this.published++;
          },
          (err: unknown) => {
            if (!this.closed) this.logger.warn({ err: (err as Error).message }, 'KV-event batch not sent');
          },
        );
    }
  }

  /** Resolves when every batch queued so far is handed to libzmq. */
  async drain(): Promise<void> {
    this.flush();
    await this.sending;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.socket.close();
  }
}
