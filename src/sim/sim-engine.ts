/**
 * One simulated vLLM engine (one data-parallel rank): its scheduler, KV cache, latency model, metrics, fault switches
 * and the processing of one inference request from admission to the last token.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { createRegistry, dialableHost, type ApiType, type Registry } from '../common/index.js';
import { KVCacheSim, blockHashes, type BlockOrigin } from './kv-cache.js';
import { BlockKeyHasher, formatTopic } from '../common/kv-events/index.js';
import {
  KvEventPublisher,
  offsetEndpointPort,
  vllmBinds,
  type KvEventPublisherSettings,
  type VllmKvEventsConfig,
} from './kv-events.js';
import { LatencyModel, type LatencySettings } from './latency.js';
import { LoraState, parseLoraModules } from './lora.js';
import { SimMetrics } from './metrics.js';
import { SeededRandom } from './random.js';
import { Scheduler, type Slot } from './scheduler.js';
import { generateOutput, type GeneratedOutput } from './generation.js';
import { RequestPacer, StepLoop, type Pacer, type StepSettings } from './pacing.js';
import type { SimConfig } from './options.js';

/** The publisher settings --kv-events-config (vLLM) or --zmq-endpoint (llm-d-inference-sim) ask for, if any. */
export function kvEventSettings(
  config: SimConfig,
  rank: number,
  podIp: string,
  model: string,
): KvEventPublisherSettings | undefined {
  const base = {
    batchSize: config.eventBatchSize,
    format: config.useVllmMapEventFormat ? ('map' as const) : ('array' as const),
    blockSize: config.blockSize,
    medium: 'GPU',
  };
  if (config.kvEventsConfig) {
    const c = JSON.parse(config.kvEventsConfig) as VllmKvEventsConfig;
    if (!c.enable_kv_cache_events || c.publisher === 'null') return undefined;
    const endpoint = offsetEndpointPort(c.endpoint ?? 'tcp://*:5557', rank);
    return {
      ...base,
      endpoint,
      bind: vllmBinds(endpoint),
      topic: c.topic ?? '',
      maxQueue: c.max_queue_size ?? 100_000,
      sendHighWaterMark: c.hwm ?? 100_000,
    };
  }
  if (config.zmqEndpoint)
    return {
      ...base,
      endpoint: config.zmqEndpoint,
      bind: false,
      topic: formatTopic(podIp, model),
      maxQueue: 100_000,
      sendHighWaterMark: 100_000,
    };
  return undefined;
}

export interface Faults {
  /** Requests never answer (until the client leaves or the fault is cleared). */
  hang: boolean;
  /** Connections are destroyed as soon as a request arrives. */
  dropConnections: boolean;
  /** Every inference request gets this status (0 = off). */
  returnError: number;
  /** When > 0, only this many more requests get returnError, then it switches off. */
  returnErrorCount: number;
}

/** One request as the simulator saw it, for /admin and tests. */
export interface RequestRecord {
  id: string;
  receivedAt: string;
  /**
   * Arrival in epoch milliseconds with sub-millisecond precision, comparable across simulators on one machine: the
   * order in which a router's legs reached them (encode, then prefill, then decode).
   */
  receivedAtMs: number;
  method: string;
  path: string;
  api?: ApiType;
  /** prefill: do_remote_decode; decode: do_remote_prefill; aggregated: neither. */
  kind?: 'prefill' | 'decode' | 'aggregated' | 'encode';
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  bodyTruncated: boolean;
  kvTransferParams?: unknown;
  status?: number;
  promptTokens?: number;
  cachedTokens?: number;
  outputTokens?: number;
  finishReason?: string;
  aborted?: boolean;
}

const RECORD_BODY_LIMIT = 64 * 1024;

export interface EngineRequest {
  id: string;
  api: ApiType;
  body: Record<string, unknown>;
  promptTokenIds: number[];
  maxTokens: number | undefined;
  minTokens: number;
  ignoreEos: boolean;
  prefillOnly: boolean;
  remotePrefill: boolean;
  /** Answer at once with finish_reason cache_threshold when cached/prompt is below this (request or global). */
  cacheHitThreshold?: number;
  /** X-Cache-Threshold-Finish-Reason: true forces the cache_threshold answer. */
  forceCacheThreshold: boolean;
  cacheSalt: string;
  /** The LoRA adapter the request names (--lora-modules), if any. */
  lora?: string;
  signal: AbortSignal;
}

