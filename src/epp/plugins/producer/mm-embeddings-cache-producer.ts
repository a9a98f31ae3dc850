/**
 * `mm-embeddings-cache-producer` (llm-d-router): which endpoints likely still hold the encoder embeddings of the
 * request's multimodal items, for `mm-embeddings-cache-scorer`.
 *
 * Items: the unique media of a chat request, identified by a hash of the content the request names, as llm-d-router's
 * default (estimate) token-producer identifies them: an OpenAI `image_url` or `video_url` part by its URL (a data URI
 * included), `input_audio` by its data and format, `audio_url` by its URL; an Anthropic `image` block (also inside a
 * `tool_result`) by its URL, or its base64 data as a data URI. A hash repeated within one request counts once; every
 * item has size 1. A request without media produces nothing (the scorer then scores every endpoint 0).
 * (llm-d-router reads the items from its TokenizedPrompt; with a vLLM render backend their hashes are vLLM's
 * `mm_hashes`. pd-router always reads the request body: the same item has the same identity either way.)
 *
 * State: one LRU of item hashes per endpoint. `produce` records, per candidate, which of the request's items its LRU
 * holds (looking does not refresh recency); `preRequest` adds every item to the LRU of each endpoint the primary
 * profile picked; an endpoint that leaves the pool drops its LRU.
 *
 * Parameters: `cacheSizeInMBPerServer` (int, default 4096): the model server's encoder-cache budget in MiB; each LRU
 * holds cacheSizeInMBPerServer / 2 entries (llm-d-router assumes 2 MiB per item; at least 1; a value <= 0 means the
 * default, so 2048 entries). `cacheSizeInMB` (the key llm-d-router's sample deploy/config/epp-mm-embeddings-cache-
 * config.yaml writes, which llm-d-router's own strict decoder rejects) is read as cacheSizeInMBPerServer, with a warning.
 */
