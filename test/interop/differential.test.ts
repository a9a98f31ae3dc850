/**
 * Differential test: pd-router's simulator and llm-d-inference-sim started with the same flags and environment, sent
 * the same requests. Compared: status codes, content types, the pod/request-id headers, the JSON shape of every answer
 * (field names and JSON types, values ignored), SSE frame sequences and shapes, error messages, and the vLLM metric
 * families (names, types, labels) after the same traffic.
 *
 * Where the two differ on purpose, the exact difference is asserted here and listed in the README's "Intended
 * differences from llm-d-inference-sim" table; anything else is a failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli } from '../helpers.js';
import { shapeDiff, shapeOf, streamDiff } from './shape.js';
import { MODEL, interopEnv, skipInterop, startUpstreamSim, type UpstreamSim } from './upstream.js';

/** Identical for both simulators (upstream also gets --port; ours --port 0 --host 127.0.0.1). */
const FLAGS = [
  '--model',
  MODEL,
  '--mode',
  'echo',
  '--max-model-len',
  '64',
  '--seed',
  '7',
  '--enable-request-id-headers',
  '--enable-kvcache=false',
  '--force-dummy-tokenizer',
];
const ENV = { POD_NAME: 'sim-pod-0', POD_NAMESPACE: 'interop' };

let upstream: UpstreamSim;
let ours: Awaited<ReturnType<typeof startCli>>;
let oursUrl: string;

beforeAll(async () => {
  if (skipInterop()) return;
  [upstream, ours] = await Promise.all([
    startUpstreamSim(FLAGS, { env: ENV, name: 'upstream (differential)' }),
    startCli(
      ['sim', ...FLAGS, '--port', '0', '--host', '127.0.0.1', '--log-level', 'info'],
      /"url":"(http:[^"]+)".*simulator listening/,
      { env: ENV },
    ),
  ]);
  oursUrl = ours.match[1]!;
}, 60_000);

afterAll(async () => {
  await Promise.all([upstream?.close(), ours?.stop()]);
});

const KV_PREFILL = {
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
};
const KV_DECODE = {
  do_remote_decode: false,
  do_remote_prefill: true,
  remote_engine_id: 'DUMMY_ID',
  remote_block_ids: ['DUMMY_ID'],
  remote_host: 'DUMMY',
  remote_port: 1234,
  tp_size: 1,
};
const chat = { model: MODEL, messages: [{ role: 'user', content: 'Hello, world!' }], max_tokens: 5 };
const completion = { model: MODEL, prompt: 'Hello, world!', max_tokens: 5 };
const responses = { model: MODEL, input: 'Hello, world!', max_output_tokens: 5 };
const messages = { model: MODEL, messages: [{ role: 'user', content: 'Hello, world!' }], max_tokens: 5 };
const generate = { model: MODEL, token_ids: [1, 2, 3], sampling_params: { max_tokens: 5 } };
const stream = { stream: true, stream_options: { include_usage: true } };

/** Our Responses-API objects follow OpenAI's full schema; llm-d-inference-sim v0.10.2 omits these fields. */
const RESPONSES_EXTRAS = ['+output[].content[].annotations', '+output[].id', '+usage.input_tokens_details'];
/** The same in streams, plus output_index/content_index, which upstream drops when 0 (Go omitempty) and OpenAI always sends. */
const RESPONSES_STREAM_EXTRAS = [
  '+response.output_item.added.output_index',
  '+response.content_part.added.content_index',
  '+response.content_part.added.output_index',
  '+response.content_part.added.part.annotations',
  '+response.content_part.added.part.text',
  '+response.output_text.delta.content_index',
  '+response.output_text.delta.output_index',
  '+response.output_text.done.content_index',
  '+response.output_text.done.output_index',
  '+response.content_part.done.content_index',
  '+response.content_part.done.output_index',
  '+response.content_part.done.part.annotations',
  '+response.output_item.done.item.content[].annotations',
  '+response.output_item.done.output_index',
  '+response.completed.response.output[].content[].annotations',
  '+response.completed.response.usage.input_tokens_details',
];
/** pd-router returns real transfer parameters: block ids are numbers, and vLLM's remote_request_id is there. */
const KV_EXTRAS = ['~kv_transfer_params.remote_block_ids[]: string -> number', '+kv_transfer_params.remote_request_id'];

