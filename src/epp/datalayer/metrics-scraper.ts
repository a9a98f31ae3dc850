/**
 * Polls every endpoint's Prometheus endpoint (llm-d `metrics-data-source`): one request per endpoint per interval, never
 * two at once for the same endpoint, each bounded by a timeout and a response-size cap. A failure (connection,
 * status, timeout, size) is counted in llm_d_epp_datalayer_poll_errors_total and marks the endpoint stale; its last
 * values stay. Metrics older than the staleness threshold are marked stale too. Nothing here can crash the EPP.
 */
import type { Logger } from 'pino';
import { hostPort } from '../../common/index.js';
import type { Endpoint } from '../framework/types.js';
import type { EppMetrics } from '../metrics.js';
import { EndpointPoller } from './endpoint-poller.js';
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
const EXTRACTOR_TYPE = 'core-metrics-extractor';

/** The metrics-data-source scraper: each endpoint's engine metrics from its Prometheus endpoint. */
export class MetricsScraper extends EndpointPoller {
  private readonly pollErrors;
  private readonly extractErrors;
  protected readonly failureLog = 'metrics scrape failed; endpoint marked stale';
  protected readonly recoveryLog = 'metrics scrape recovered';

  constructor(
    store: EndpointStore,
    private readonly settings: ScraperSettings,
    metrics: EppMetrics,
    logger: Logger,
  ) {
    super(store, { ...settings, connections: 2, accept: 'text/plain', what: 'metrics' }, logger);
    this.pollErrors = metrics.pollErrors(SOURCE_TYPE);
    this.extractErrors = metrics.extractErrors(SOURCE_TYPE, EXTRACTOR_TYPE);
  }

  protected override everyTick(endpoint: Endpoint, now: number): void {
    const { metrics } = endpoint;
    if (metrics.updatedAt > 0 && now - metrics.updatedAt > this.settings.stalenessMs) metrics.stale = true;
  }

  protected url(endpoint: Endpoint): string {
    const host = this.settings.source.port
      ? hostPort(endpoint.address, this.settings.source.port)
      : endpoint.metricsHost;
    return `${this.settings.source.scheme}://${host}${this.settings.source.path}`;
  }

  protected apply(endpoint: Endpoint, body: string): void {
    const missing = extractEngineMetrics(
      body,
      (this.settings.engines ?? DEFAULT_ENGINES).engineFor(endpoint.labels),
      endpoint.metrics,
    );
    if (missing.length > 0) {
      this.extractErrors.inc();
      this.logger.debug({ endpoint: endpoint.id, missing }, 'metrics missing from scrape');
    }
    endpoint.metrics.updatedAt = Date.now();
    endpoint.metrics.stale = false;
    this.settings.onUpdate?.();
  }

  protected failed(endpoint: Endpoint): void {
    this.pollErrors.inc();
    endpoint.metrics.stale = true;
  }
}
