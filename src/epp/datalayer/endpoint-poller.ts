/**
 * The loop the EPP's model-server pollers share (metrics-data-source, models-data-source): every tick, each endpoint
 * whose period has passed and that has no poll in flight gets one bounded GET; a failure is counted and logged once
 * per failing streak, a success after failures is logged once. What is fetched and what a body or a failure does to
 * the endpoint is the subclass's.
 */
import type { Agent } from 'undici';
import type { Logger } from 'pino';
import type { Endpoint } from '../framework/types.js';
import { boundedGetText, sourceAgent, type SourceTls } from './bounded-get.js';
import type { EndpointStore } from './endpoint-store.js';

/** llm-d's floor on the base tick when a source interval lowers it. */
const MIN_TICK_MS = 50;

/**
 * The base tick and the poll period for a source `interval` (llm-d-router `periodTicks`): an interval below the
 * base tick lowers the tick to it (not below 50 ms); otherwise it is rounded to the nearest multiple of the tick
 * (at least one). No interval: every tick.
 */
export function scrapeCadence(baseMs: number, intervalMs: number | undefined): { tickMs: number; everyMs: number } {
  let tickMs = Math.max(1, baseMs);
  if (!intervalMs || intervalMs <= 0) return { tickMs, everyMs: tickMs };
  if (intervalMs < tickMs) tickMs = Math.max(intervalMs, Math.min(tickMs, MIN_TICK_MS));
  return { tickMs, everyMs: Math.max(1, Math.round(intervalMs / tickMs)) * tickMs };
}

/** How one poller reaches the model servers. */
export interface PollerSettings {
  /** TLS and the source's own `interval`. */
  readonly source: SourceTls & { readonly intervalMs?: number };
  /** Base tick (--refresh-metrics-interval). */
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  /** Connections kept per model server. */
  readonly connections: number;
  /** The Accept header of each GET. */
  readonly accept: string;
  /** Names the response in its size error (`metrics`, `models`). */
  readonly what: string;
}

export abstract class EndpointPoller {
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();
  private readonly lastStart = new Map<string, number>();
  private readonly failing = new Set<string>();
  private readonly tickMs: number;
  private readonly everyMs: number;
  private stopped = false;

  protected constructor(
    protected readonly store: EndpointStore,
    private readonly poller: PollerSettings,
    protected readonly logger: Logger,
  ) {
    this.agent = sourceAgent(poller.source, poller.timeoutMs, poller.connections);
    ({ tickMs: this.tickMs, everyMs: this.everyMs } = scrapeCadence(poller.intervalMs, poller.source.intervalMs));
    store.on('removed', (endpoint) => {
      this.lastStart.delete(endpoint.id);
      this.failing.delete(endpoint.id);
    });
  }

  /** The URL polled for one endpoint. */
  protected abstract url(endpoint: Endpoint): string;
  /** Applies a fetched body to the endpoint; throwing counts as a failed poll. */
  protected abstract apply(endpoint: Endpoint, body: string): void;
  /** Counts one failed poll and marks the endpoint as the source requires. */
  protected abstract failed(endpoint: Endpoint): void;
  /** The log lines of a failing streak's start and end ('models poll failed; keeping the last list'). */
  protected abstract readonly failureLog: string;
  protected abstract readonly recoveryLog: string;
  /** Runs for every endpoint on every tick, before the period check (staleness marking). */
  protected everyTick(_endpoint: Endpoint, _now: number): void {}

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.agent.destroy().catch(() => undefined);
  }

  private tick(): void {
    const now = Date.now();
    for (const endpoint of this.store.all()) {
      this.everyTick(endpoint, now);
      if (this.inFlight.has(endpoint.id) || now - (this.lastStart.get(endpoint.id) ?? 0) < this.everyMs - 1) continue;
      this.lastStart.set(endpoint.id, now);
      this.inFlight.add(endpoint.id);
      void this.pollOnce(endpoint).finally(() => this.inFlight.delete(endpoint.id));
    }
  }

  /** One poll of one endpoint; resolves whatever happens. */
  async pollOnce(endpoint: Endpoint): Promise<void> {
    try {
      const body = await boundedGetText(this.url(endpoint), {
        agent: this.agent,
        timeoutMs: this.poller.timeoutMs,
        maxBytes: this.poller.maxResponseBytes,
        accept: this.poller.accept,
        what: this.poller.what,
      });
      this.apply(endpoint, body);
    } catch (err) {
      if (this.stopped) return;
      this.failed(endpoint);
      if (!this.failing.has(endpoint.id)) {
        this.failing.add(endpoint.id);
        this.logger.warn(
          { endpoint: endpoint.id, url: this.url(endpoint), err: (err as Error).message },
          this.failureLog,
        );
      }
      return;
    }
    if (this.failing.delete(endpoint.id)) this.logger.info({ endpoint: endpoint.id }, this.recoveryLog);
  }
}
