/**
 * What both precise plugins (llm-d-router's `precise-prefix-cache-producer`, llm-d v0.7.1's
 * `precise-prefix-cache-scorer`) do, per request and over their lifetime:
 *
 * - start: the index (bounded by `--kv-index-max-entries`, and by `inMemoryConfig.size × podCacheSize` when set), the
 *   event feed and the ZMQ subscribers (a bound socket for `kvEventsConfig.zmqEndpoint`, a connection per pool
 *   endpoint with `discoverPods`). A bind failure makes the EPP NOT_SERVING, with the reason logged, and the bind is
 *   retried every 5s; with `--kv-events-required=false` the EPP serves and scores from the approximate index until
 *   the socket is bound.
 * - prepare (only when the config has no token-producer): the prompt's token ids from the pool's model servers,
 *   where upstream would use its in-process or sidecar tokenizer (see token-producer.ts).
 * - produce: the request keys of the token ids (llm-d's block keys, `tokenProcessorConfig.blockSizeTokens` tokens
 *   each, the partial last block left out), looked up with llm-d's LongestPrefix rule; each candidate's match info
 *   is `floor(weighted blocks)` of `totalBlocks`, as upstream writes PrefixCacheMatchInfo. Without token ids
 *   (tokenization failed or timed out), with a cache salt (vLLM folds it into block 0's extra keys, which the index
 *   cannot reproduce), or while events are unavailable, the request is scored from an approximate prefix index
 *   instead (the same as approx-prefix-cache-producer, fed with every pick) and
 *   `llm_d_epp_precise_prefix_cache_fallback_total{plugin_name, reason}` counts it.
 * - preRequest: the approximate index learns the picks; with `speculativeIndexing`, the primary pick and the
 *   `prefill` pick hold the request's keys for `speculativeTTL` (2s) or until an event confirms them.
 * - an endpoint leaving the pool: its entries, connection and fallback entries are dropped at once.
 */
import { BlockKeyHasher, key53 } from '../../common/kv-events/index.js';
import {
  TOKENIZED_PROMPT_DATA,
  type Endpoint,
  type InferenceRequest,
  type PluginRuntime,
  type SchedulingContext,
  type SchedulingResult,
} from '../framework/types.js';
import type { PluginFactoryContext } from '../plugins/definition.js';
import {
  approxPrefixCacheParams,
  approxPrefixCacheProducer,
  type ApproxPrefixCacheProducer,
} from '../plugins/producer/approx-prefix-cache-producer.js';
import { prefixStateKey, type PrefixMatchState } from '../prefix/match-state.js';
import { ModelServerTokenizer } from '../tokenize/model-server-tokenizer.js';
import { EventFeed } from './event-feed.js';
import { KvEventsMetrics } from './metrics.js';
import { preciseSettings, type PreciseParams, type PreciseSettings } from './precise-config.js';
import { PreciseIndex } from './precise-index.js';
import { KvEventSubscriber } from './subscriber.js';

const BIND_RETRY_MS = 5000;

export interface PreciseScores {
  /** Weighted LongestPrefix score per endpoint id (only endpoints holding the first block). */
  scores: Map<string, number>;
}

export class PreciseCore {
  readonly settings: PreciseSettings;
  readonly hasher: BlockKeyHasher;
  readonly metrics: KvEventsMetrics;
  private readonly stateKey: string;
  private readonly approx: ApproxPrefixCacheProducer;
  index: PreciseIndex | undefined;
  subscriber: KvEventSubscriber | undefined;
  private tokenizer: ModelServerTokenizer | undefined;
  private runtime: PluginRuntime | undefined;
  private bindError: string | undefined;
  private retry: NodeJS.Timeout | undefined;
  private lastExpiry = 0;
  private readonly onAdded = (endpoint: Endpoint) => this.subscriber?.endpointAdded(endpoint);

