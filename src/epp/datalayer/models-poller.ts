/**
 * Polls every endpoint's `/v1/models` (models-data-source): one request per endpoint per period, never two at once
 * for the same endpoint, each bounded by the scrape timeout and the response-size cap. The OpenAI list
 * `{data: [{id, parent?}]}` replaces `metrics.models`; a failure (connection, status, timeout, size, a body that is not
 * that list) is counted in llm_d_epp_datalayer_poll_errors_total{source_type="models-data-source"} and keeps the last
 * list. At most 10000 models are kept per endpoint.
 */
import type { Agent } from 'undici';
import type { Logger } from 'pino';
import { z } from 'zod';
import { hostPort } from '../../common/index.js';
import type { Endpoint } from '../framework/types.js';
import type { EppMetrics } from '../metrics.js';
import type { MetricsSourceSettings } from './metrics-scraper.js';
import { boundedGetText, sourceAgent } from './bounded-get.js';
import type { EndpointStore } from './endpoint-store.js';
import { scrapeCadence } from './metrics-scraper.js';

export interface ModelsPollerSettings {
  source: MetricsSourceSettings;
  intervalMs: number;
  timeoutMs: number;
  maxResponseBytes: number;
}

const SOURCE_TYPE = 'models-data-source';
const MAX_MODELS = 10_000;

const modelList = z.object({
  data: z.array(z.object({ id: z.string(), parent: z.string().nullish() }).loose()).max(MAX_MODELS),
});

/** The models of an OpenAI `/v1/models` body; throws when it is not that list. */
export function parseModelList(text: string): Array<{ id: string; parent?: string }> {
  const r = modelList.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`not an OpenAI model list: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data.data.map((model) => (model.parent ? { id: model.id, parent: model.parent } : { id: model.id }));
}

export class ModelsPoller {
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();
  private readonly lastStart = new Map<string, number>();
  private readonly failing = new Set<string>();
  private readonly tickMs: number;
  private readonly everyMs: number;
  private readonly pollErrors;
  private stopped = false;

  constructor(
    private readonly store: EndpointStore,
    private readonly s: ModelsPollerSettings,
    metrics: EppMetrics,
    private readonly logger: Logger,
  ) {
    this.agent = sourceAgent(s.source, s.timeoutMs, 1);
    ({ tickMs: this.tickMs, everyMs: this.everyMs } = scrapeCadence(s.intervalMs, s.source.intervalMs));
    this.pollErrors = metrics.pollErrors(SOURCE_TYPE);
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
      if (this.inFlight.has(e.id) || now - (this.lastStart.get(e.id) ?? 0) < this.everyMs - 1) continue;
      this.lastStart.set(e.id, now);
      this.inFlight.add(e.id);
      void this.poll(e).finally(() => this.inFlight.delete(e.id));
    }
  }

  private url(endpoint: Endpoint): string {
    return `${this.s.source.scheme}://${hostPort(endpoint.address, endpoint.port)}${this.s.source.path}`;
  }

  /** One poll; resolves whatever happens. */
  async poll(endpoint: Endpoint): Promise<void> {
    try {
      endpoint.metrics.models = parseModelList(await this.fetchText(this.url(endpoint)));
    } catch (err) {
      if (this.stopped) return;
      this.pollErrors.inc();
      if (!this.failing.has(endpoint.id)) {
        this.failing.add(endpoint.id);
        this.logger.warn(
          { endpoint: endpoint.id, url: this.url(endpoint), err: (err as Error).message },
          'models poll failed; keeping the last list',
        );
      }
      return;
    }
    if (this.failing.delete(endpoint.id)) this.logger.info({ endpoint: endpoint.id }, 'models poll recovered');
  }

  private fetchText(url: string): Promise<string> {
    return boundedGetText(url, {
      agent: this.agent,
      timeoutMs: this.s.timeoutMs,
      maxBytes: this.s.maxResponseBytes,
      accept: 'application/json',
      what: 'models',
    });
  }
}