interface Case {
  name: string;
  method?: 'GET' | 'POST';
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Expected shape differences (upstream -> ours); each one is in the README's intended-differences table. */
  diff?: string[];
  /** Status differs on purpose: [upstream, ours]. */
  status?: [number, number];
  /** The error message differs on purpose (the rest of the envelope must not). */
  messageDiffers?: boolean;
  /** Upstream adds the pod and request-id headers to this error, pd-router does not. */
  upstreamOnlyHeaders?: boolean;
  /** Ids differ on purpose (completions: upstream appends the prompt index "-0"). */
  idSuffix?: string;
}

const CASES: Case[] = [
  { name: 'chat', path: '/v1/chat/completions', body: chat },
  { name: 'chat, streamed', path: '/v1/chat/completions', body: { ...chat, ...stream } },
  { name: 'completions', path: '/v1/completions', body: completion, idSuffix: '-0' },
  {
    name: 'completions, prompt with punctuation, non-ASCII and an apostrophe (tokenizer parity)',
    path: '/v1/completions',
    body: { model: MODEL, prompt: "héllo a|b it's {x: [1,2]} — done?\tyes", max_tokens: 3 },
    idSuffix: '-0',
  },
  {
    name: 'chat, system + user turns (tokenizer parity)',
    path: '/v1/chat/completions',
    body: {
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: "What's 2+2?" },
      ],
      max_tokens: 3,
    },
  },
  { name: 'completions, streamed', path: '/v1/completions', body: { ...completion, ...stream } },
  { name: 'responses', path: '/v1/responses', body: responses, diff: RESPONSES_EXTRAS },
  {
    name: 'responses, streamed',
    path: '/v1/responses',
    body: { ...responses, stream: true },
    diff: RESPONSES_STREAM_EXTRAS,
  },
  { name: 'messages', path: '/v1/messages', body: messages },
  {
    name: 'messages, streamed',
    path: '/v1/messages',
    body: { ...messages, stream: true },
    diff: ['+content_block_start.content_block.text'],
  },
  { name: 'generate', path: '/inference/v1/generate', body: generate },
  { name: 'generate, streamed', path: '/inference/v1/generate', body: { ...generate, ...stream } },
  {
    name: 'chat prefill (do_remote_decode)',
    path: '/v1/chat/completions',
    body: { ...chat, kv_transfer_params: KV_PREFILL },
    diff: KV_EXTRAS,
  },
  {
    name: 'completions prefill',
    path: '/v1/completions',
    body: { ...completion, kv_transfer_params: KV_PREFILL },
    diff: KV_EXTRAS,
    idSuffix: '-0',
  },
  {
    name: 'generate prefill',
    path: '/inference/v1/generate',
    body: { ...generate, kv_transfer_params: KV_PREFILL },
    diff: KV_EXTRAS,
  },
  {
    name: 'responses prefill',
    path: '/v1/responses',
    body: { ...responses, kv_transfer_params: KV_PREFILL },
    diff: ['+kv_transfer_params', ...RESPONSES_EXTRAS],
  },
  {
    name: 'messages prefill',
    path: '/v1/messages',
    body: { ...messages, kv_transfer_params: KV_PREFILL },
    diff: ['+kv_transfer_params'],
  },
  {
    name: "chat decode (do_remote_prefill, upstream's dummy params)",
    path: '/v1/chat/completions',
    body: { ...chat, kv_transfer_params: KV_DECODE },
  },
  {
    name: 'completions decode, streamed',
    path: '/v1/completions',
    body: { ...completion, ...stream, kv_transfer_params: KV_DECODE },
  },
  { name: 'models', method: 'GET', path: '/v1/models' },
  { name: 'health', method: 'GET', path: '/health' },
  { name: 'health/ready', method: 'GET', path: '/health/ready' },
  // Errors.
  { name: 'malformed JSON', path: '/v1/chat/completions', body: '{"model": ' },
  { name: 'invalid character', path: '/v1/completions', body: '{"model": x}' },
  { name: 'empty body', path: '/v1/completions', body: '' },
  // Upstream names its Go struct in the message ("... into Go struct field alias.baseTextCompletionsRequest.max_tokens of type int64").
  {
    name: 'wrong field type',
    path: '/v1/completions',
    body: { model: MODEL, prompt: 'x', max_tokens: 'many' },
    messageDiffers: true,
  },
  { name: 'unknown model', path: '/v1/chat/completions', body: { ...chat, model: 'no-such-model' } },
  { name: 'missing model', path: '/v1/completions', body: { prompt: 'x' } },
  { name: 'X-Return-Error: 503', path: '/v1/chat/completions', body: chat, headers: { 'X-Return-Error': '503' } },
  { name: 'X-Return-Error: 429', path: '/v1/completions', body: completion, headers: { 'X-Return-Error': '429' } },
  {
    name: 'X-Return-Error: 404 (responses)',
    path: '/v1/responses',
    body: responses,
    headers: { 'X-Return-Error': '404' },
  },
  { name: 'X-Return-Error: abc', path: '/v1/completions', body: completion, headers: { 'X-Return-Error': 'abc' } },
  {
    name: 'prefill + stream',
    path: '/v1/chat/completions',
    body: { ...chat, stream: true, kv_transfer_params: KV_PREFILL },
  },
  {
    name: 'prefill + stream (generate)',
    path: '/inference/v1/generate',
    body: { ...generate, stream: true, kv_transfer_params: KV_PREFILL },
  },
  {
    name: 'context length (prompt + max_tokens > 64)',
    path: '/v1/completions',
    body: { model: MODEL, prompt: 'a b c d e f g h i j', max_tokens: 60 },
    upstreamOnlyHeaders: true,
  },
  {
    name: 'context length (chat)',
    path: '/v1/chat/completions',
    body: { model: MODEL, messages: [{ role: 'user', content: 'one two three four five' }], max_tokens: 60 },
    upstreamOnlyHeaders: true,
  },
  { name: 'n = 0', path: '/v1/chat/completions', body: { ...chat, n: 0 } },
  { name: 'max_tokens = 0', path: '/v1/chat/completions', body: { ...chat, max_tokens: 0 } },
  {
    name: 'messages without max_tokens',
    path: '/v1/messages',
    body: { model: MODEL, messages: [{ role: 'user', content: 'x' }] },
  },
  {
    name: 'generate without token_ids',
    path: '/inference/v1/generate',
    body: { model: MODEL, sampling_params: { max_tokens: 5 } },
  },
  // v0.10.2 answers an empty chat 200 with an empty message; pd-router (like later upstream releases) rejects it.
  {
    name: 'chat with no messages',
    path: '/v1/chat/completions',
    body: { model: MODEL, messages: [] },
    status: [200, 400],
  },
];

