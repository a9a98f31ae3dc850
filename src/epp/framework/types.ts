/**
 * The scheduling framework's vocabulary: endpoints, the request as plugins see it, the per-request scheduling
 * context, and the small interfaces plugins implement (Filter, Scorer, Picker, ProfileHandler, PreRequest,
 * DataProducer, ResponseComplete). The framework calls plugins; plugins never call each other and share data only
 * through the context (`state`) and the endpoints' metrics.
 */
import type { Logger } from 'pino';
import type { ApiType } from '../../common/openai/index.js';
import type { Decision, DeciderEndpoint, DecisionRequest, EndpointMetrics, PdDecider } from '../../decider/index.js';

/** A model-server endpoint (one pod rank / target port). Metrics are updated in place by the scraper. */
export interface Endpoint extends DeciderEndpoint {
  readonly name: string;
  readonly namespace: string;
  /** `host:port` whose /metrics is scraped. */
  readonly metricsHost: string;
  /** The pod's spec.hostname, when discovery knows it (Kubernetes). */
  readonly hostname?: string;
  readonly metrics: EndpointMetrics;
}

/** The parsed request. Headers are mutable: PreRequest plugins add routing headers to them. */
export interface InferenceRequest extends DecisionRequest {
  readonly path: string;
  readonly api: ApiType | undefined;
  /** The parser plugin that understood the body. */
  readonly parser: string;
  readonly stream: boolean;
  readonly cacheSalt: string;
  readonly objective: string;
  /** The priority of the request's InferenceObjective (0 without one); higher is more important. */
  readonly priority: number;
  readonly headers: Record<string, string>;
  /** The prompt as the model server tokenizes it, when a tokenizer plugin (token-producer) produced it. */
  tokenized?: TokenizedPrompt;
}

/** The data a tokenizer plugin (token-producer) writes: `InferenceRequest.tokenized` (PluginDefinition `produces`). */
export const TOKENIZED_PROMPT_DATA = 'tokenized-prompt';

/** Token ids of the request's prompt from the model server's tokenizer (llm-d's TokenizedPrompt). */
export interface TokenizedPrompt {
  readonly tokenIds: ArrayLike<number>;
  /** The tokenizer plugin that produced them. */
  readonly producer: string;
}

/** An endpoint with its weighted score. */
export interface ScoredEndpoint {
  endpoint: Endpoint;
  score: number;
}

/** What one profile picked, and every candidate it scored. */
export interface ProfileRunResult {
  /** Picked endpoints, best first. */
  targets: Endpoint[];
  /** Every candidate that reached the picker, with its weighted score. */
  scored: ScoredEndpoint[];
}

/** Results by profile name; `null` = the profile ran (or was skipped) without a result. */
export type ProfileResults = Map<string, ProfileRunResult | null>;

/** The scheduling result: the primary profile and each profile's picks. */
export interface SchedulingResult {
  primaryProfile: string;
  results: Map<string, ProfileRunResult>;
}

/** The decision the profile handler took, kept on the request for metrics, logs and debug headers. */
export interface DisaggDecisionRecord {
  type: 'decode-only' | 'prefill-decode' | 'encode-decode' | 'encode-prefill-decode';
  reason: string;
  detail?: Decision['detail'];
}

/** Per-request state shared by the plugins of one scheduling cycle. */
export class SchedulingContext {
  /** Data producers' outputs, keyed by producer-specific keys. */
  readonly state = new Map<string, unknown>();
  /** Errors of profiles that failed, by profile name. */
  readonly profileErrors = new Map<string, Error>();
  /** The endpoint the other stage picked (llm-d's `peer-endpoint` request attribute). */
  peerEndpoint: Endpoint | undefined;
  decision: DisaggDecisionRecord | undefined;

  constructor(
    readonly request: InferenceRequest,
    readonly logger: Logger,
    readonly now: () => number = Date.now,
  ) {}
}

/** What every plugin is: a type (its registry name) and a name (its config name). */
export interface Plugin {
  readonly type: string;
  readonly name: string;
}

