/**
 * Polls every endpoint's `/v1/models` (models-data-source): one request per endpoint per period, never two at once
 * for the same endpoint, each bounded by the scrape timeout and the response-size cap. The OpenAI list
 * `{data: [{id, parent?}]}` replaces `metrics.models`; a failure (connection, status, timeout, size, a body that is not
 * that list) is counted in llm_d_epp_datalayer_poll_errors_total{source_type="models-data-source"} and keeps the last
 * list. At most 10000 models are kept per endpoint.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { hostPort } from '../../common/index.js';
import type { Endpoint } from '../framework/types.js';
import type { EppMetrics } from '../metrics.js';
import type { MetricsSourceSettings } from './metrics-scraper.js';
import type { EndpointStore } from './endpoint-store.js';
import { EndpointPoller } from './endpoint-poller.js';

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
  const parsed = modelList.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`not an OpenAI model list: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data.data.map((model) => (model.parent ? { id: model.id, parent: model.parent } : { id: model.id }));
}

/** The models-data-source poller: each endpoint's served models from `/v1/models`. */
export class ModelsPoller extends EndpointPoller {
  private readonly pollErrors;
  protected readonly failureLog = 'models poll failed; keeping the last list';
  protected readonly recoveryLog = 'models poll recovered';

  constructor(
    store: EndpointStore,
    private readonly settings: ModelsPollerSettings,
    metrics: EppMetrics,
    logger: Logger,
  ) {
    super(store, { ...settings, connections: 1, accept: 'application/json', what: 'models' }, logger);
    this.pollErrors = metrics.pollErrors(SOURCE_TYPE);
  }

  protected url(endpoint: Endpoint): string {
    return `${this.settings.source.scheme}://${hostPort(endpoint.address, endpoint.port)}${this.settings.source.path}`;
  }

  protected apply(endpoint: Endpoint, body: string): void {
    endpoint.metrics.models = parseModelList(body);
  }

  protected failed(): void {
    this.pollErrors.inc();
  }
}
