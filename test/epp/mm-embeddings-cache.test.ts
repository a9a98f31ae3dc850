/**
 * mm-embeddings-cache-producer and mm-embeddings-cache-scorer (llm-d-router ebab687's multimodal encoder-cache
 * affinity), against upstream's documented semantics and its own tests (producer_test.go, scorer_test.go): capacity
 * cacheSizeInMBPerServer / 2 per endpoint (default 2048), unique items per request, match info per candidate, the
 * primary profile's picks recorded on pre-request, LRU eviction that a lookup does not refresh, an endpoint that leaves
 * dropping its state, score = matched / total (0 without media), and parameter validation through the loader.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import { silentLogger } from '../../src/common/index.js';
import {
  EppMetrics,
  PLUGIN_REGISTRY,
  loadEndpointPickerConfig,
  type Endpoint,
  type InferenceRequest,
  type SchedulingContext,
  type SchedulingResult,
  type Scorer,
} from '../../src/epp/index.js';
import {
  extractMmItems,
  lruCapacity,
  mmMatchState,
  type MmEmbeddingsCacheProducer,
} from '../../src/epp/plugins/producer/mm-embeddings-cache-producer.js';
import type { PluginFactoryContext } from '../../src/epp/plugins/definition.js';
import { metricValue } from '../helpers.js';
import { seeded } from './fixtures.js';
import { build, context, endpoint } from './plugin-build.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const PRODUCER = 'mm-embeddings-cache-producer';
const SCORER = 'mm-embeddings-cache-scorer';

const image = (url: string) => ({ type: 'image_url', image_url: { url } });
/** A chat request whose one user message holds the given content parts. */
function chat(...parts: unknown[]): Partial<InferenceRequest> {
  return {
    path: '/v1/chat/completions',
    api: 'chat',
    body: { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, ...parts] }] },
  };
}

function producer(params: Record<string, unknown> = {}, warnings: string[] = []): MmEmbeddingsCacheProducer {
  return build<MmEmbeddingsCacheProducer>(PRODUCER, params, {}, warnings);
}

function scorerFor(prod: MmEmbeddingsCacheProducer, params: Record<string, unknown> = {}): Scorer {
  return build<Scorer>(SCORER, params, { [prod.name]: prod });
}

const picked = (...targets: Endpoint[]): SchedulingResult => ({
  primaryProfile: 'default',
  results: new Map([['default', { targets, scored: [] }]]),
});

/** One request through produce, the scorer and (when `pick` is given) pre-request, as the director runs them. */
function cycle(
  prod: MmEmbeddingsCacheProducer,
  scorer: Scorer,
  request: Partial<InferenceRequest>,
  candidates: Endpoint[],
  pick?: Endpoint[],
): { ctx: SchedulingContext; scores: number[] } {
  const ctx = context(request);
  prod.produce(ctx, candidates);
  const scores = Array.from(scorer.score(ctx, candidates));
  if (pick) prod.preRequest(ctx, picked(...pick));
  return { ctx, scores };
}