  constructor(
    private readonly ctx: PluginFactoryContext,
    params: PreciseParams,
    /** Tokenize with the pool itself (the config has no token-producer). */
    readonly ownTokenizer: boolean,
    private readonly now: () => number = Date.now,
  ) {
    this.settings = preciseSettings(params);
    for (const w of this.settings.warnings) ctx.warn(w);
    this.hasher = new BlockKeyHasher(this.settings.blockSizeTokens, this.settings.hashSeed);
    this.metrics = KvEventsMetrics.of(ctx.metrics.registry);
    this.stateKey = prefixStateKey(ctx.name);
    // The fallback: an approximate producer under this plugin's name, so it writes the state consumers read.
    this.approx = approxPrefixCacheProducer.create(ctx, approxPrefixCacheParams.parse({})) as ApproxPrefixCacheProducer;
  }

  async start(runtime: PluginRuntime): Promise<void> {
    this.runtime = runtime;
    const l = runtime.limits;
    const s = this.settings;
    const maxEntries = Math.min(l.kvIndexMaxEntries, s.configuredMaxEntries ?? Number.MAX_SAFE_INTEGER);
    const m = this.metrics;
    this.index = new PreciseIndex({
      maxEntries,
      gpuWeight: s.gpuWeight,
      cpuWeight: s.cpuWeight,
      counters: {
        admitted: (count) => m.admissions.inc(count),
        evicted: (count, reason) => {
          m.evictions.inc(count);
          m.evictionsByReason.inc({ reason }, count);
        },
      },
    });
    const feed = new EventFeed(
      this.index,
      this.hasher,
      runtime.pool,
      {
        maxMessageBytes: l.kvEventsMaxMessageSize,
        maxMessagesPerSecond: l.kvEventsMaxMessageRate,
        maxArrayLength: 1 << 20,
        maxStringLength: 1 << 16,
      },
      m,
      runtime.logger,
    );
    this.subscriber = new KvEventSubscriber(
      {
        zmqEndpoint: s.zmqEndpoint,
        topicFilter: s.topicFilter,
        discoverPods: s.discoverPods,
        socketPort: s.socketPort,
        receiveHighWaterMark: l.kvEventsReceiveHwm,
        maxMessageBytes: l.kvEventsMaxMessageSize,
      },
      feed,
      m,
      runtime.logger,
    );
    if (this.ownTokenizer)
      this.tokenizer = new ModelServerTokenizer({
        baseUrl: undefined,
        modelName: '',
        timeoutMs: 5000,
        mmTimeoutMs: 30_000,
        cacheTokens: l.tokenizerCacheTokens,
      });
    runtime.pool.on('added', this.onAdded);
    for (const e of runtime.pool.all()) this.subscriber.endpointAdded(e);
    await this.bind();
  }

  private async bind(): Promise<void> {
    if (!this.subscriber) return;
    try {
      await this.subscriber.bind();
      if (this.bindError)
        this.runtime?.logger.info(
          { plugin: this.ctx.name, endpoint: this.subscriber.boundEndpoint },
          'KV-events socket bound after retrying',
        );
      this.bindError = undefined;
    } catch (e) {
      this.bindError = (e as Error).message;
      const required = this.runtime?.limits.kvEventsRequired ?? true;
      this.runtime?.logger.error(
        { plugin: this.ctx.name, err: this.bindError, retryMs: BIND_RETRY_MS },
        required
          ? 'KV-events socket cannot be bound: not ready until it is'
          : 'KV-events socket cannot be bound: scoring from the approximate index until it is',
      );
      this.retry = setTimeout(() => void this.bind(), BIND_RETRY_MS);
      this.retry.unref();
    }
  }

  /** Why events are not coming in, or undefined. */
  get unavailable(): string | undefined {
    if (!this.index) return 'not started';
    return this.bindError;
  }

  ready(): boolean {
    return this.bindError === undefined || !(this.runtime?.limits.kvEventsRequired ?? true);
  }

  close(): void {
    clearTimeout(this.retry);
    this.runtime?.pool.off('added', this.onAdded);
    this.subscriber?.close();
    void this.tokenizer?.close();
  }

