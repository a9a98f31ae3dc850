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
  readonly headers: Record<string, string>;
  /** The prompt as the model server tokenizes it, when a tokenizer plugin (token-producer) produced it. */
  tokenized?: TokenizedPrompt;
}

/** Token ids of the request's prompt from the model server's tokenizer (llm-d's TokenizedPrompt). */
export interface TokenizedPrompt {
  readonly tokenIds: ArrayLike<number>;
  /** The tokenizer plugin that produced them. */
  readonly producer: string;
}

export interface ScoredEndpoint {
  endpoint: Endpoint;
  score: number;
}

export interface ProfileRunResult {
  /** Picked endpoints, best first. */
  targets: Endpoint[];
  /** Every candidate that reached the picker, with its weighted score. */
  scored: ScoredEndpoint[];
}

/** Results by profile name; `null` = the profile ran (or was skipped) without a result. */
export type ProfileResults = Map<string, ProfileRunResult | null>;

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

export interface Plugin {
  readonly type: string;
  readonly name: string;
}

export interface Filter extends Plugin {
  filter(ctx: SchedulingContext, endpoints: readonly Endpoint[]): Endpoint[];
}

export interface Scorer extends Plugin {
  /** Scores aligned with `endpoints`; the framework clamps them to [0, 1]. */
  score(ctx: SchedulingContext, endpoints: readonly Endpoint[]): ArrayLike<number>;
}

export interface Picker extends Plugin {
  pick(ctx: SchedulingContext, scored: ScoredEndpoint[]): ProfileRunResult;
}

/** A configured profile as the profile handler sees it. */
export interface SchedulerProfileView {
  readonly name: string;
  /** Candidates that pass this profile's filters (no scoring). */
  filter(ctx: SchedulingContext, candidates: readonly Endpoint[]): Endpoint[];
}

export interface ProfileHandler extends Plugin {
  /** Profiles to run next; empty ends the loop. Called again after each batch with the accumulated results. */
  pickProfiles(ctx: SchedulingContext, profiles: ReadonlyMap<string, SchedulerProfileView>, results: ProfileResults, candidates: readonly Endpoint[]): string[];
  /** Final result, or throws an InferenceError. */
  processResults(ctx: SchedulingContext, results: ProfileResults): SchedulingResult;
  /** Load-time check of the configured profile names; returns a problem, or undefined. */
  validateProfiles?(names: readonly string[]): string | undefined;
}

export interface PreRequest extends Plugin {
  preRequest(ctx: SchedulingContext, result: SchedulingResult): void;
}

/** Runs before scheduling on all candidates (e.g. prefix-cache matching). */
export interface DataProducer extends Plugin {
  produce(ctx: SchedulingContext, candidates: readonly Endpoint[]): void;
}

/**
 * Runs before the synchronous producers and may wait (tokenization over HTTP). It must bound its own wait and never
 * reject: on failure it leaves the request as it was and its consumers fall back.
 */
export interface AsyncDataProducer extends Plugin {
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

/** Told when an endpoint leaves the pool, to drop per-endpoint state (prefix index entries, LRU positions). */
export interface EndpointRemoved extends Plugin {
  endpointRemoved(endpointId: string): void;
}

export interface DeciderPlugin extends Plugin, PdDecider {}

export const isFilter = (p: Plugin): p is Filter => typeof (p as Filter).filter === 'function';
export const isScorer = (p: Plugin): p is Scorer => typeof (p as Scorer).score === 'function';
export const isPicker = (p: Plugin): p is Picker => typeof (p as Picker).pick === 'function';
export const isProfileHandler = (p: Plugin): p is ProfileHandler =>
  typeof (p as ProfileHandler).pickProfiles === 'function' && typeof (p as ProfileHandler).processResults === 'function';
export const isPreRequest = (p: Plugin): p is PreRequest => typeof (p as PreRequest).preRequest === 'function';
export const isDataProducer = (p: Plugin): p is DataProducer => typeof (p as DataProducer).produce === 'function';
export const isResponseComplete = (p: Plugin): p is ResponseComplete => typeof (p as ResponseComplete).responseComplete === 'function';
export const isEndpointRemoved = (p: Plugin): p is EndpointRemoved => typeof (p as EndpointRemoved).endpointRemoved === 'function';
export const isAsyncDataProducer = (p: Plugin): p is AsyncDataProducer => typeof (p as AsyncDataProducer).prepareRequest === 'function';
export const isLifecyclePlugin = (p: Plugin): p is LifecyclePlugin => typeof (p as LifecyclePlugin).start === 'function' && typeof (p as LifecyclePlugin).close === 'function';
export const isDecider = (p: Plugin): p is DeciderPlugin => typeof (p as DeciderPlugin).decide === 'function';