describe('capacity (cacheSizeInMBPerServer MiB / 2 MiB per item)', () => {
  it('4 MiB → 2 entries, 2048 → 1024, unset or ≤ 0 → the 4096 MiB default (2048), never below 1', () => {
    expect([lruCapacity(4), lruCapacity(2048), lruCapacity(0), lruCapacity(-5), lruCapacity(1)]).toEqual([
      2, 1024, 2048, 2048, 1,
    ]);
    expect(producer().capacity).toBe(2048);
    expect(producer({ cacheSizeInMBPerServer: 4 }).capacity).toBe(2);
    expect(producer({ cacheSizeInMBPerServer: 0 }).capacity).toBe(2048);
  });

  it("cacheSizeInMB (the key upstream's sample writes) is read as cacheSizeInMBPerServer, with a warning", () => {
    const warnings: string[] = [];
    expect(producer({ cacheSizeInMB: 2048 }, warnings).capacity).toBe(1024);
    expect(warnings).toEqual([expect.stringMatching(/"cacheSizeInMB" is not llm-d-router's .*=2048$/)]);
    expect(() => producer({ cacheSizeInMB: 2048, cacheSizeInMBPerServer: 8 })).toThrow(ConfigError);
  });
});

describe('parameters are checked when the config loads', () => {
  const load = (producerParams: string, scorerParams = '') =>
    loadEndpointPickerConfig(
      `${LLMD}plugins:\n- type: ${PRODUCER}\n${producerParams}- type: ${SCORER}\n${scorerParams}- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins: [{pluginRef: ${SCORER}}, {pluginRef: max-score-picker}]\n`,
    );

  it('an unknown or mistyped parameter is a load error naming the plugin and the key', () => {
    expect(() => load('  parameters: {cacheSize: 4}\n')).toThrow(/mm-embeddings-cache-producer.*cacheSize/);
    expect(() => load('  parameters: {cacheSizeInMBPerServer: "bad"}\n')).toThrow(
      /mm-embeddings-cache-producer.*cacheSizeInMBPerServer/,
    );
    expect(() => load('  parameters: {cacheSizeInMBPerServer: 1.5}\n')).toThrow(/cacheSizeInMBPerServer/);
    expect(() => load('', '  parameters: {weight: 2}\n')).toThrow(/mm-embeddings-cache-scorer.*weight/);
  });

  it('producerName must name a producer; a scorer alone gets one added by the loader', () => {
    expect(() => load('', '  parameters: {producerName: max-score-picker}\n')).toThrow(
      /producerName "max-score-picker" is not an mm-embeddings-cache-producer/,
    );
    const c = loadEndpointPickerConfig(
      `${LLMD}plugins:\n- type: ${SCORER}\n- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins: [{pluginRef: ${SCORER}}, {pluginRef: max-score-picker}]\n`,
    );
    expect(c.plugins.get(PRODUCER)?.type).toBe(PRODUCER);
    expect(load('  parameters: {cacheSizeInMBPerServer: 4}\n').plugins.get(PRODUCER)).toMatchObject({ capacity: 2 });
  });
});

describe('the request’s multimodal items', () => {
  it('unique by content: the same image twice counts once; each item has size 1', () => {
    const items = extractMmItems(chat(image('https://x/a.png'), image('https://x/b.png'), image('https://x/a.png')));
    expect(items.map((item) => [item.modality, item.size])).toEqual([
      ['image', 1],
      ['image', 1],
    ]);
    expect(items[0].hash).not.toBe(items[1].hash);
    // The same content in another request has the same identity.
    expect(extractMmItems(chat(image('https://x/a.png')))[0].hash).toBe(items[0].hash);
  });

  it('image_url, video_url, audio_url, input_audio parts and Anthropic image blocks (also in a tool_result)', () => {
    const openai = extractMmItems(
      chat(
        image('data:image/png;base64,iVBORw0KGgo='),
        { type: 'video_url', video_url: { url: 'https://x/v.mp4' } },
        { type: 'audio_url', audio_url: { url: 'https://x/a.wav' } },
        { type: 'input_audio', input_audio: { data: 'UklGR', format: 'wav' } },
      ),
    );
    expect(openai.map((item) => item.modality)).toEqual(['image', 'video', 'audio', 'audio']);
    const anthropic = extractMmItems({
      body: {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
              { type: 'image', source: { type: 'url', url: 'https://x/c.png' } },
              {
                type: 'tool_result',
                tool_use_id: 't',
                content: [{ type: 'image', source: { type: 'url', url: 'https://x/d.png' } }],
              },
            ],
          },
        ],
      },
    });
    expect(anthropic.map((item) => item.modality)).toEqual(['image', 'image', 'image']);
    // An Anthropic base64 image is the same item as the OpenAI data URI of the same bytes.
    expect(anthropic[0].hash).toBe(openai[0].hash);
  });

  it('no media: text-only chat, string content, completions prompts, no body', () => {
    expect(extractMmItems(chat())).toEqual([]);
    expect(extractMmItems({ body: { messages: [{ role: 'user', content: 'hi' }] } })).toEqual([]);
    expect(extractMmItems({ body: { prompt: 'hi' } })).toEqual([]);
    expect(extractMmItems({})).toEqual([]);
    expect(extractMmItems(chat({ type: 'image_url', image_url: { url: '' } }, { type: 'image_url' }, 'x'))).toEqual([]);
  });
});

