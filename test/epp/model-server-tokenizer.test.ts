/**
 * Tokenization by the model server (token-producer's vllm-http and pool modes) against a real HTTP server on loopback
 * that plays vLLM: the render endpoints, the /tokenize fallback for servers without them, the cache (keyed by the
 * prompt, bounded by token ids held), and answers that are not token ids.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { InferenceRequest } from '../../src/epp/framework/types.js';
import { ModelServerTokenizer, TokenCache } from '../../src/epp/tokenize/model-server-tokenizer.js';

let servers: Server[] = [];
afterEach(async () => {
  for (const s of servers) await new Promise((resolve) => s.close(resolve));
  servers = [];
});

async function server(
  handle: (path: string, body: any) => { status: number; body: unknown },
): Promise<{ url: string; calls: Array<{ path: string; body: any }> }> {
  const calls: Array<{ path: string; body: any }> = [];
  const s = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString());
      calls.push({ path: req.url!, body });
      const r = handle(req.url!, body);
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.body));
    });
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  servers.push(s);
  return { url: `http://127.0.0.1:${(s.address() as { port: number }).port}`, calls };
}

const request = (body: Record<string, unknown>, api: 'chat' | 'completions' = 'chat'): InferenceRequest =>
  // eslint-disable-next-line no-restricted-syntax -- the tokenizer reads only these fields of a request
  ({
    requestId: 'r',
    model: 'm',
    targetModel: 'served',
    tokenCount: 1,
    prompts: [{ kind: 'text', text: 'x' }],
    headers: {},
    body,
    path: '/v1/chat/completions',
    api,
    parser: 'openai-parser',
    stream: false,
    cacheSalt: '',
    objective: '',
  }) as unknown as InferenceRequest;

describe('ModelServerTokenizer', () => {
  it('posts the body to the render endpoint with the configured model; the cache keys on the prompt, not sampling parameters', async () => {
    const srv = await server((path) =>
      path === '/v1/chat/completions/render'
        ? { status: 200, body: { token_ids: [5, 6, 7] } }
        : { status: 500, body: {} },
    );
    const t = new ModelServerTokenizer({
      baseUrl: srv.url,
      modelName: 'base-model',
      timeoutMs: 5000,
      mmTimeoutMs: 5000,
      cacheTokens: 100,
    });
    const messages = [{ role: 'user', content: 'hello' }];
    expect(await t.tokenize(request({ model: 'm', messages, max_tokens: 5 }), [])).toEqual({
      ok: true,
      tokenIds: Uint32Array.from([5, 6, 7]),
      cached: false,
    });
    expect(srv.calls).toEqual([
      { path: '/v1/chat/completions/render', body: { model: 'base-model', messages, max_tokens: 5 } },
    ]);
    expect(await t.tokenize(request({ model: 'm', messages, max_tokens: 50, temperature: 0 }), [])).toMatchObject({
      ok: true,
      cached: true,
    });
    expect(await t.tokenize(request({ model: 'm', messages: [{ role: 'user', content: 'other' }] }), [])).toMatchObject(
      { ok: true, cached: false },
    );
    expect(srv.calls).toHaveLength(2);
    await t.close();
  });

  it('a server without render endpoints (404) gets /tokenize from then on; completions render answers a list', async () => {
    const srv = await server((path, body) =>
      path === '/tokenize'
        ? { status: 200, body: { count: 2, max_model_len: 10, tokens: body.prompt === 'a b' ? [1, 2] : [9] } }
        : { status: 404, body: { error: 'no' } },
    );
    const t = new ModelServerTokenizer({
      baseUrl: srv.url,
      modelName: '',
      timeoutMs: 5000,
      mmTimeoutMs: 5000,
      cacheTokens: 0,
    });
    expect(await t.tokenize(request({ model: 'm', prompt: 'a b' }, 'completions'), [])).toMatchObject({
      ok: true,
      tokenIds: Uint32Array.from([1, 2]),
    });
    expect(await t.tokenize(request({ model: 'm', prompt: 'c' }, 'completions'), [])).toMatchObject({
      ok: true,
      tokenIds: Uint32Array.from([9]),
    });
    expect(srv.calls.map((call) => call.path)).toEqual(['/v1/completions/render', '/tokenize', '/tokenize']);
    expect(srv.calls[1].body).toEqual({ model: 'served', prompt: 'a b' });
    await t.close();
  });

  it('answers that are not token ids, and error statuses, are failures with a reason', async () => {
    let answer: { status: number; body: unknown } = { status: 200, body: { token_ids: 'nope' } };
    const srv = await server(() => answer);
    const t = new ModelServerTokenizer({
      baseUrl: srv.url,
      modelName: '',
      timeoutMs: 5000,
      mmTimeoutMs: 5000,
      cacheTokens: 10,
    });
    expect(await t.tokenize(request({ messages: [{ role: 'user', content: 'x' }] }), [])).toMatchObject({
      ok: false,
      reason: 'invalid',
    });
    answer = { status: 200, body: { token_ids: [1, -2] } };
    expect(await t.tokenize(request({ messages: [{ role: 'user', content: 'y' }] }), [])).toMatchObject({
      ok: false,
      reason: 'invalid',
    });
    answer = { status: 500, body: { error: 'boom' } };
    expect(await t.tokenize(request({ messages: [{ role: 'user', content: 'z' }] }), [])).toMatchObject({
      ok: false,
      reason: 'status',
      detail: expect.stringContaining('status 500'),
    });
    expect(await t.tokenize(request({ input: 'x' }, 'responses' as 'chat'), [])).toMatchObject({
      ok: false,
      reason: 'unsupported',
    });
    await t.close();
  });

  it('the cache is bounded by the token ids it holds, least recently used out first', () => {
    const c = new TokenCache(10);
    c.set('a', new Uint32Array(4));
    c.set('b', new Uint32Array(4));
    c.get('a');
    c.set('c', new Uint32Array(4));
    expect([c.get('a') !== undefined, c.get('b') !== undefined, c.get('c') !== undefined]).toEqual([true, false, true]);
    expect(c.tokens).toBe(8);
    c.set('huge', new Uint32Array(11));
    expect(c.get('huge')).toBeUndefined();
  });
});
