/**
 * Chunked decode (--decode-chunk-size) against the simulator in echo mode (each chunk echoes the last message, so the
 * text every chunk produced is known from the next chunk's request): how the decode is split, how the answer is
 * stitched (streamed and not), the usage, the bound on chunks, and what the client gets when a chunk fails.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseSse, postJson } from '../helpers.js';
import { renderPrompt, tokenize } from '../../src/sim/index.js';
import type { RequestRecord } from '../../src/sim/index.js';
import { MODEL, records, startPd, type PdFixture } from './fixture.js';

let f: PdFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

type Body = Record<string, any>;
const PROMPT = 'one two three four five six seven eight nine ten eleven twelve';
const chat = (fields: Body = {}): Body => ({ model: MODEL, messages: [{ role: 'user', content: PROMPT }], ...fields });
const bodies = (): Body[] => records(f!.decode).map((record: RequestRecord) => record.body as Body);

/** Each chunk's text, read from the assistant message the next chunk carries; the last one's from the answer. */
function chunkTexts(sent: Body[]): string[] {
  return sent.slice(1).map((body) => body.messages[body.messages.length - 1].content as string);
}

describe('chunked decode', () => {
  it('a budget that fits one chunk is decoded as one request, unchanged', async () => {
    f = await startPd({ sidecar: { decodeChunkSize: 8 } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat({ max_tokens: 8 }));
    expect(r.status).toBe(200);
    expect(bodies()).toEqual([chat({ max_tokens: 8 })]);
  });

  it('splits the budget into chunks that continue the assistant message, and stitches one JSON answer with summed usage', async () => {
    f = await startPd({ sidecar: { decodeChunkSize: 4 } });
    const client = chat({ max_completion_tokens: 10, max_tokens: 99, stream_options: { include_usage: true } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, client);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    const sent = bodies();
    // max_completion_tokens (10) wins over max_tokens: 4 + 4 + 2.
    expect(sent.map((body) => [body.max_tokens, body.max_completion_tokens])).toEqual([
      [4, 4],
      [4, 4],
      [2, 2],
    ]);
    const { stream_options: _so, ...rest } = client;
    expect(sent[0]).toEqual({ ...rest, max_tokens: 4, max_completion_tokens: 4, stream: false });
    const texts = chunkTexts(sent);
    sent.slice(1).forEach((body, i) => {
      expect(body).toEqual({
        ...rest,
        messages: [...client.messages, ...texts.slice(0, i + 1).map((content) => ({ role: 'assistant', content }))],
        max_tokens: body.max_tokens,
        max_completion_tokens: body.max_completion_tokens,
        stream: false,
        continue_final_message: true,
        add_generation_prompt: false,
      });
    });
    const content: string = r.body.choices[0].message.content;
    expect(content.startsWith(texts.join(''))).toBe(true);
    expect(content.length).toBeGreaterThan(texts.join('').length);
    const outputs = records(f.decode).map((record) => record.outputTokens ?? 0);
    expect(r.body.usage).toEqual({
      prompt_tokens: records(f.decode)[0].promptTokens,
      completion_tokens: 10,
      total_tokens: records(f.decode)[0].promptTokens! + 10,
    });
    expect(outputs.reduce((sum, count) => sum + count, 0)).toBe(10);
    expect(r.body.choices).toHaveLength(1);
  });

  it('streamed: one SSE event per chunk (deltas, no usage), then the cumulative usage, then [DONE]', async () => {
    f = await startPd({ sidecar: { decodeChunkSize: 4 } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat({ max_tokens: 10, stream: true }));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const data = parseSse(r.text).map((frame) => frame.data);
    expect(data).toHaveLength(5);
    expect(data[4]).toBe('[DONE]');
    const events = data.slice(0, 3).map((text) => JSON.parse(text) as Body);
    const texts = chunkTexts(bodies());
    events.forEach((event, i) => {
      expect(event).not.toHaveProperty('usage');
      expect(event.choices).toEqual([
        {
          index: 0,
          finish_reason: 'length',
          delta: { role: 'assistant', content: i < 2 ? texts[i] : expect.any(String) },
        },
      ]);
    });
    expect(JSON.parse(data[3])).toEqual({
      usage: {
        prompt_tokens: records(f.decode)[0].promptTokens,
        completion_tokens: 10,
        total_tokens: records(f.decode)[0].promptTokens! + 10,
      },
      choices: [],
    });
  });

  it('through nixlv2: only the first chunk carries the prefiller kv_transfer_params; usage gets its cached_tokens', async () => {
    f = await startPd({ sidecar: { decodeChunkSize: 4 } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat({ max_tokens: 6 }), {
      'x-prefiller-host-port': f.prefillHeader,
    });
    expect(r.status).toBe(200);
    const sent = bodies();
    expect(sent).toHaveLength(2);
    expect(sent[0].kv_transfer_params).toMatchObject({ do_remote_prefill: true, remote_engine_id: 'prefill-0' });
    expect(sent[1]).not.toHaveProperty('kv_transfer_params');
    expect(records(f.decode).map((record) => record.kind)).toEqual(['decode', 'aggregated']);
    expect(r.body.usage.prompt_tokens_details).toEqual({ cached_tokens: records(f.prefill)[0].cachedTokens ?? 0 });
    expect(r.body.usage.completion_tokens).toBe(6);
  });

  it('without a budget stops at --max-decode-chunks; other APIs are not chunked', async () => {
    f = await startPd({ sidecar: { decodeChunkSize: 2, maxDecodeChunks: 3 } });
    const r = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat());
    expect(r.status).toBe(200);
    expect(bodies()).toHaveLength(3);
    expect(r.body.usage.completion_tokens).toBe(6);
    expect(r.body.choices[0].finish_reason).toBe('length');
    f.decode.engine.clearRecords();
    const completions = { model: MODEL, prompt: PROMPT, max_tokens: 10 };
    expect((await postJson(`${f.sidecar.url}/v1/completions`, completions)).status).toBe(200);
    expect(bodies()).toEqual([completions]);
  });

  it('a first chunk that fails is relayed as it came; a later one ends the stream with an SSE error event', async () => {
    f = await startPd({ sidecar: { decodeChunkSize: 4 } });
    await postJson(`${f.decode.url}/admin/config`, { 'return-error': 503, 'return-error-count': 1 });
    const first = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat({ max_tokens: 10 }));
    expect(first.status).toBe(503);
    expect(first.text).toContain('Simulated error set by /admin/config (code 503)');
    await f.close();

    // The context window fits the first chunk exactly: the second, with the first chunk's text added, is too long.
    const window = tokenize(renderPrompt('chat', chat())).length + 4;
    f = await startPd({ sidecar: { decodeChunkSize: 4 }, decode: { maxModelLen: window } });
    const streamed = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat({ max_tokens: 10, stream: true }));
    expect(streamed.status).toBe(200);
    const data = parseSse(streamed.text).map((frame) => frame.data);
    expect(data).toHaveLength(3);
    expect(JSON.parse(data[0]).choices[0].delta.role).toBe('assistant');
    expect(JSON.parse(data[1]).error).toMatchObject({
      code: 400,
      message: expect.stringMatching(/^decode chunk failed with status 400: .*maximum context length/),
    });
    expect(data[2]).toBe('[DONE]');
    const whole = await postJson(`${f.sidecar.url}/v1/chat/completions`, chat({ max_tokens: 10 }));
    expect(whole.status).toBe(400);
    expect(whole.text).toMatch(/maximum context length/);
  });
});