describe('producer and scorer over requests', () => {
  it('match info per candidate: every endpoint holding an item matches it; pre-request records the primary picks', () => {
    const p = producer();
    const s = scorerFor(p);
    const [a, b, c] = [endpoint(), endpoint(), endpoint()];
    const cat = image('https://x/cat.png');
    const dog = image('https://x/dog.png');
    // Nothing known yet: all 0. The pick (a and b, as a profile picking two) learns the cat.
    expect(cycle(p, s, chat(cat), [a, b, c], [a, b]).scores).toEqual([0, 0, 0]);
    const { ctx, scores } = cycle(p, s, chat(cat, dog), [a, b, c], [c]);
    // Two items, one of them held by a and b: 1/2.
    expect(scores).toEqual([0.5, 0.5, 0]);
    const state = mmMatchState(ctx, p.name)!;
    expect(state.items).toHaveLength(2);
    expect(state.matched.get(a.id)?.length).toBe(1);
    expect(state.matched.get(c.id)).toEqual([]);
    // c was picked for cat + dog: it holds both now.
    expect(cycle(p, s, chat(dog, cat), [a, b, c]).scores).toEqual([0.5, 0.5, 1]);
    expect(cycle(p, s, chat(dog), [a, b, c]).scores).toEqual([0, 0, 1]);
  });

  it('only the primary profile’s picks are recorded', () => {
    const p = producer();
    const s = scorerFor(p);
    const [d, pf] = [endpoint(), endpoint()];
    const ctx = context(chat(image('https://x/1.png')));
    p.produce(ctx, [d, pf]);
    p.preRequest(ctx, {
      primaryProfile: 'decode',
      results: new Map([
        ['decode', { targets: [d], scored: [] }],
        ['prefill', { targets: [pf], scored: [] }],
      ]),
    });
    expect(cycle(p, s, chat(image('https://x/1.png')), [d, pf]).scores).toEqual([1, 0]);
  });

  it('a request without media leaves no match info: every endpoint scores 0 and nothing is recorded', () => {
    const p = producer();
    const s = scorerFor(p);
    const e = endpoint();
    const { ctx, scores } = cycle(p, s, chat(), [e], [e]);
    expect(mmMatchState(ctx, p.name)).toBeUndefined();
    expect(scores).toEqual([0]);
    expect(p.snapshot().size).toBe(0);
  });

  it('each endpoint keeps its last cacheSizeInMBPerServer / 2 items; a lookup does not refresh an item', () => {
    const p = producer({ cacheSizeInMBPerServer: 4 });
    const s = scorerFor(p);
    const e = endpoint();
    const [one, two, three] = ['1', '2', '3'].map((i) => image(`https://x/${i}.png`));
    cycle(p, s, chat(one), [e], [e]);
    cycle(p, s, chat(two), [e], [e]);
    // Looking one up (not picked) leaves it least recently used: three evicts it.
    expect(cycle(p, s, chat(one), [e]).scores).toEqual([1]);
    cycle(p, s, chat(three), [e], [e]);
    expect(p.snapshot().get(e.id)).toHaveLength(2);
    expect([one, two, three].map((item) => cycle(p, s, chat(item), [e]).scores[0])).toEqual([0, 1, 1]);
    // A pick refreshes: two is now the most recent, so the next new item evicts three.
    cycle(p, s, chat(two), [e], [e]);
    cycle(p, s, chat(one), [e], [e]);
    expect([one, two, three].map((item) => cycle(p, s, chat(item), [e]).scores[0])).toEqual([1, 1, 0]);
  });

  it('an endpoint that leaves the pool drops its state; the others keep theirs', () => {
    const p = producer();
    const s = scorerFor(p);
    const [a, b] = [endpoint(), endpoint()];
    const cat = image('https://x/cat.png');
    cycle(p, s, chat(cat), [a, b], [a, b]);
    p.endpointRemoved(b.id);
    expect([...p.snapshot().keys()]).toEqual([a.id]);
    expect(cycle(p, s, chat(cat), [a, b]).scores).toEqual([1, 0]);
  });

  it('the scorer reads the producer it names', () => {
    const first = build<MmEmbeddingsCacheProducer>(PRODUCER, {}, {}, [], 'first');
    const second = build<MmEmbeddingsCacheProducer>(PRODUCER, {}, {}, [], 'second');
    const others = { first, second };
    const bySecond = build<Scorer>(SCORER, { producerName: 'second' }, others);
    const byDefault = build<Scorer>(SCORER, {}, others);
    const e = endpoint();
    const cat = chat(image('https://x/cat.png'));
    const ctx = context(cat);
    second.produce(ctx, [e]);
    second.preRequest(ctx, picked(e));
    const again = context(cat);
    first.produce(again, [e]);
    second.produce(again, [e]);
    expect(Array.from(bySecond.score(again, [e]))).toEqual([1]);
    expect(Array.from(byDefault.score(again, [e]))).toEqual([0]);
  });
});