export interface TokenSink {
  /** Called once when the first token is ready (after prefill or KV transfer), with everything that will be emitted. */
  first(output: GeneratedOutput, cachedTokens: number): void | Promise<void>;
  /** Called for every token i, at its time. */
  token(i: number): void | Promise<void>;
}

export interface EngineResult {
  output: GeneratedOutput;
  slot: Slot;
  promptTokens: number;
  cachedTokens: number;
}

/** One simulated vLLM engine (one data-parallel rank). */
export class SimEngine {
  readonly registry: Registry = createRegistry();
  readonly metrics: SimMetrics;
  readonly loras: LoraState;
  readonly scheduler: Scheduler;
  readonly kv: KVCacheSim | undefined;
  /** vLLM's KV-event publisher, when --kv-events-config or --zmq-endpoint asks for one. */
  readonly kvEvents: KvEventPublisher | undefined;
  private readonly engineHasher: BlockKeyHasher | undefined;
  readonly latency: LatencyModel;
  readonly rng: SeededRandom;
  readonly engineId: string;
  readonly faults: Faults = { hang: false, dropConnections: false, returnError: 0, returnErrorCount: 0 };
  readonly startedAt = Date.now();
  private readonly records: RequestRecord[] = [];
  /** Port this rank listens on; set once the server is bound. */
  port = 0;
  /** The step engine's loop (--engine-model step). */
  private readonly stepLoop: StepLoop;

  constructor(
    public config: SimConfig,
    readonly rank: number,
    readonly logger: Logger,
  ) {
    const seed = config.seed >= 0 ? config.seed + rank : Date.now() + rank;
    this.rng = new SeededRandom(seed);
    this.latency = new LatencyModel(latencySettings(config), this.rng);
    const events = config.enableKvcache
      ? kvEventSettings(config, rank, this.advertisedHost, this.displayModel)
      : undefined;
    this.kvEvents = events ? new KvEventPublisher(events, rank, logger) : undefined;
    this.engineHasher = events ? new BlockKeyHasher(config.blockSize, config.hashSeed) : undefined;
    this.kv = config.enableKvcache ? new KVCacheSim(config.kvCacheSize, config.blockSize, this.kvEvents) : undefined;
    this.metrics = new SimMetrics(this.registry, {
      model: this.displayModel,
      maxModelLen: config.maxModelLen,
      blockSize: config.blockSize,
      kvCacheSize: config.kvCacheSize,
      kvCacheEnabled: config.enableKvcache,
    });
    this.loras = new LoraState(parseLoraModules(config.loraModules), config.maxLoras, this.registry);
    this.scheduler = new Scheduler(config.maxNumSeqs, config.maxWaitingQueueLength, this.kv, () => this.updateGauges());
    this.stepLoop = new StepLoop(stepSettings(config), this.latency, () => this.updateGauges());
    this.engineId = config.engineId
      ? config.dataParallelSize > 1
        ? `${config.engineId}-dp${rank}`
        : config.engineId
      : `pd-sim-${randomUUID()}`;
  }

  /** The name reported in responses and metrics: the first served model name. */
  get displayModel(): string {
    return this.servedModels[0];
  }

  get servedModels(): string[] {
    return this.config.servedModelName.length > 0 ? this.config.servedModelName : this.config.model;
  }

  get advertisedHost(): string {
    if (this.config.advertiseHost) return this.config.advertiseHost;
    return dialableHost(this.config.host);
  }

  private updateGauges(): void {
    const l = this.metrics.labels;
    // Step engine: admitted requests whose prefill has not started count as waiting, as in vLLM V1.
    const queued =
      this.config.engineModel === 'step' ? ((this.stepLoop as StepLoop | undefined)?.queuedPrefills ?? 0) : 0;
    this.metrics.running.set(l, this.scheduler.running - queued);
    this.metrics.waiting.set(l, this.scheduler.waiting + queued);
    if (this.kv) this.metrics.kvUsage.set(l, this.kv.usage());
  }

  /** Converts a wall-clock duration into simulated seconds for metrics. */
  private simSeconds(wallMs: number): number {
    const scale = this.config.timeScale;
    return scale > 0 ? wallMs / scale / 1000 : 0;
  }

  promptHashes(tokens: readonly number[], salt: string): string[] {
    if (!this.kv) return [];
    let s = 0;
    for (let i = 0; i < salt.length; i++) s = (Math.imul(s, 31) + salt.charCodeAt(i)) >>> 0;
    return blockHashes(tokens, this.config.blockSize, s);
  }

