/**
 * lora-affinity-scorer (GAIE v1.5, llm-d-router): upstream's four tiers over the LoRA state core-metrics-extractor
 * reads from vllm:lora_requests_info, and a real EPP scraping two simulators serving LoRA adapters: a request for an
 * adapter goes to the server already running it, and one for another adapter to the server with room to load it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PLUGIN_REGISTRY, type Endpoint, type Scorer } from '../../src/epp/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { waitFor } from '../helpers.js';
import { spec, startTestEpp, type TestEpp } from './fixtures.js';
import { routeOverExtProc } from './ext-proc-route.js';
import { build, context, endpoint } from './plugin-build.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const WAIT_MS = 30_000;
const TEST_MS = 90_000;

const lora = (running: string[], waiting: string[], maxLoras: number): Endpoint =>
  endpoint({}, { lora: { running, waiting, maxLoras } });
const score = (target: string, es: Endpoint[]) =>
  Array.from(build<Scorer>('lora-affinity-scorer', {}).score(context({ targetModel: target }), es));

describe('lora-affinity-scorer', () => {
  it('running 1; room for another adapter 0.8; waiting 0.6; full 0 (upstream order: room beats waiting)', () => {
    expect(
      score('sql', [
        lora(['sql'], [], 1),
        lora(['chat'], [], 2),
        lora(['chat'], ['sql'], 2),
        lora(['chat'], ['sql'], 3),
        lora(['chat', 'math'], [], 2),
        lora([], [], 0),
      ]),
    ).toEqual([1, 0.8, 0.6, 0.8, 0, 0]);
  });

  it('an endpoint without LoRA info scores 0; no parameters are accepted', () => {
    expect(score('sql', [endpoint()])).toEqual([0]);
    expect(PLUGIN_REGISTRY['lora-affinity-scorer'].params.safeParse({ weight: 2 }).success).toBe(false);
  });
});

describe('over ext_proc, against simulators serving LoRA adapters', () => {
  let sims: SimulatorHandle[] = [];
  let t: TestEpp | undefined;
  const inFlight: AbortController[] = [];
  afterEach(async () => {
    for (const a of inFlight.splice(0)) a.abort();
    await t?.close();
    t = undefined;
    await Promise.all(sims.map((sim) => sim.close(500)));
    sims = [];
  });

  const CONFIG = `${LLMD}plugins:
- type: lora-affinity-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: lora-affinity-scorer}, {pluginRef: max-score-picker}]
`;

  it(
    'an adapter request goes where it runs; another adapter goes where there is room to load it',
    async () => {
      const loras = ['{"name":"sql-lora","path":"/a/sql"}', '{"name":"chat-lora","path":"/a/chat"}'];
      sims = await Promise.all(
        [0, 1].map(() =>
          startSimulator(
            simConfig({
              host: '127.0.0.1',
              port: 0,
              model: ['base'],
              loraModules: loras,
              maxLoras: 1,
              timeToFirstToken: 60_000,
            }),
          ),
        ),
      );
      const [a, b] = sims as [SimulatorHandle, SimulatorHandle];
      t = await startTestEpp(
        CONFIG,
        [spec('a', '127.0.0.1', undefined, {}, a.port), spec('b', '127.0.0.1', undefined, {}, b.port)],
        { refreshMetricsInterval: 20 },
      );
      // sql-lora runs on b (a request sent to it directly, held for a minute).
      const hold = new AbortController();
      inFlight.push(hold);
      void fetch(`${b.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'sql-lora', prompt: 'hold', max_tokens: 2 }),
        signal: hold.signal,
      }).catch(() => undefined);
      const store = t.epp.store;
      await waitFor(
        () =>
          store.get('default/b')?.metrics.lora?.running.includes('sql-lora') === true &&
          store.get('default/a')?.metrics.lora !== undefined,
        WAIT_MS,
        'the EPP to see sql-lora running on b',
      );
      const route = async (model: string) =>
        (await routeOverExtProc(t!.client, { model, prompt: 'hi' })).set.get('x-gateway-destination-endpoint');
      // b: running (1) beats a: room (0.8).
      expect(await route('sql-lora')).toBe(`127.0.0.1:${b.port}`);
      // chat-lora: a has room (0.8); b is full with sql-lora (max_lora 1) and chat-lora is not waiting there (0).
      expect(await route('chat-lora')).toBe(`127.0.0.1:${a.port}`);
    },
    TEST_MS,
  );
});
