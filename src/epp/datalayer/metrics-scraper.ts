/**
 * Polls every endpoint's Prometheus endpoint (llm-d `metrics-data-source`): one request per endpoint per interval, never
 * two at once for the same endpoint, each bounded by a timeout and a response-size cap. A failure (connection,
 * status, timeout, size) is counted in llm_d_epp_datalayer_poll_errors_total and marks the endpoint stale; its last
 * values stay. Metrics older than the staleness threshold are marked stale too. Nothing here can crash the EPP.
 */
import type { Agent } from 'undici';
import type { Logger } from 'pino';
import { hostPort } from '../../common/index.js';
import type { Endpoint } from '../framework/types.js';
import type { EppMetrics } from '../metrics.js';
import { boundedGetText, sourceAgent } from './bounded-get.js';
import type { EndpointStore } from './endpoint-store.js';
import { DEFAULT_ENGINES, extractEngineMetrics, type EngineRegistry } from './engine-metrics.js';

/** How the endpoints' metrics are fetched: the `metrics-data-source` plugin's parameters, resolved at load. */
export interface MetricsSourceSettings {
  scheme: 'http' | 'https';
  path: string;
  port?: number;
  insecureSkipVerify: boolean;
  intervalMs?: number;
  /** PEM contents: the CA bundle (only when verifying) and the mTLS client certificate and key. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface ScraperSettings {
  source: MetricsSourceSettings;
  /** Base tick (--refresh-metrics-interval); a source `interval` adjusts it (see scrapeCadence). */
  intervalMs: number;
  timeoutMs: number;
  stalenessMs: number;
  maxResponseBytes: number;
  /** The extractor's engines (core-metrics-extractor parameters); default the built-in ones. */
  engines?: EngineRegistry;
  /** Called after each successful scrape (flow control dispatches when saturation may have fallen). */
  onUpdate?: () => void;
}

const SOURCE_TYPE = 'metrics-data-source';
/** llm-d's floor on the base tick when a source interval lowers it. */
const MIN_TICK_MS = 50;

/**
 * The base tick and the scrape period for a source `interval` (llm-d-router `periodTicks`): an interval below the
 * base tick lowers the tick to it (not below 50 ms); otherwise it is rounded to the nearest multiple of the tick
 * (at least one). No interval: every tick.
 */
export function scrapeCadence(baseMs: number, intervalMs: number | undefined): { tickMs: number; everyMs: number } {
  let tickMs = Math.max(1, baseMs);
  if (!intervalMs || intervalMs <= 0) return { tickMs, everyMs: tickMs };
  if (intervalMs < tickMs) tickMs = Math.max(intervalMs, Math.min(tickMs, MIN_TICK_MS));
  return { tickMs, everyMs: Math.max(1, Math.round(intervalMs / tickMs)) * tickMs };
}
const EXTRACTOR_TYPE = 'core-metrics-extractor';

export class MetricsScraper {
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();
  private readonly lastStart = new Map<string, number>();
  private readonly failing = new Set<string>();
  private readonly everyMs: number;
  private readonly tickMs: number;
  private readonly pollErrors;
  private readonly extractErrors;
  private stopped = false;

  constructor(
    private readonly store: EndpointStore,
    private readonly settings: ScraperSettings,
    metrics: EppMetrics,
    private readonly logger: Logger,
  ) {
    this.agent = sourceAgent(settings.source, settings.timeoutMs, 2);
    const { tickMs, everyMs } = scrapeCadence(settings.intervalMs, settings.source.intervalMs);
    this.tickMs = tickMs;
    this.everyMs = everyMs;
    this.pollErrors = metrics.pollErrors(SOURCE_TYPE);
    this.extractErrors = metrics.extractErrors(SOURCE_TYPE, EXTRACTOR_TYPE);
    store.on('removed', (endpoint) => {
      this.lastStart.delete(endpoint.id);
      this.failing.delete(endpoint.id);
    });
  }

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
    for (const e of this.store.all()) {
      if (e.metrics.updatedAt > 0 && now - e.metrics.updatedAt > this.settings.stalenessMs) e.metrics.stale = true;
      if (this.inFlight.has(e.id)) continue;
      const last = this.lastStart.get(e.id) ?? 0;
      if (now - last < this.everyMs - 1) continue;
      this.lastStart.set(e.id, now);
      this.inFlight.add(e.id);
      void this.scrape(e).finally(() => this.inFlight.delete(e.id));
    }
  }

  private url(endpoint: Endpoint): string {
    const host = this.settings.source.port
      ? hostPort(endpoint.address, this.settings.source.port)
      : endpoint.metricsHost;
    return `${this.settings.source.scheme}://${host}${this.settings.source.path}`;
  }

  /** One scrape; resolves whatever happens. */
  async scrape(entry: Endpoint): Promise<void> {
    let text: string;
    try {
      text = await this.fetchText(this.url(entry));
    } catch (err) {
      if (this.stopped) return;
      this.pollErrors.inc();
      entry.metrics.stale = true;
      if (!this.failing.has(entry.id)) {
        this.failing.add(entry.id);
        this.logger.warn(
          { endpoint: entry.id, url: this.url(entry), err: (err as Error).message },
          'metrics scrape failed; endpoint marked stale',
        );
      }
      return;
    }
    const missing = extractEngineMetrics(
      text,
      (this.settings.engines ?? DEFAULT_ENGINES).engineFor(entry.labels),
      entry.metrics,
    );
    if (missing.length > 0) {
      this.extractErrors.inc();
      this.logger.debug({ endpoint: entry.id, missing }, 'metrics missing from scrape');
    }
    entry.metrics.updatedAt = Date.now();
    entry.metrics.stale = false;
    this.settings.onUpdate?.();
    if (this.failing.delete(entry.id)) this.logger.info({ endpoint: entry.id }, 'metrics scrape recovered');
  }

  private fetchText(url: string): Promise<string> {
    return boundedGetText(url, {
      agent: this.agent,
      timeoutMs: this.settings.timeoutMs,
      maxBytes: this.settings.maxResponseBytes,
      accept: 'text/plain',
      what: 'metrics',
    });
  }
}