  /** Whether a request could ever fit in the KV cache. */
  fitsKvCache(promptTokens: number, maxOutputTokens: number): boolean {
    return !this.kv || this.kv.fitsAtAll(promptTokens, maxOutputTokens);
  }

  /**
   * Runs one request: waits for admission, sleeps the prefill (or KV-transfer) time, then emits tokens at the
   * inter-token latency. Throws QueueFullError, or the abort reason when the client leaves.
   */
  async run(req: EngineRequest, sink: TokenSink): Promise<EngineResult> {
    const arrival = performance.now();
    const promptTokens = req.promptTokenIds.length;
    const reserveOutput = Math.max(1, Math.min(req.maxTokens ?? 64, this.config.maxModelLen - promptTokens));
    const hashes = this.promptHashes(req.promptTokenIds, req.cacheSalt);
    // Blocks of salted prompts are not reported: vLLM marks them with extra keys a router cannot reproduce.
    const origin: BlockOrigin | undefined =
      this.engineHasher && !req.cacheSalt
        ? { tokens: req.promptTokenIds, engineHashes: this.engineHasher.keys(this.displayModel, req.promptTokenIds) }
        : undefined;
    if (req.lora) this.loras.enqueue(req.lora);
    let slot: Slot;
    try {
      slot = await this.scheduler.acquire(
        { id: req.id, promptTokens, hashes, maxOutputTokens: reserveOutput, origin },
        req.signal,
      );
    } catch (e) {
      if (req.lora) this.loras.dequeue(req.lora);
      throw e;
    }
    if (req.lora) this.loras.start(req.lora);
    const m = this.metrics;
    const l = m.labels;
    try {
      const started = performance.now();
      let cachedTokens = slot.cachedTokens;
      let transferMs: number | undefined;
      if (req.remotePrefill) {
        // The KV cache arrives from the prefiller: everything but the last prompt token is reported as cached.
        transferMs = this.latency.kvTransferMs(promptTokens);
        const external = Math.max(0, promptTokens - 1 - cachedTokens);
        m.externalPrefixQueries.inc(l, Math.max(0, promptTokens - cachedTokens));
        m.externalPrefixHits.inc(l, external);
        cachedTokens = Math.max(cachedTokens, promptTokens - 1, 0);
        m.kvTransferTime.observe(l, transferMs / 1000);
      }
      if (this.kv) {
        m.prefixQueries.inc(l, promptTokens);
        m.prefixHits.inc(l, slot.cachedTokens);
      }
      const threshold =
        req.cacheHitThreshold ??
        (this.config.globalCacheHitThreshold > 0 ? this.config.globalCacheHitThreshold : undefined);
      const hitRate = promptTokens > 0 ? slot.cachedTokens / promptTokens : 0;
      if (req.forceCacheThreshold || (threshold !== undefined && hitRate < threshold)) {
        // Upstream answers at once, without prefill, so a router can fall back to remote prefill (shared-storage connector).
        const output: GeneratedOutput = { tokens: [], tokenIds: [], finishReason: 'cache_threshold' };
        await sink.first(output, slot.cachedTokens);
        m.success.inc({ ...l, finish_reason: 'cache_threshold' });
        return { output, slot, promptTokens, cachedTokens: slot.cachedTokens };
      }
      const output = generateOutput(this.rng, {
        api: req.api,
        body: req.body,
        mode: this.config.mode,
        maxTokens: req.maxTokens,
        minTokens: req.minTokens,
        ignoreEos: req.ignoreEos,
        promptTokens,
        maxModelLen: this.config.maxModelLen,
        prefillOnly: req.prefillOnly,
      });
      const n = output.tokens.length;
      const pacer: Pacer =
        this.config.engineModel === 'step'
          ? this.stepLoop.pacer({
              prefillTokens: promptTokens - slot.cachedTokens,
              transferMs,
              outputTokens: Math.max(1, n),
              signal: req.signal,
            })
          : new RequestPacer(
              { prefillTokens: promptTokens - slot.cachedTokens, transferMs, outputTokens: n, signal: req.signal },
              this.latency,
              () => this.scheduler.running,
              promptTokens,
              slot.cachedTokens,
              this.config.timeScale,
            );
      let firstTokenAt: number;
      try {
        const prefillMs = await pacer.prefill();
        firstTokenAt = performance.now();
        m.ttft.observe(l, this.simSeconds(firstTokenAt - arrival));
        m.prefillTime.observe(l, prefillMs / 1000);
        await sink.first(output, cachedTokens);
        for (let i = 0; i < n; i++) {
          if (i > 0) {
            const itlSeconds = (await pacer.next(i)) / 1000;
            m.itl.observe(l, itlSeconds);
            m.tpot.observe(l, itlSeconds);
          }
          if (this.kv) this.kv.grow(req.id, promptTokens + i + 1);
          await sink.token(i);
        }
      } finally {
        pacer.leave();
      }
      const done = performance.now();
      const decodeSeconds = this.simSeconds(done - firstTokenAt);
      m.decodeTime.observe(l, decodeSeconds);
      if (n > 1) m.requestTpot.observe(l, decodeSeconds / (n - 1));
      m.inferenceTime.observe(l, this.simSeconds(done - started));
      m.queueTime.observe(l, this.simSeconds(slot.queuedMs));
      m.e2e.observe(l, this.simSeconds(done - arrival));
      m.success.inc({ ...l, finish_reason: output.finishReason });
      m.promptTokens.inc(l, promptTokens);
      m.generationTokens.inc(l, n);
      m.requestPromptTokens.observe(l, promptTokens);
      m.requestGenerationTokens.observe(l, n);
      if (req.maxTokens !== undefined) {
        m.requestParamsMaxTokens.observe(l, req.maxTokens);
        m.maxNumGenerationTokens.observe(l, req.maxTokens);
      }
      return { output, slot, promptTokens, cachedTokens };
    } finally {
      this.scheduler.release(slot);
      if (req.lora) this.loras.finish(req.lora);
    }
  }