/** Keeps the endpoints a profile may pick from. */
export interface Filter extends Plugin {
  filter(ctx: SchedulingContext, endpoints: readonly Endpoint[]): Endpoint[];
}

/** Scores endpoints in [0, 1]; a profile sums the weighted scores. */
export interface Scorer extends Plugin {
  /** Scores aligned with `endpoints`; the framework clamps them to [0, 1]. */
  score(ctx: SchedulingContext, endpoints: readonly Endpoint[]): ArrayLike<number>;
}

/** Picks from the scored endpoints. */
export interface Picker extends Plugin {
  pick(ctx: SchedulingContext, scored: ScoredEndpoint[]): ProfileRunResult;
}

/** A configured profile as the profile handler sees it. */
export interface SchedulerProfileView {
  readonly name: string;
  /** Candidates that pass this profile's filters (no scoring). */
  filter(ctx: SchedulingContext, candidates: readonly Endpoint[]): Endpoint[];
}

/** Chooses which profiles run, and makes the final result from theirs. */
export interface ProfileHandler extends Plugin {
  /** Profiles to run next; empty ends the loop. Called again after each batch with the accumulated results. */
  pickProfiles(
    ctx: SchedulingContext,
    profiles: ReadonlyMap<string, SchedulerProfileView>,
    results: ProfileResults,
    candidates: readonly Endpoint[],
  ): string[];
  /** Final result, or throws an InferenceError. */
  processResults(ctx: SchedulingContext, results: ProfileResults): SchedulingResult;
  /** Load-time check of the configured profile names; returns a problem, or undefined. */
  validateProfiles?(names: readonly string[]): string | undefined;
}

/** Runs after scheduling, before the answer (writes routing headers, records picks). */
export interface PreRequest extends Plugin {
  preRequest(ctx: SchedulingContext, result: SchedulingResult): void;
}

/**
 * Runs after the data producers, before the scheduler (llm-d's requestcontrol Admitter): returns undefined to admit,
 * or the reason to refuse, which the Director answers with 500 `request cannot be admitted: <reason>`.
 */
export interface Admitter extends Plugin {
  admit(ctx: SchedulingContext, candidates: readonly Endpoint[]): string | undefined;
}

/** Runs before scheduling on all candidates (e.g. prefix-cache matching). */
export interface DataProducer extends Plugin {
  produce(ctx: SchedulingContext, candidates: readonly Endpoint[]): void;
}

/**
 * A producer that must wait before it can answer (burst-prefix-cache-producer's batch window). A config with one makes
 * every request's scheduling asynchronous; it runs after the synchronous producers. It must settle by the time the
 * signal aborts (the client left); an error is logged and the request is scheduled without its data, as upstream.
 */
export interface AsyncDataProducer extends Plugin {
  produceAsync(ctx: SchedulingContext, candidates: readonly Endpoint[], signal: AbortSignal): Promise<void>;
}

/**
 * Prepares a parsed request before any producer runs, and may wait (tokenization by the model server, which the
 * precise prefix producers read). A config with one schedules asynchronously. It must bound its own wait and never
 * reject: on failure it leaves the request as it was and its consumers fall back.
 */
export interface RequestPreparer extends Plugin {
  prepareRequest(request: InferenceRequest, candidates: readonly Endpoint[]): Promise<void>;
}

/** What a plugin with a lifetime gets when the EPP starts: the pool, the process-wide bounds, a logger. */
export interface PluginRuntime {
  readonly pool: {
    all(): readonly Endpoint[];
    on(event: 'added' | 'removed', listener: (e: Endpoint) => void): unknown;
    off(event: 'added' | 'removed', listener: (e: Endpoint) => void): unknown;
  };
  readonly limits: RuntimeLimits;
  readonly logger: Logger;
}

/** EPP flags that bound plugin resources (see options.ts). */
export interface RuntimeLimits {
  kvIndexMaxEntries: number;
  kvEventsMaxMessageSize: number;
  kvEventsMaxMessageRate: number;
  kvEventsReceiveHwm: number;
  kvEventsRequired: boolean;
  tokenizerCacheTokens: number;
}

