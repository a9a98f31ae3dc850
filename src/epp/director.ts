/**
 * From a buffered request to a routing decision (llm-d's Director): parse the body with the parser the path selects,
 * rewrite the model (InferenceModelRewrite, else the rewrite header), give it its objective's priority, take the candidates (subset-filtered), run the data producers, the admitters, the scheduler and
 * the PreRequest plugins. Everything here is synchronous, a decision costing no event-loop turn, unless the config has
 * a plugin that waits: a request preparer (tokenization by the model server, before the producers) or an asynchronous
 * producer (burst-prefix-cache-producer's window); then scheduleAsync waits for them.
 */
import type { Logger } from 'pino';
import { estimateTokenCount } from '../common/openai/index.js';
import type { LoadedEndpointPickerConfig } from './config/loader.js';
import type { EndpointStore } from './datalayer/endpoint-store.js';
import { NO_REQUEST_POLICIES, type RequestPolicies } from './datalayer/inference-crds.js';
import { AdmissionDenied, InferenceError, noCandidates } from './framework/errors.js';
import { SchedulingContext, type Endpoint, type InferenceRequest, type SchedulingResult } from './framework/types.js';
import type { EppMetrics } from './metrics.js';
import { resolveParser, type RequestParser } from './plugins/parser/parser-types.js';
import { MODEL_REWRITE_HEADERS, OBJECTIVE_HEADERS } from '../common/pd-contract.js';
import { firstHeader } from './routing-headers.js';

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
    /** InferenceModelRewrites and InferenceObjectives (none without Kubernetes discovery). */
    private readonly policies: RequestPolicies = NO_REQUEST_POLICIES,
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
    let targetModel = model;
    let forwarded = body;
    if (parsed.json) {
      // As llm-d-router's Director: the header names the target, then an InferenceModelRewrite rule matching the
      // body's model overrides it.
      targetModel = firstHeader(headers, MODEL_REWRITE_HEADERS) || model;
      const crd = this.policies.rewrite(model);
      if (crd) {
        targetModel = crd.targetModel;
        this.metrics.modelRewriteDecision(crd.rewriteName, model, crd.targetModel);
      }
      if (targetModel !== model)
        forwarded = Buffer.from(JSON.stringify({ ...parsed.json, model: targetModel }), 'utf8');
    }
    const objective = firstHeader(headers, OBJECTIVE_HEADERS) ?? '';
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
      objective,
      priority: this.policies.priority(objective),
    };
    return { request, body: forwarded, parser };
  }

  /** Candidates: every endpoint, or those whose IP is in the subset hint (ports ignored). */
  candidates(subset: readonly string[] | undefined): readonly Endpoint[] {
    const all = this.store.all();
    if (subset === undefined) return all;
    const ips = new Set(subset.map(ipOf));
    return all.filter((endpoint) => ips.has(endpoint.address));
  }

  /** Whether scheduling waits for a request preparer or an asynchronous producer (use scheduleAsync). */
  get waits(): boolean {
    return this.config.preparers.length > 0 || this.config.asyncProducers.length > 0;
  }

  /** Schedules a parsed request; throws an InferenceError (503 no candidates, 429 filters drained, ...). */
  schedule(request: InferenceRequest, subset: readonly string[] | undefined): ScheduledRequest {
    if (this.waits) throw new InferenceError('Internal', 'this config schedules asynchronously (scheduleAsync)');
    const start = performance.now();
    const ctx = new SchedulingContext(request, this.logger, this.now);
    try {
      const candidates = this.produce(ctx, subset);
      this.admit(ctx, candidates);
      return this.decide(ctx, candidates, start);
    } catch (e) {
      if (!(e instanceof AdmissionDenied))
        this.metrics.schedulingFailed(request.targetModel, (performance.now() - start) / 1000);
      throw e;
    }
  }

  /**
   * Schedules a parsed request after the request preparers (tokenizers, each bounding its own wait) and the
   * asynchronous producers (at most their window) have answered; `signal` aborts when the client leaves. Rejects as
   * schedule() throws.
   */
  async scheduleAsync(
    request: InferenceRequest,
    subset: readonly string[] | undefined,
    signal: AbortSignal,
  ): Promise<ScheduledRequest> {
    const start = performance.now();
    const ctx = new SchedulingContext(request, this.logger, this.now);
    try {
      await this.prepare(request, subset);
      if (signal.aborted) throw new InferenceError('Internal', 'the request ended while its prompt was being prepared');
      // The candidates again: the pool may have changed while the preparers waited.
      const candidates = this.produce(ctx, subset);
      for (const producer of this.config.asyncProducers) {
        const began = performance.now();
        try {
          await producer.produceAsync(ctx, candidates, signal);
        } catch (err) {
          // As upstream, a failed producer does not fail the request: it is scheduled without that producer's data.
          this.logger.warn(
            { err, plugin: producer.name, reqId: request.requestId },
            'data producer failed; scheduling without its data',
          );
        } finally {
          this.config.timer.child('DataProducer', producer)?.observe((performance.now() - began) / 1000);
        }
      }
      if (signal.aborted) throw new InferenceError('Internal', 'the request ended while waiting for a data producer');
      this.admit(ctx, candidates);
      return this.decide(ctx, candidates, start);
    } catch (e) {
      if (!(e instanceof AdmissionDenied))
        this.metrics.schedulingFailed(request.targetModel, (performance.now() - start) / 1000);
      throw e;
    }
  }

  /** Runs the request preparers concurrently on the candidates; never rejects (a failed one leaves the request as it was). */
  private async prepare(request: InferenceRequest, subset: readonly string[] | undefined): Promise<void> {
    const preparers = this.config.preparers;
    if (preparers.length === 0) return;
    const candidates = this.candidates(subset);
    if (candidates.length === 0) return;
    await Promise.all(
      preparers.map(async (preparer) => {
        const began = performance.now();
        try {
          await preparer.prepareRequest(request, candidates);
        } catch (err) {
          this.logger.warn(
            { err, plugin: preparer.name, reqId: request.requestId },
            'request preparer failed; scheduling without its data',
          );
        } finally {
          this.config.timer.child('DataProducer', preparer)?.observe((performance.now() - began) / 1000);
        }
      }),
    );
  }

  /** The candidates, after the synchronous producers ran on them. */
  private produce(ctx: SchedulingContext, subset: readonly string[] | undefined): readonly Endpoint[] {
    const candidates = this.candidates(subset);
    if (candidates.length === 0) throw noCandidates();
    for (const producer of this.config.producers)
      this.config.timer.time('DataProducer', producer, () => producer.produce(ctx, candidates));
    return candidates;
  }

  /** The Admitters, in config order, on the produced candidates; the first refusal throws AdmissionDenied. */
  private admit(ctx: SchedulingContext, candidates: readonly Endpoint[]): void {
    for (const admitter of this.config.admitters) {
      const reason = this.config.timer.time('Admission', admitter, () => admitter.admit(ctx, candidates));
      if (reason === undefined) continue;
      this.logger.debug(
        { plugin: admitter.name, reqId: ctx.request.requestId, reason },
        'admitter refused the request',
      );
      throw new AdmissionDenied(admitter.name, reason);
    }
  }

  private decide(ctx: SchedulingContext, candidates: readonly Endpoint[], start: number): ScheduledRequest {
    const result = this.config.scheduler.schedule(ctx, candidates);
    for (const plugin of this.config.preRequest)
      this.config.timer.time('PreRequest', plugin, () => plugin.preRequest(ctx, result));
    const primary = result.results.get(result.primaryProfile)!;
    this.metrics.scheduled(ctx.request.targetModel, primary.targets[0], (performance.now() - start) / 1000);
    return { ctx, result, destination: primary.targets.map((endpoint) => endpoint.hostPort).join(',') };
  }

  /**
   * The request is routed: drops what only scheduling reads, so a stream held open for the whole response keeps its
   * identity, headers, model and decision but not its prompt. The parsed body, the prompts, the tokenized prompt and
   * the plugins' per-cycle state (block keys, match counts) go; no response-phase hook reads them. With 32 streams of
   * ~8k-token prompts they were most of what each young-generation scavenge copied (bench/results/epp-perf.md, third
   * pass).
   */
  settle(scheduled: ScheduledRequest): void {
    // Read-only to plugins and deciders; the director, which made the request, may drop its parts.
    const request: { prompts: InferenceRequest['prompts']; body?: InferenceRequest['body'] } = scheduled.ctx.request;
    request.prompts = [];
    request.body = undefined;
    scheduled.ctx.request.tokenized = undefined;
    scheduled.ctx.state.clear();
  }

  /** Headers the ResponseReceived plugins add to the response; a plugin that throws adds none (logged). */
  responseHeaders(scheduled: ScheduledRequest): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const plugin of this.config.responseHeaders) {
      try {
        out.push(
          ...this.config.timer.time('ResponseReceived', plugin, () =>
            plugin.responseHeaders(scheduled.ctx, scheduled.result),
          ),
        );
      } catch (err) {
        this.logger.warn(
          { err, plugin: plugin.name, reqId: scheduled.ctx.request.requestId },
          'ResponseReceived plugin failed',
        );
      }
    }
    return out;
  }

  /** Tells ResponseComplete plugins a scheduled request is over (exactly once per request). */
  complete(scheduledRequest: ScheduledRequest): void {
    for (const p of this.config.responseComplete) {
      try {
        this.config.timer.time('ResponseComplete', p, () =>
          p.responseComplete(scheduledRequest.ctx, scheduledRequest.result),
        );
      } catch (err) {
        this.logger.warn(
          { err, plugin: p.name, reqId: scheduledRequest.ctx.request.requestId },
          'ResponseComplete plugin failed',
        );
      }
    }
  }

  /** A random endpoint, for header-only requests (llm-d's fallbackToRandomEndpoint). */
  randomEndpoint(random: () => number = Math.random): Endpoint | undefined {
    const all = this.store.all();
    return all.length === 0 ? undefined : all[Math.floor(random() * all.length)];
  }
}