describe("metrics (upstream's encoder_cache families, llm-d family)", () => {
  function withMetrics(metrics: EppMetrics, name: string): MmEmbeddingsCacheProducer {
    const def = PLUGIN_REGISTRY[PRODUCER];
    const ctx: PluginFactoryContext = {
      type: PRODUCER,
      name,
      logger: silentLogger(),
      metrics,
      random: seeded(),
      plugin: () => {
        throw new Error('none');
      },
      namesProducing: () => [],
      typeOf: () => undefined,
      kindsOf: () => [],
      warn: () => undefined,
    };
    return def.create(ctx, def.params.parse({})) as MmEmbeddingsCacheProducer;
  }

  it('queries per item, hits per endpoint holding it, the hit ratio per candidate; two producers share the families', async () => {
    const metrics = new EppMetrics(undefined, 'llm-d');
    const p = withMetrics(metrics, 'mm');
    withMetrics(metrics, 'other');
    const s = scorerFor(p);
    const [a, b] = [endpoint(), endpoint()];
    const cat = image('https://x/cat.png');
    cycle(p, s, chat(cat), [a, b], [a]);
    cycle(p, s, chat(cat, image('https://x/dog.png')), [a, b]);
    const text = await metrics.registry.metrics();
    const labels = { plugin_type: PRODUCER, plugin_name: 'mm' };
    expect(metricValue(text, 'llm_d_epp_encoder_cache_queries_total', { ...labels, modality: 'image' })).toBe(3);
    expect(
      metricValue(text, 'llm_d_epp_encoder_cache_hits_total', {
        ...labels,
        pod: `${a.namespace}/${a.name}`,
        modality: 'image',
      }),
    ).toBe(1);
    expect(metricValue(text, 'llm_d_epp_encoder_cache_hit_ratio_count', labels)).toBe(4);
    expect(metricValue(text, 'llm_d_epp_encoder_cache_hit_ratio_sum', labels)).toBe(0.5);
    // The GAIE family has no such metrics.
    const gaie = new EppMetrics(undefined, 'gaie');
    withMetrics(gaie, 'mm');
    expect(await gaie.registry.metrics()).not.toContain('encoder_cache');
  });
});