interface Answer {
  status: number;
  contentType: string;
  headers: Record<string, string | null>;
  text: string;
}

async function send(base: string, config: Case, rid: string): Promise<Answer> {
  const r = await fetch(base + config.path, {
    method: config.method ?? 'POST',
    headers:
      config.method === 'GET'
        ? { 'x-request-id': rid }
        : { 'content-type': 'application/json', 'x-request-id': rid, ...config.headers },
    body:
      config.method === 'GET' ? undefined : typeof config.body === 'string' ? config.body : JSON.stringify(config.body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  const h = (count: string) => r.headers.get(count);
  return {
    status: r.status,
    // The media type; Fastify adds "; charset=utf-8" to JSON (an intended difference, see the README).
    contentType: (h('content-type') ?? '').split(';')[0].trim(),
    headers: {
      'x-inference-pod': h('x-inference-pod'),
      'x-inference-namespace': h('x-inference-namespace'),
      'x-request-id': h('x-request-id'),
      'x-inference-port': h('x-inference-port') ? 'set' : null,
    },
    text,
  };
}

describe.skipIf(skipInterop())(
  `pd-router sim and llm-d-inference-sim ${interopEnv().simVersion}, same flags, same requests`,
  () => {
    for (const [i, c] of CASES.entries()) {
      it(`${c.name}: same status, headers and ${c.diff ? 'shape (but for the intended differences)' : 'shape'}`, async () => {
        const rid = `diff-${i}`;
        const [u, o] = await Promise.all([send(upstream.url, c, rid), send(oursUrl, c, rid)]);
        expect([u.status, o.status], `upstream: ${u.text}\nours: ${o.text}`).toEqual(c.status ?? [u.status, u.status]);
        expect(o.contentType).toBe(u.contentType);
        if (c.status) return;
        if (c.upstreamOnlyHeaders) {
          expect(u.headers).toEqual({
            'x-inference-pod': ENV.POD_NAME,
            'x-inference-namespace': ENV.POD_NAMESPACE,
            'x-request-id': rid,
            'x-inference-port': 'set',
          });
          expect(o.headers).toEqual({
            'x-inference-pod': null,
            'x-inference-namespace': null,
            'x-request-id': null,
            'x-inference-port': null,
          });
        } else {
          expect(o.headers).toEqual(u.headers);
        }
        if (u.contentType === 'text/event-stream') {
          expect(streamDiff(u.text, o.text)).toEqual(c.diff ?? []);
          return;
        }
        if (u.text === '' || o.text === '') {
          expect(o.text).toBe(u.text);
          return;
        }
        const uj = JSON.parse(u.text);
        const oj = JSON.parse(o.text);
        expect(shapeDiff(shapeOf(uj), shapeOf(oj))).toEqual(c.diff ?? []);
        // Errors: the same envelope, type, param, code and message.
        if (u.status >= 400)
          expect(c.messageDiffers ? { ...oj.error, message: '' } : oj).toEqual(
            c.messageDiffers ? { ...uj.error, message: '' } : uj,
          );
        // Ids are built from X-Request-Id the same way.
        if (u.status === 200 && uj.id !== undefined) expect(String(oj.id) + (c.idSuffix ?? '')).toBe(uj.id);
        // The same simulated tokenizer: the same prompt-token counts.
        if (u.status === 200 && uj.usage) {
          expect(oj.usage.prompt_tokens ?? oj.usage.input_tokens).toBe(uj.usage.prompt_tokens ?? uj.usage.input_tokens);
        }
      });
    }

    it("metric families: every upstream vllm:* family with the same type and labels; pd-router's extras are the documented ones", async () => {
      const families = async (base: string) => {
        const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
        const out = new Map<string, { type: string; labels: Set<string> }>();
        for (const m of text.matchAll(/^# TYPE (vllm:\S+) (\S+)$/gm)) out.set(m[1], { type: m[2], labels: new Set() });
        for (const m of text.matchAll(/^(vllm:[^\s{]+)\{([^}]*)\}/gm)) {
          const family = [...out.keys()].find((field) => m[1] === field || m[1].startsWith(`${field}_`));
          for (const l of m[2].matchAll(/(\w+)="/g)) if (family && l[1] !== 'le') out.get(family)!.labels.add(l[1]);
        }
        return out;
      };
      const [u, o] = await Promise.all([families(upstream.url), families(oursUrl)]);
      expect([...u.keys()].filter((field) => !o.has(field))).toEqual([]);
      expect([...o.keys()].filter((field) => !u.has(field)).sort()).toEqual([
        'vllm:external_prefix_cache_hits_total',
        'vllm:external_prefix_cache_queries_total',
        'vllm:nixl_xfer_time_seconds',
        'vllm:prefix_cache_hits_total',
        'vllm:prefix_cache_queries_total',
        'vllm:request_queue_time_seconds',
        'vllm:request_time_per_output_token_seconds',
      ]);
      for (const [name, f] of u) {
        expect(o.get(name)!.type, name).toBe(f.type);
        const labels = (item: { labels: Set<string> }) => [...item.labels].sort();
        if (name === 'vllm:cache_config_info') {
          // The label set of later upstream releases (cache_dtype, num_cpu_blocks added); see the README.
          expect(labels(f)).toEqual(['block_size', 'num_gpu_blocks']);
          expect(labels(o.get(name)!)).toEqual(['block_size', 'cache_dtype', 'num_cpu_blocks', 'num_gpu_blocks']);
        } else {
          expect(labels(o.get(name)!), name).toEqual(labels(f));
        }
      }
    });
  },
);