/** A plugin with sockets or timers: started with the EPP, closed with it; `ready()` takes part in readiness. */
export interface LifecyclePlugin extends Plugin {
  start(runtime: PluginRuntime): Promise<void>;
  close(): Promise<void> | void;
  ready?(): boolean;
}

/** Told when a request that was scheduled has finished (response complete, or the stream ended). */
export interface ResponseComplete extends Plugin {
  responseComplete(ctx: SchedulingContext, result: SchedulingResult): void;
}

/**
 * Adds headers to the response sent to the client when the model server's response headers arrive (llm-d's
 * ResponseHeaderProcessor, extension point ResponseReceived); a header it sets replaces one of that name from the
 * model server.
 */
export interface ResponseHeaders extends Plugin {
  responseHeaders(ctx: SchedulingContext, result: SchedulingResult): Array<[string, string]>;
}

/** Told when an endpoint leaves the pool, to drop per-endpoint state (prefix index entries, LRU positions). */
export interface EndpointRemoved extends Plugin {
  endpointRemoved(endpointId: string): void;
}

/** A decider registered as an EPP plugin. */
export interface DeciderPlugin extends Plugin, PdDecider {}

/** Whether a plugin implements Filter. */
export const isFilter = (plugin: Plugin): plugin is Filter => typeof (plugin as Filter).filter === 'function';
/** Whether a plugin implements Scorer. */
export const isScorer = (plugin: Plugin): plugin is Scorer => typeof (plugin as Scorer).score === 'function';
/** Whether a plugin implements Picker. */
export const isPicker = (plugin: Plugin): plugin is Picker => typeof (plugin as Picker).pick === 'function';
/** Whether a plugin implements ProfileHandler. */
export const isProfileHandler = (plugin: Plugin): plugin is ProfileHandler =>
  typeof (plugin as ProfileHandler).pickProfiles === 'function' &&
  typeof (plugin as ProfileHandler).processResults === 'function';
/** Whether a plugin implements PreRequest. */
export const isPreRequest = (plugin: Plugin): plugin is PreRequest =>
  typeof (plugin as PreRequest).preRequest === 'function';
/** Whether a plugin implements Admitter. */
export const isAdmitter = (plugin: Plugin): plugin is Admitter => typeof (plugin as Admitter).admit === 'function';
/** Whether a plugin implements DataProducer. */
export const isDataProducer = (plugin: Plugin): plugin is DataProducer =>
  typeof (plugin as DataProducer).produce === 'function';
/** Whether a plugin implements AsyncDataProducer. */
export const isAsyncDataProducer = (plugin: Plugin): plugin is AsyncDataProducer =>
  typeof (plugin as AsyncDataProducer).produceAsync === 'function';
/** Whether a plugin implements ResponseComplete. */
export const isResponseComplete = (plugin: Plugin): plugin is ResponseComplete =>
  typeof (plugin as ResponseComplete).responseComplete === 'function';
/** Whether a plugin implements ResponseHeaders. */
export const isResponseHeaders = (plugin: Plugin): plugin is ResponseHeaders =>
  typeof (plugin as ResponseHeaders).responseHeaders === 'function';
/** Whether a plugin implements EndpointRemoved. */
export const isEndpointRemoved = (plugin: Plugin): plugin is EndpointRemoved =>
  typeof (plugin as EndpointRemoved).endpointRemoved === 'function';
/** Whether a plugin implements RequestPreparer. */
export const isRequestPreparer = (plugin: Plugin): plugin is RequestPreparer =>
  typeof (plugin as RequestPreparer).prepareRequest === 'function';
/** Whether a plugin has a lifetime (start and close). */
export const isLifecyclePlugin = (plugin: Plugin): plugin is LifecyclePlugin =>
  typeof (plugin as LifecyclePlugin).start === 'function' && typeof (plugin as LifecyclePlugin).close === 'function';
/** Whether a plugin is a decider. */
export const isDecider = (plugin: Plugin): plugin is DeciderPlugin =>
  typeof (plugin as DeciderPlugin).decide === 'function';