  async prepareRequest(request: InferenceRequest, candidates: readonly Endpoint[]): Promise<void> {
    if (request.tokenized || !this.ownTokenizer) return;
    this.tokenizer ??= new ModelServerTokenizer({
      baseUrl: undefined,
      modelName: '',
      timeoutMs: 5000,
      mmTimeoutMs: 30_000,
      cacheTokens: 0,
    });
    const r = await this.tokenizer.tokenize(request, candidates);
    if (r.ok) request.tokenized = { tokenIds: r.tokenIds, producer: this.ctx.name };
    else if (r.reason !== 'unsupported')
      this.metrics.tokenizeFailures.inc({ plugin_name: this.ctx.name, reason: r.reason });
  }

  /** Writes the match state; returns the precise scores, or undefined when the approximate fallback scored. */
  produce(ctx: SchedulingContext, candidates: readonly Endpoint[]): PreciseScores | undefined {
    this.approx.produce(ctx, candidates);
    const approxState = ctx.state.get(this.stateKey) as PrefixMatchState | undefined;
    const tokens = ctx.request.tokenized?.tokenIds;
    const reason =
      this.unavailable !== undefined
        ? 'unavailable'
        : !tokens
          ? 'no-tokens'
          : ctx.request.cacheSalt
            ? 'cache-salt'
            : undefined;
    if (reason || !tokens || !this.index) {
      this.metrics.preciseFallbacks.inc({ plugin_name: this.ctx.name, reason: reason ?? 'unavailable' });
      return undefined;
    }
    const now = this.now();
    if (now - this.lastExpiry >= 100) {
      this.lastExpiry = now;
      this.index.expireSpeculative(now);
    }
    const keys = this.hasher.keys(ctx.request.targetModel, tokens).map(key53);
    const { scores } = this.index.longestPrefix(
      keys,
      candidates.map((endpoint) => endpoint.id),
      now,
    );
    const matched = new Map<string, number>();
    let best = 0;
    for (const [id, s] of scores) {
      const m = Math.floor(s);
      if (m > 0) matched.set(id, m);
      best = Math.max(best, m);
    }
    this.metrics.lookupRequests.inc();
    if (best > 0) this.metrics.lookupHits.inc(best);
    const state: PrefixMatchState = {
      blockSizeTokens: this.settings.blockSizeTokens,
      totalBlocks: keys.length,
      matched,
      keys: [keys],
    };
    ctx.state.set(this.stateKey, state);
    if (approxState) ctx.state.set(`${this.stateKey}/approx`, approxState);
    return { scores };
  }

  preRequest(ctx: SchedulingContext, result: SchedulingResult): void {
    const precise = ctx.state.get(this.stateKey) as PrefixMatchState | undefined;
    const approxState = ctx.state.get(`${this.stateKey}/approx`) as PrefixMatchState | undefined;
    if (approxState) {
      // The approximate index learns the picks from its own keys.
      ctx.state.set(this.stateKey, approxState);
      this.approx.preRequest(ctx, result);
      ctx.state.set(this.stateKey, precise);
    } else this.approx.preRequest(ctx, result);
    if (!this.settings.speculativeIndexing || !approxState || !precise || !this.index) return;
    const keys = precise.keys[0] ?? [];
    if (keys.length === 0) return;
    const until = this.now() + this.settings.speculativeTtlMs;
    for (const e of [result.results.get(result.primaryProfile)?.targets[0], result.results.get('prefill')?.targets[0]])
      if (e) this.index.speculate(e.id, keys, until);
  }

  endpointRemoved(id: string): void {
    this.subscriber?.endpointRemoved(id);
    this.index?.removeEndpoint(id);
    this.approx.endpointRemoved(id);
    if (this.index) this.metrics.indexEntries.set(this.index.size);
  }
}

/** Whether the config has a tokenizer plugin that produces token ids (so a precise plugin need not tokenize). */
export function configHasTokenizer(ctx: PluginFactoryContext): boolean {
  return ctx
    .namesProducing(TOKENIZED_PROMPT_DATA)
    .some((name) => (ctx.plugin(name) as { tokenizer?: string }).tokenizer !== 'estimate');
}
