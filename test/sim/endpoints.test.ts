import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { getJson, parseSse, postJson, sseJson } from '../helpers.js';

let sim: SimulatorHandle;
const MODEL = 'test-model';

beforeAll(async () => {
  sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], servedModelName: [MODEL, 'alias'], mode: 'echo', seed: 7, maxModelLen: 256 }));
});
afterAll(() => sim.close());

const chatBody = { model: MODEL, messages: [{ role: 'user', content: 'Hello, world!' }] };

describe('simulator endpoints (echo mode, real HTTP)', () => {
  it('chat completions: OpenAI shape, upstream token counts', async () => {
    const r = await postJson(`${sim.url}/v1/chat/completions`, chatBody);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    expect(r.body.id).toMatch(/^chatcmpl-/);
    expect(r.body.object).toBe('chat.completion');
    expect(r.body.model).toBe(MODEL);
    expect(r.body.choices).toEqual([{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'Hello, world!' } }]);
    // "### user: Hello, world!\n" is 9 tokens under upstream's simulated tokenizer; the echo is 4.
    expect(r.body.usage).toEqual({ prompt_tokens: 9, completion_tokens: 4, total_tokens: 13, prompt_tokens_details: { cached_tokens: 0 } });
    expect(r.body.kv_transfer_params).toBeUndefined();
  });

  it('accepts a served-model-name alias but reports the first name', async () => {
    const r = await postJson(`${sim.url}/v1/chat/completions`, { ...chatBody, model: 'alias' });
    expect(r.status).toBe(200);
    expect(r.body.model).toBe(MODEL);
  });

  it('completions: echo cut at max_tokens gives finish_reason length', async () => {
    const r = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: 'one two three four five', max_tokens: 3 });
    expect(r.status).toBe(200);
    expect(r.body.object).toBe('text_completion');
    expect(r.body.id).toMatch(/^cmpl-/);
    expect(r.body.choices).toEqual([{ index: 0, finish_reason: 'length', text: 'one two three ' }]);
    expect(r.body.usage.prompt_tokens).toBe(5);
    expect(r.body.usage.completion_tokens).toBe(3);
  });

  it('responses API', async () => {
    const r = await postJson(`${sim.url}/v1/responses`, { model: MODEL, input: 'Say hi', instructions: 'Be brief' });
    expect(r.status).toBe(200);
    expect(r.body.object).toBe('response');
    expect(r.body.id).toMatch(/^resp_/);
    expect(r.body.status).toBe('completed');
    expect(r.body.instructions).toBe('Be brief');
    expect(r.body.output[0].type).toBe('message');
    expect(r.body.output[0].content[0]).toMatchObject({ type: 'output_text', text: 'Say hi' });
    expect(r.body.usage).toMatchObject({ output_tokens: 2 });
  });

  it('Anthropic messages API', async () => {
    const r = await postJson(`${sim.url}/v1/messages`, { model: MODEL, max_tokens: 10, system: 'sys', messages: [{ role: 'user', content: 'Hi there' }] });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ type: 'message', role: 'assistant', stop_reason: 'end_turn', stop_sequence: null, content: [{ type: 'text', text: 'Hi there' }] });
    expect(r.body.id).toMatch(/^msg_/);
    expect(r.body.usage.output_tokens).toBe(2);
  });

  it('vLLM generate API echoes token ids', async () => {
    const r = await postJson(`${sim.url}/inference/v1/generate`, { model: MODEL, token_ids: [11, 22, 33], sampling_params: { max_tokens: 5 } });
    expect(r.status).toBe(200);
    expect(r.body.choices).toEqual([{ index: 0, finish_reason: 'stop', token_ids: [11, 22, 33] }]);
    expect(r.body.ec_transfer_params).toBeNull();
    expect(typeof r.body.request_id).toBe('string');
  });

  it('/v1/models lists every served name', async () => {
    const r = await getJson(`${sim.url}/v1/models`);
    expect(r.status).toBe(200);
    expect(r.body.object).toBe('list');
    expect(r.body.data.map((match: { id: string }) => match.id)).toEqual([MODEL, 'alias']);
    expect(r.body.data[0]).toMatchObject({ object: 'model', owned_by: 'vllm', max_model_len: 256 });
  });

  it('/health and /health/ready answer 200', async () => {
    expect((await fetch(`${sim.url}/health`)).status).toBe(200);
    expect((await fetch(`${sim.url}/health/ready`)).status).toBe(200);
  });
});

