/**
 * The simulator's LoRA adapters (--lora-modules, --max-loras), as llm-d-inference-sim: served besides the base model,
 * listed in /v1/models, answered under their own name, and reported in vllm:lora_requests_info as their requests wait,
 * run and finish; the newest series (by value) is the current state, which is what the EPP's extractor reads.
 */
import { describe, expect, it } from 'vitest';
import { ENGINES, extractEngineMetrics } from '../../src/epp/datalayer/engine-metrics.js';
import { emptyMetrics } from '../../src/epp/index.js';
import { parseLoraModules } from '../../src/sim/lora.js';
import { simCommand, simConfig, startSimulator } from '../../src/sim/index.js';
import { metricsText, postJson, waitFor } from '../helpers.js';

const M = 'base-model';
const LORAS = ['{"name":"sql-lora","path":"/adapters/sql"}', 'chat-lora=/adapters/chat'];

/** The LoRA state the EPP reads from the simulator's /metrics. */
async function loraState(url: string) {
  const m = emptyMetrics();
  extractEngineMetrics(await metricsText(url), ENGINES.vllm, m);
  return m.lora;
}

function longRequest(url: string, model: string) {
  const ac = new AbortController();
  const done = fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'hold this request', max_tokens: 2 }),
    signal: ac.signal,
  }).then(
    (response) => response.status,
    () => 'aborted' as const,
  );
  return { done, abort: () => ac.abort() };
}

describe('simulator LoRA adapters', () => {
  it('parses vLLM JSON and name=path entries; anything else is a startup error naming the entry', () => {
    expect(parseLoraModules(LORAS)).toEqual([
      { name: 'sql-lora', path: '/adapters/sql' },
      { name: 'chat-lora', path: '/adapters/chat' },
    ]);
    expect(() => parseLoraModules(['{"path":"/x"}'])).toThrow('--lora-modules[0]: needs a non-empty string "name"');
    expect(() => parseLoraModules(['a', '{bad'])).toThrow('--lora-modules[0]: "a" is neither JSON');
    expect(() => parseLoraModules(['x=y', '{bad'])).toThrow(/--lora-modules\[1\]: not valid JSON/);
    expect(simCommand.validate!(simConfig({ loraModules: ['nope'] }))).toContain(
      '--lora-modules[0]: "nope" is neither JSON ({"name": ..., "path": ...}) nor name=path',
    );
  });

  it('serves the adapters: /v1/models lists them with the base model as parent; answers carry the adapter name; others are 404', async () => {
    const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [M], loraModules: LORAS }));
    try {
      const models = (await (await fetch(`${sim.url}/v1/models`)).json()) as {
        data: Array<{ id: string; root: string; parent: string | null }>;
      };
      expect(models.data.map((model) => [model.id, model.root, model.parent])).toEqual([
        [M, M, null],
        ['sql-lora', '/adapters/sql', M],
        ['chat-lora', '/adapters/chat', M],
      ]);
      const r = await postJson(`${sim.url}/v1/completions`, { model: 'sql-lora', prompt: 'hi', max_tokens: 2 });
      expect(r.status).toBe(200);
      expect(r.body.model).toBe('sql-lora');
      expect((await postJson(`${sim.url}/v1/completions`, { model: 'other-lora', prompt: 'hi' })).status).toBe(404);
    } finally {
      await sim.close();
    }
  });

  it('vllm:lora_requests_info follows the adapters with requests waiting and running, then clears', async () => {
    const sim = await startSimulator(
      simConfig({
        host: '127.0.0.1',
        port: 0,
        model: [M],
        loraModules: LORAS,
        maxLoras: 3,
        maxNumSeqs: 1,
        timeToFirstToken: 60_000,
      }),
    );
    try {
      expect(await loraState(sim.url)).toEqual({ running: [], waiting: [], maxLoras: 3 });
      const a = longRequest(sim.url, 'sql-lora');
      await waitFor(
        async () => (await loraState(sim.url))?.running.includes('sql-lora') === true,
        10_000,
        'sql-lora running',
      );
      const b = longRequest(sim.url, 'chat-lora');
      await waitFor(
        async () => (await loraState(sim.url))?.waiting.includes('chat-lora') === true,
        10_000,
        'chat-lora waiting',
      );
      expect(await loraState(sim.url)).toEqual({ running: ['sql-lora'], waiting: ['chat-lora'], maxLoras: 3 });
      // A base-model request is not an adapter.
      const base = longRequest(sim.url, M);
      await waitFor(() => sim.engine.scheduler.waiting === 2, 10_000, 'the base-model request queued');
      expect(await loraState(sim.url)).toEqual({ running: ['sql-lora'], waiting: ['chat-lora'], maxLoras: 3 });
      a.abort();
      await waitFor(
        async () =>
          JSON.stringify(await loraState(sim.url)) ===
          JSON.stringify({ running: ['chat-lora'], waiting: [], maxLoras: 3 }),
        10_000,
        'chat-lora promoted',
      );
      b.abort();
      base.abort();
      await waitFor(
        async () =>
          (await loraState(sim.url))?.running.length === 0 &&
          sim.engine.scheduler.running === 0 &&
          sim.engine.scheduler.waiting === 0,
        10_000,
        'all adapters done',
      );
      expect(await loraState(sim.url)).toEqual({ running: [], waiting: [], maxLoras: 3 });
      await Promise.all([a.done, b.done, base.done]);
    } finally {
      await sim.close();
    }
  });
});