import { createHash } from 'node:crypto';
import { Counter, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import { ConfigError } from '../../../common/index.js';
import type {
  DataProducer,
  EndpointRemoved,
  InferenceRequest,
  PreRequest,
  SchedulingContext,
  SchedulingResult,
} from '../../framework/types.js';
import type { EppMetrics } from '../../metrics.js';
import { definePlugin } from '../definition.js';

/** The data the producer writes and mm-embeddings-cache-scorer requires. */
export const MM_EMBEDDINGS_MATCH_DATA = 'mm-embeddings-match';

export const DEFAULT_CACHE_SIZE_MB = 4096;
/** llm-d-router's assumed encoder-cache size of one item. */
const MB_PER_ITEM = 2;

export interface MmItem {
  readonly hash: string;
  readonly size: number;
  readonly modality: 'image' | 'video' | 'audio';
}

/** Per request: its unique items, and per candidate endpoint id the items that endpoint's LRU holds. */
export interface MmMatchState {
  readonly items: readonly MmItem[];
  readonly matched: ReadonlyMap<string, readonly MmItem[]>;
}

export function mmStateKey(producerName: string): string {
  return `mm-embeddings-match/${producerName}`;
}

export function mmMatchState(ctx: SchedulingContext, producerName: string): MmMatchState | undefined {
  return ctx.state.get(mmStateKey(producerName)) as MmMatchState | undefined;
}

/** Entries per endpoint for a budget in MiB (<= 0: the default). */
export function lruCapacity(cacheSizeMb: number): number {
  const mb = cacheSizeMb > 0 ? cacheSizeMb : DEFAULT_CACHE_SIZE_MB;
  return Math.max(1, Math.floor(mb / MB_PER_ITEM));
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const str = (value: unknown): string => (typeof value === 'string' ? value : '');

function hashOf(content: string): string {
  return createHash('sha256').update(content).digest('hex').slice(0, 32);
}

/** The URL of an Anthropic image source: its URL, or its base64 data as a data URI (image/jpeg when untyped). */
function anthropicImageUrl(source: unknown): string {
  if (!isObject(source)) return '';
  if (source.type === 'url' || str(source.url)) return str(source.url);
  const data = str(source.data);
  return data ? `data:${str(source.media_type) || 'image/jpeg'};base64,${data}` : '';
}

/** The unique multimodal items of a chat or Anthropic messages request, in order of first appearance. */
export function extractMmItems(request: Pick<InferenceRequest, 'body'>): MmItem[] {
  const messages = request.body?.messages;
  if (!Array.isArray(messages)) return [];
  const byHash = new Map<string, MmItem>();
  const add = (modality: MmItem['modality'], content: string) => {
    if (!content) return;
    const hash = hashOf(`${modality}\0${content}`);
    if (!byHash.has(hash)) byHash.set(hash, { hash, size: 1, modality });
  };
  const part = (block: unknown) => {
    if (!isObject(block)) return;
    switch (block.type) {
      case 'image_url':
        add('image', isObject(block.image_url) ? str(block.image_url.url) : str(block.image_url));
        break;
      case 'video_url':
        add('video', isObject(block.video_url) ? str(block.video_url.url) : str(block.video_url));
        break;
      case 'audio_url':
        add('audio', isObject(block.audio_url) ? str(block.audio_url.url) : str(block.audio_url));
        break;
      case 'input_audio':
        if (isObject(block.input_audio)) add('audio', str(block.input_audio.data) + str(block.input_audio.format));
        break;
      case 'image':
        add('image', anthropicImageUrl(block.source));
        break;
      case 'tool_result':
        if (Array.isArray(block.content))
          for (const inner of block.content) if (isObject(inner) && inner.type === 'image') part(inner);
        break;
    }
  };
  for (const m of messages) if (isObject(m) && Array.isArray(m.content)) for (const block of m.content) part(block);
  return [...byHash.values()];
}

/** One endpoint's items, least recently used first (a Set keeps insertion order). */
class ItemLru {
  private readonly entries = new Set<string>();
  constructor(private readonly capacity: number) {}
  has(hash: string): boolean {
    return this.entries.has(hash);
  }
  add(hash: string): void {
    this.entries.delete(hash);
    this.entries.add(hash);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.values().next().value!);
  }
  get size(): number {
    return this.entries.size;
  }
  keys(): string[] {
    return [...this.entries];
  }
}

interface EncoderCacheMetrics {
  queries: Counter<'plugin_type' | 'plugin_name' | 'modality'>;
  hits: Counter<'plugin_type' | 'plugin_name' | 'pod' | 'modality'>;
  ratio: Histogram<'plugin_type' | 'plugin_name'>;
}

/** Upstream's three encoder-cache families, once per registry (every producer shares them); none in the GAIE family. */
function encoderCacheMetrics(metrics: EppMetrics): EncoderCacheMetrics | undefined {
  if (metrics.family === 'gaie') return undefined;
  const registry: Registry = metrics.registry;
  const existing = registry.getSingleMetric('llm_d_epp_encoder_cache_queries_total');
  if (existing)
    return {
      queries: existing as EncoderCacheMetrics['queries'],
      hits: registry.getSingleMetric('llm_d_epp_encoder_cache_hits_total') as EncoderCacheMetrics['hits'],
      ratio: registry.getSingleMetric('llm_d_epp_encoder_cache_hit_ratio') as EncoderCacheMetrics['ratio'],
    };
  return {
    queries: new Counter({
      name: 'llm_d_epp_encoder_cache_queries_total',
      help: '[ALPHA] Total number of multimodal item hash lookups made against the encoder-cache affinity LRU.',
      labelNames: ['plugin_type', 'plugin_name', 'modality'],
      registers: [registry],
    }),
    hits: new Counter({
      name: 'llm_d_epp_encoder_cache_hits_total',
      help: '[ALPHA] Total number of multimodal item hash lookups that found a match in the encoder-cache affinity LRU, by endpoint.',
      labelNames: ['plugin_type', 'plugin_name', 'pod', 'modality'],
      registers: [registry],
    }),
    ratio: new Histogram({
      name: 'llm_d_epp_encoder_cache_hit_ratio',
      help: '[ALPHA] Ratio of matched multimodal items to total items per endpoint in an encoder-cache lookup.',
      labelNames: ['plugin_type', 'plugin_name'],
      buckets: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
      registers: [registry],
    }),
  };
}

export type MmEmbeddingsCacheProducer = DataProducer &
  PreRequest &
  EndpointRemoved & {
    readonly capacity: number;
    /** Item hashes held per endpoint id, least recently used first (tests, debugging). */
    snapshot(): Map<string, string[]>;
  };

export const mmEmbeddingsCacheProducer = definePlugin({
  kind: 'data-producer',
  produces: [MM_EMBEDDINGS_MATCH_DATA],
  description: "Which endpoints recently served the request's multimodal items (encoder-cache affinity).",
  params: z
    .object({
      cacheSizeInMBPerServer: z.number().int().optional(),
      cacheSizeInMB: z.number().int().optional(),
    })
    .strict(),
  create: (ctx, params): MmEmbeddingsCacheProducer => {
    if (params.cacheSizeInMB !== undefined) {
      if (params.cacheSizeInMBPerServer !== undefined)
        throw new ConfigError(
          `plugin "${ctx.name}" (type ${ctx.type}): set cacheSizeInMBPerServer only (cacheSizeInMB is not an llm-d-router parameter)`,
        );
      ctx.warn(
        `parameter "cacheSizeInMB" is not llm-d-router's (whose strict decoder rejects it); read as cacheSizeInMBPerServer=${params.cacheSizeInMB}`,
      );
    }
    const capacity = lruCapacity(params.cacheSizeInMBPerServer ?? params.cacheSizeInMB ?? 0);
    /** By endpoint id; `pod` is upstream's label value (namespace/name). */
    const caches = new Map<string, { lru: ItemLru; pod: string }>();
    const key = mmStateKey(ctx.name);
    const metrics = encoderCacheMetrics(ctx.metrics);
    const labels = { plugin_type: ctx.type, plugin_name: ctx.name };
    return {
      type: ctx.type,
      name: ctx.name,
      capacity,
      produce(context, candidates) {
        const items = extractMmItems(context.request);
        if (items.length === 0) return;
        if (metrics)
          for (const item of items) {
            metrics.queries.inc({ ...labels, modality: item.modality });
            for (const { lru, pod } of caches.values())
              if (lru.has(item.hash)) metrics.hits.inc({ ...labels, pod, modality: item.modality });
          }
        const matched = new Map<string, MmItem[]>();
        for (const e of candidates) {
          const lru = caches.get(e.id)?.lru;
          const held = lru ? items.filter((item) => lru.has(item.hash)) : [];
          matched.set(e.id, held);
          metrics?.ratio.observe(labels, held.length / items.length);
        }
        const state: MmMatchState = { items, matched };
        context.state.set(key, state);
      },
      preRequest(context: SchedulingContext, result: SchedulingResult) {
        const state = mmMatchState(context, ctx.name);
        if (!state) return;
        for (const e of result.results.get(result.primaryProfile)?.targets ?? []) {
          let entry = caches.get(e.id);
          if (!entry) caches.set(e.id, (entry = { lru: new ItemLru(capacity), pod: `${e.namespace}/${e.name}` }));
          for (const item of state.items) entry.lru.add(item.hash);
        }
      },
      endpointRemoved(id: string) {
        caches.delete(id);
      },
      snapshot() {
        return new Map([...caches].map(([id, entry]) => [id, entry.lru.keys()]));
      },
    };
  },
});