  /** Applies new latency settings at runtime (POST /admin/config). */
  reconfigure(next: SimConfig): void {
    this.config = next;
    this.latency.update(latencySettings(next));
    this.stepLoop.update(stepSettings(next));
  }

  /** Keeps the request for /admin/requests; `bodyBytes` is the size of the body as received. */
  record(requestRecord: RequestRecord, bodyBytes: number): RequestRecord {
    if (this.config.recordRequests <= 0) return requestRecord;
    // Only a body over the limit is serialised again (to keep its first bytes).
    if (requestRecord.body !== undefined && bodyBytes > RECORD_BODY_LIMIT) {
      requestRecord.body = JSON.stringify(requestRecord.body).slice(0, RECORD_BODY_LIMIT);
      requestRecord.bodyTruncated = true;
    }
    this.records.push(requestRecord);
    if (this.records.length > this.config.recordRequests)
      this.records.splice(0, this.records.length - this.config.recordRequests);
    return requestRecord;
  }

  recentRequests(): readonly RequestRecord[] {
    return this.records;
  }

  clearRecords(): void {
    this.records.length = 0;
  }
}

export function stepSettings(optionValues: SimConfig): StepSettings {
  return {
    maxNumBatchedTokens: optionValues.maxNumBatchedTokens,
    prefillTimePerToken: optionValues.prefillTimePerToken,
    prefillOverhead: optionValues.prefillOverhead,
    timeScale: optionValues.timeScale,
  };
}

export function latencySettings(optionValues: SimConfig): LatencySettings {
  return {
    latencyCalculator: optionValues.latencyCalculator,
    timeToFirstToken: optionValues.timeToFirstToken,
    timeToFirstTokenStdDev: optionValues.timeToFirstTokenStdDev,
    interTokenLatency: optionValues.interTokenLatency,
    interTokenLatencyStdDev: optionValues.interTokenLatencyStdDev,
    prefillOverhead: optionValues.prefillOverhead,
    prefillTimePerToken: optionValues.prefillTimePerToken,
    prefillTimeStdDev: optionValues.prefillTimeStdDev,
    kvCacheTransferLatency: optionValues.kvCacheTransferLatency,
    kvCacheTransferLatencyStdDev: optionValues.kvCacheTransferLatencyStdDev,
    kvCacheTransferTimePerToken: optionValues.kvCacheTransferTimePerToken,
    kvCacheTransferTimeStdDev: optionValues.kvCacheTransferTimeStdDev,
    timeFactorUnderLoad: optionValues.timeFactorUnderLoad,
    maxNumSeqs: optionValues.maxNumSeqs,
    latencyMsTruncation: optionValues.latencyMsTruncation,
  };
}