describe('simulator streaming framing', () => {
  it('chat: role chunk, one chunk per token, finish chunk, usage chunk, [DONE]', async () => {
    const r = await postJson(`${sim.url}/v1/chat/completions`, { ...chatBody, stream: true, stream_options: { include_usage: true } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const frames = parseSse(r.text);
    expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const chunks = frames.filter((sseFrame) => sseFrame.data !== '[DONE]').map((sseFrame) => JSON.parse(sseFrame.data));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant' });
    expect(chunks.slice(1, 5).map((config) => config.choices[0].delta.content)).toEqual(['Hello', ', ', 'world', '!']);
    expect(chunks.every((config) => config.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[5].choices[0]).toEqual({ index: 0, finish_reason: 'stop', delta: {} });
    expect(chunks[5].usage).toBeNull();
    expect(chunks[6].choices).toEqual([]);
    expect(chunks[6].usage).toEqual({ prompt_tokens: 9, completion_tokens: 4, total_tokens: 13, prompt_tokens_details: { cached_tokens: 0 } });
    expect(new Set(chunks.map((config) => config.id)).size).toBe(1);
  });

  it('chat without include_usage sends no usage chunk', async () => {
    const r = await postJson(`${sim.url}/v1/chat/completions`, { ...chatBody, stream: true });
    const chunks = sseJson(r.text);
    expect(chunks.every((config) => config.usage === null)).toBe(true);
    expect(chunks.at(-1).choices[0].finish_reason).toBe('stop');
  });

  it('completions stream', async () => {
    const r = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: 'a b c', stream: true, stream_options: { include_usage: true } });
    const chunks = sseJson(r.text);
    expect(chunks.slice(0, 3).map((config) => config.choices[0].text)).toEqual(['a ', 'b ', 'c']);
    expect(chunks[3].choices[0]).toEqual({ index: 0, finish_reason: 'stop', text: '' });
    expect(chunks[4].usage.completion_tokens).toBe(3);
    expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('responses stream: typed events and no [DONE]', async () => {
    const r = await postJson(`${sim.url}/v1/responses`, { model: MODEL, input: 'x y', stream: true });
    const frames = parseSse(r.text);
    expect(frames.map((sseFrame) => sseFrame.event)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    for (const f of frames) expect(JSON.parse(f.data).type).toBe(f.event);
    expect(JSON.parse(frames.at(-1)!.data).response.usage.output_tokens).toBe(2);
    expect(r.text).not.toContain('[DONE]');
  });

  it('messages stream: Anthropic events', async () => {
    const r = await postJson(`${sim.url}/v1/messages`, { model: MODEL, max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'p q' }] });
    const frames = parseSse(r.text);
    expect(frames.map((sseFrame) => sseFrame.event)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(JSON.parse(frames[6]!.data).usage.output_tokens).toBe(2);
  });

  it('generate stream: finish reason rides on the last token', async () => {
    const r = await postJson(`${sim.url}/inference/v1/generate`, { model: MODEL, token_ids: [1, 2], stream: true, sampling_params: { max_tokens: 2 } });
    const chunks = sseJson(r.text);
    expect(chunks.map((config) => config.choices[0])).toEqual([
      { index: 0, finish_reason: null, token_ids: [1] },
      { index: 0, finish_reason: 'length', token_ids: [2] },
    ]);
    expect(r.text.endsWith('data: [DONE]\n\n')).toBe(true);
  });
});

describe('simulator bad input', () => {
  const url = () => `${sim.url}/v1/chat/completions`;

  it('malformed JSON is a 400 OpenAI error', async () => {
    const r = await postJson(url(), '{"model": ');
    expect(r.status).toBe(400);
    expect(r.body.error.type).toBe('BadRequestError');
    expect(r.body.error.code).toBe(400);
    expect(r.body.error.message).toMatch(/^Failed to read and parse request body, /);
  });

  it('an empty body and a non-object body are 400', async () => {
    expect((await postJson(url(), '')).status).toBe(400);
    const arr = await postJson(url(), '[1,2]');
    expect(arr.status).toBe(400);
    expect(arr.body.error.message).toContain('must be a JSON object');
  });

  it('wrong field types are 400 naming the field', async () => {
    const r = await postJson(url(), { ...chatBody, max_tokens: 'ten' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('"max_tokens"');
    const m = await postJson(url(), { model: MODEL, messages: 'hi' });
    expect(m.status).toBe(400);
    expect(m.body.error.message).toContain('"messages"');
  });

  it('missing and unknown models are 404 as upstream', async () => {
    const missing = await postJson(url(), { messages: chatBody.messages });
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toBe('The model `` does not exist.');
    const unknown = await postJson(url(), { ...chatBody, model: 'gpt-9' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toEqual({ message: 'The model `gpt-9` does not exist.', type: 'NotFoundError', param: null, code: 404 });
  });

  it('a prompt over max-model-len is 400 with vLLM wording', async () => {
    const r = await postJson(`${sim.url}/v1/completions`, { model: MODEL, prompt: 'w '.repeat(200), max_tokens: 100 });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toBe(
      "This model's maximum context length is 256 tokens. However, you requested 300 tokens (200 in the messages, 100 in the completion). Please reduce the length of the messages or completion",
    );
  });

  it('semantic validation errors', async () => {
    expect((await postJson(url(), { ...chatBody, max_tokens: 0 })).body.error.message).toBe('Max completion tokens and max tokens should be positive');
    expect((await postJson(url(), { ...chatBody, messages: [] })).body.error.message).toBe('messages must not be empty');
    expect((await postJson(url(), { ...chatBody, min_tokens: 5, max_tokens: 2 })).body.error.message).toBe(
      'min_tokens must be less than or equal to max_tokens=2, got 5.',
    );
    expect((await postJson(`${sim.url}/v1/messages`, { model: MODEL, messages: [{ role: 'user', content: 'x' }] })).body.error.message).toBe('max_tokens is required');
    expect((await postJson(`${sim.url}/inference/v1/generate`, { model: MODEL, sampling_params: {} })).body.error.message).toBe('Missing input token_ids');
  });

  it('X-Return-Error injects the status with an error body', async () => {
    const r = await postJson(url(), chatBody, { 'x-return-error': '503' });
    expect(r.status).toBe(503);
    expect(r.body.error).toEqual({ message: 'Simulated error triggered by X-Return-Error header (code 503)', type: 'InternalServerError', param: null, code: 503 });
    const bad = await postJson(url(), chatBody, { 'x-return-error': 'abc' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe('Invalid X-Return-Error header value "abc": must be an integer');
  });

  it('an oversized body is 413', async () => {
    const small = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], maxRequestBodySize: 2048 }));
    try {
      const r = await postJson(`${small.url}/v1/completions`, { model: MODEL, prompt: 'x'.repeat(5000) });
      expect(r.status).toBe(413);
      expect(r.body.error.message).toBe('request body exceeds 2048 bytes');
    } finally {
      await small.close();
    }
  });

  it('unknown paths are 404 JSON', async () => {
    const r = await getJson(`${sim.url}/v2/nothing`);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe(404);
  });
});

describe('readiness', () => {
  it('/health/ready is 503 during --startup-duration', async () => {
    const slow = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, startupDuration: 60_000 }));
    try {
      expect((await fetch(`${slow.url}/health/ready`)).status).toBe(503);
      expect((await fetch(`${slow.url}/health`)).status).toBe(200);
    } finally {
      await slow.close();
    }
  });
});
