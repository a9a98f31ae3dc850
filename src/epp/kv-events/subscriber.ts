/**
 * The EPP's ZMQ SUB sockets for vLLM KV events (llm-d's kvevents subscriber manager), in llm-d's two modes:
 *
 * - global socket (`kvEventsConfig.zmqEndpoint`, e.g. `tcp://0.0.0.0:5557`): the EPP binds one SUB socket and every
 *   model server connects its PUB to it (vLLM `--kv-events-config '{"endpoint":"tcp://<epp>:5557",...}'`,
 *   llm-d-inference-sim `--zmq-endpoint`); a message's endpoint comes from its topic;
 * - per endpoint (`discoverPods`, upstream's default): the EPP connects one SUB socket to each pool endpoint's
 *   `tcp://<ip>:<socketPort + rank>`, where vLLM binds `tcp://*:5557`; the socket is the identity. Endpoints leaving
 *   the pool are disconnected at once.
 *
 * Every socket subscribes to `topicFilter` (`kv@`), keeps at most `receiveHighWaterMark` messages queued (libzmq
 * drops beyond), refuses messages over `maxMessageBytes` (libzmq disconnects such a peer), and is read in a loop that
 * yields to the event loop every few messages, so a flooding publisher cannot starve request handling.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Subscriber } from 'zeromq';
import type { Endpoint } from '../framework/types.js';
import { rankOf, type EventFeed } from './event-feed.js';
import type { KvEventsMetrics } from './metrics.js';

export interface SubscriberSettings {
  /** Bind address of the global socket; '' = none. */
  zmqEndpoint: string;
  topicFilter: string;
  discoverPods: boolean;
  /** Per-endpoint mode: the port vLLM publishes on (rank r: socketPort + r). */
  socketPort: number;
  receiveHighWaterMark: number;
  maxMessageBytes: number;
}

/** Messages handled before yielding to the event loop. */
const BATCH = 32;

/** `tcp://0.0.0.0:0` → `tcp://0.0.0.0:*`: libzmq's spelling of "any free port". */
function bindAddress(endpoint: string): string {
  return endpoint.replace(/:0$/, ':*');
}

export class KvEventSubscriber {
  private bound: Subscriber | undefined;
  private readonly perEndpoint = new Map<string, Subscriber>();
  private closed = false;
  /** The address the global socket is bound to (its real port when 0 was asked). */
  boundEndpoint: string | undefined;

  constructor(
    private readonly settings: SubscriberSettings,
    private readonly feed: EventFeed,
    private readonly metrics: KvEventsMetrics,
    private readonly logger: Logger,
  ) {}

  private socket(): Subscriber {
    return new Subscriber({
      receiveHighWaterMark: this.settings.receiveHighWaterMark,
      maxMessageSize: this.settings.maxMessageBytes,
      linger: 0,
    });
  }

  /** Binds the global socket when configured; rejects with the reason when the address cannot be bound. */
  async bind(): Promise<void> {
    if (!this.settings.zmqEndpoint || this.bound || this.closed) return;
    const s = this.socket();
    try {
      await s.bind(bindAddress(this.settings.zmqEndpoint));
    } catch (e) {
      s.close();
      this.metrics.zmqErrors.inc({ pod_identifier: 'local-subscriber', operation: 'bind' });
      throw new Error(`cannot bind the KV-events socket ${this.settings.zmqEndpoint}: ${(e as Error).message}`);
    }
    s.subscribe(this.settings.topicFilter);
    this.bound = s;
    this.boundEndpoint = s.lastEndpoint ?? this.settings.zmqEndpoint;
    this.updateGauge();
    this.logger.info(
      { endpoint: this.boundEndpoint, topicFilter: this.settings.topicFilter },
      'KV-events socket bound',
    );
    void this.read(s, { kind: 'bound' }, 'local-subscriber');
  }

  /** Per-endpoint mode: subscribe to an endpoint that joined the pool. */
  endpointAdded(endpoint: Endpoint): void {
    if (!this.settings.discoverPods || this.closed || this.perEndpoint.has(endpoint.id)) return;
    const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
    const address = `tcp://${host}:${this.settings.socketPort + rankOf(endpoint)}`;
    const s = this.socket();
    try {
      s.connect(address);
      s.subscribe(this.settings.topicFilter);
    } catch (err) {
      s.close();
      this.metrics.zmqErrors.inc({ pod_identifier: endpoint.id, operation: 'connect' });
      this.logger.warn(
        { endpoint: endpoint.id, address, err: (err as Error).message },
        'cannot connect a KV-events subscriber',
      );
      return;
    }
    this.perEndpoint.set(endpoint.id, s);
    this.updateGauge();
    void this.read(s, { kind: 'endpoint', endpoint }, endpoint.id);
  }

  endpointRemoved(id: string): void {
    const s = this.perEndpoint.get(id);
    if (s) {
      this.perEndpoint.delete(id);
      s.close();
      this.updateGauge();
    }
    this.feed.forgetSource(`endpoint/${id}`);
    this.metrics.messagesReceived.remove({ pod_identifier: id });
  }

  private updateGauge(): void {
    this.metrics.activeSubscribers.set(this.perEndpoint.size + (this.bound ? 1 : 0));
  }

  private async read(socket: Subscriber, source: Parameters<EventFeed['receive']>[0], label: string): Promise<void> {
    let n = 0;
    for (;;) {
      let frames: Buffer[];
      try {
        frames = await socket.receive();
      } catch (err) {
        if (this.closed || socket.closed) return;
        this.metrics.zmqErrors.inc({ pod_identifier: label, operation: 'recv' });
        this.logger.warn({ source: label, err: (err as Error).message }, 'KV-events receive failed');
        await nextTurn();
        continue;
      }
      try {
        this.feed.receive(source, frames);
      } catch (err) {
        // A bug, not input: keep reading, but say so.
        this.logger.error({ source: label, err }, 'KV-event message handling failed');
      }
      if (++n % BATCH === 0) await nextTurn();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.bound?.close();
    for (const s of this.perEndpoint.values()) s.close();
    this.perEndpoint.clear();
    this.bound = undefined;
    this.updateGauge();
  }
}
