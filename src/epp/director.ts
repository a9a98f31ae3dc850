/**
 * From a buffered request to a routing decision (llm-d's Director): parse the body with the parser the path selects,
 * apply the model rewrite header, take the candidates (subset-filtered), run the data producers, the scheduler and
 * the PreRequest plugins. Everything here is synchronous (a decision costs no event-loop turn), except `prepare`, which
 * runs the producers that must wait (tokenization by the model server), when a config has any.
 */
import type { Logger } from 'pino';
import { estimateTokenCount } from '../common/openai/index.js';
import type { LoadedEndpointPickerConfig } from './config/loader.js';
import type { EndpointStore } from './datalayer/endpoint-store.js';
import { InferenceError, noCandidates } from './framework/errors.js';
import { SchedulingContext, type Endpoint, type InferenceRequest, type SchedulingResult } from './framework/types.js';
import type { EppMetrics } from './metrics.js';
import { resolveParser, type RequestParser } from './plugins/parser/parser-types.js';
import { MODEL_REWRITE_HEADERS, OBJECTIVE_HEADERS, firstHeader } from './routing-headers.js';

export interface ScheduledRequest {
  ctx: SchedulingContext;
  result: SchedulingResult;
  /** `ip:port[,ip:port...]` of the primary profile's picks. */
  destination: string;
}

export interface ParsedRequest {
  request: InferenceRequest;
  /** The body to forward: the original bytes, or the re-marshalled JSON after a model rewrite. */
  body: Buffer;
  /** Parser of the request, for response usage parsing. */
  parser: RequestParser;
}

/** The IP of `ip:port`, `[v6]:port` or a bare address (subset matching ignores ports, as upstream). */
export function ipOf(hostPortText: string): string {
  const s = hostPortText.trim();
  if (s.startsWith('[')) return s.slice(1, s.indexOf(']'));
  const colons = s.split(':').length - 1;
  return colons === 1 ? s.slice(0, s.indexOf(':')) : s;
}

export class RequestDirector {
  constructor(
    readonly config: LoadedEndpointPickerConfig,
    readonly store: EndpointStore,
    private readonly metrics: EppMetrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Parses the body for `path`; throws a 400 InferenceError with llm-d's message. */
  parse(requestId: string, headers: Record<string, string>, body: Buffer): ParsedRequest {
    const path = headers[':path'] ?? '';
    const parser = resolveParser(this.config.parsers, path);
    if (!parser) throw new InferenceError('BadRequest', `no parser for path ${JSON.stringify(path)}`);
    const parsed = parser.parse(body, path);
    let model = '';
    if (parsed.json && typeof parsed.json.model === 'string') model = parsed.json.model;
    if (parsed.requiresModel && model === '') throw new InferenceError('BadRequest', 'model not found in request body');
    const rewrite = firstHeader(headers, MODEL_REWRITE_HEADERS);
    let targetModel = model;
    let forwarded = body;
    if (rewrite && parsed.json && rewrite !== model) {
      targetModel = rewrite;
      forwarded = Buffer.from(JSON.stringify({ ...parsed.json, model: rewrite }), 'utf8');
    }
    const request: InferenceRequest = {
      requestId,
      model,
      targetModel,
      tokenCount: estimateTokenCount(parsed.prompts),
      prompts: parsed.prompts,
      headers,
      body: parsed.json,
      path,
      api: parsed.api,
      parser: parser.name,
      stream: parsed.stream,
      cacheSalt: parsed.cacheSalt,
      objective: firstHeader(headers, OBJECTIVE_HEADERS) ?? '',
    };
    return { request, body: forwarded, parser };
  }

  /** Candidates: every endpoint, or those whose IP is in the subset hint (ports ignored). */
  candidates(subset: readonly string[] | undefined): readonly Endpoint[] {
    const all = this.store.all();
    if (subset === undefined) return all;
    const ips = new Set(subset.map(ipOf));
    return all.filter((e) => ips.has(e.address));
  }

  /**
   * Runs the producers that may wait (tokenizers) for a parsed request; undefined when the config has none, so a
   * decision without them costs no event-loop turn. Never rejects: a failed producer leaves the request as it was.
   */
  prepare(request: InferenceRequest, subset: readonly string[] | undefined): Promise<void> | undefined {
    const producers = this.config.asyncProducers;
    if (producers.length === 0) return undefined;
    const candidates = this.candidates(subset);
    if (candidates.length === 0) return undefined;
    return Promise.all(
      producers.map((p) =>
        p.prepareRequest(request, candidates).catch((err: unknown) => {
          this.logger.warn({ err, plugin: p.name, reqId: request.requestId }, 'data producer failed; scheduling without its data');
        }),
      ),
    ).then(() => undefined);
  }

  /** Schedules a parsed request; throws an InferenceError (503 no candidates, 429 filters drained, ...). */
  schedule(request: InferenceRequest, subset: readonly string[] | undefined): ScheduledRequest {
    const start = performance.now();
    const ctx = new SchedulingContext(request, this.logger, this.now);
    try {
      const candidates = this.candidates(subset);
      if (candidates.length === 0) throw noCandidates();
      const timer = this.config.timer;
      for (const p of this.config.producers) timer.time('DataProducer', p, () => p.produce(ctx, candidates));
      const result = this.config.scheduler.schedule(ctx, candidates);
      for (const p of this.config.preRequest) timer.time('PreRequest', p, () => p.preRequest(ctx, result));
      const primary = result.results.get(result.primaryProfile)!;
      this.metrics.scheduled(request.targetModel, primary.targets[0]!, (performance.now() - start) / 1000);
      return { ctx, result, destination: primary.targets.map((t) => t.hostPort).join(',') };
    } catch (e) {
      this.metrics.schedulingFailed(request.targetModel, (performance.now() - start) / 1000);
      throw e;
    }
  }

  /** Tells ResponseComplete plugins a scheduled request is over (exactly once per request). */
  complete(s: ScheduledRequest): void {
    for (const p of this.config.responseComplete) {
      try {
        this.config.timer.time('ResponseComplete', p, () => p.responseComplete(s.ctx, s.result));
      } catch (err) {
        this.logger.warn({ err, plugin: p.name, reqId: s.ctx.request.requestId }, 'ResponseComplete plugin failed');
      }
    }
  }

  /** A random endpoint, for header-only requests (llm-d's fallbackToRandomEndpoint). */
  randomEndpoint(random: () => number = Math.random): Endpoint | undefined {
    const all = this.store.all();
    return all.length === 0 ? undefined : all[Math.floor(random() * all.length)];
  }
}
