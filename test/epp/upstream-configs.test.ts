/**
 * Every upstream sample EndpointPickerConfig (llm-d v0.7.1 deploy/config and test/e2e, llm-d-router @ebab687
 * deploy/config), copied verbatim into test/fixtures/upstream-configs: each loads unchanged, or fails naming every
 * plugin type pd-router lacks. Each that loads is then run by a real EPP over ext_proc, with simulators as the model
 * servers (one prefill, two decode, one encode pod, discovered from an endpoints file and scraped), and must make the
 * decision its profiles describe: P/D for a long uncached prompt and decode-only for its repeat, a single-profile
 * pick, the data-parallel port rewrite, an encode stage for a multimodal request, or (pd-topology) a prefill pick on the
 * decode pick's host, over a pool of two hosts with a prefill and a decode pod each.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import {
  LLM_D_PD_EPP_CONFIG,
  LLM_D_SIM_PD_EPP_CONFIG,
  eppConfig,
  loadEndpointPickerConfig,
  startEpp,
  type EppHandle,
} from '../../src/epp/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { EXPECTED, fixtureFiles, fixtureText, upstreamText, type Drive } from '../fixtures/upstream-configs/index.js';
import { ROOT, waitFor } from '../helpers.js';
import { ExtProcTestClient, body, headers, responseBody, responseHeaders, setHeadersOf } from './ext-proc-client.js';
import { endpointsFile, endpointsYaml, seeded, spec } from './fixtures.js';

const TOPOLOGY_HOST = 'kubernetes.io/hostname';

const MODEL = 'food-review';
/** 408 bytes = 102 estimate tokens: above every sample's nonCachedTokens (16), two 64-token blocks. */
const LONG = 'Tell me about the history of Rome in great detail. '.repeat(8);
const IMAGE = { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } };
/**
 * Each drive starts an EPP and waits for its first scrape of every simulator: a few hundred ms on an idle machine,
 * far more on a loaded 2-core CI host. The bounds are generous; the waits end on the event, not on the clock.
 */
const DRIVE_TIMEOUT_MS = 60_000;
const SCRAPE_WAIT_MS = 45_000;

describe('every upstream sample config has an expectation', () => {
  it('the fixture directory and the expectation table list the same files (37)', () => {
    expect(fixtureFiles()).toEqual(Object.keys(EXPECTED).sort());
    expect(fixtureFiles()).toHaveLength(37);
  });

  it('the copies src/epp/config/llm-d-configs.ts ships (bench, dev stack) are the fixtures', () => {
    expect(LLM_D_PD_EPP_CONFIG).toBe(upstreamText('llm-d-router-ebab687/deploy/config/pd-epp-config.yaml'));
    expect(LLM_D_SIM_PD_EPP_CONFIG).toBe(upstreamText('llm-d-router-ebab687/deploy/config/sim-pd-epp-config.yaml'));
  });

  it('src/epp/README.md states, per sample config, whether it loads and which plugin it lacks', () => {
    const readme = readFileSync(path.join(ROOT, 'src/epp/README.md'), 'utf8');
    for (const [file, e] of Object.entries(EXPECTED)) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${file}\` |`));
      expect(row, file).toBeDefined();
      expect(row, file).toContain(e.loads ? '| loads |' : '| fails |');
      if (!e.loads) for (const m of e.missing) expect(row, file).toContain(`\`${m}\``);
    }
  });
});

describe('each sample config loads unchanged, or fails naming the plugins pd-router lacks', () => {
  for (const [file, e] of Object.entries(EXPECTED)) {
    it(file, () => {
      if (e.loads) {
        const c = loadEndpointPickerConfig(fixtureText(file));
        expect(c.warnings).toHaveLength(e.warnings.length);
        e.warnings.forEach((regExp, i) => expect(c.warnings[i]).toMatch(regExp));
        return;
      }
      let err: unknown;
      try {
        loadEndpointPickerConfig(fixtureText(file));
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(ConfigError);
      for (const m of e.missing)
        expect((err as Error).message).toContain(`(type ${m}): type ${m} is not supported by pd-router (`);
      if (e.error) expect((err as Error).message).toMatch(e.error);
      if (e.missing.length === 0) expect((err as Error).message).not.toContain('is not supported by pd-router');
    });
  }
});

interface Routed {
  destination: string;
  prefiller?: string;
  encoders?: string;
  dataParallel?: string;
}

describe('each sample config that loads drives its decision over ext_proc against simulators', () => {
  let sims: SimulatorHandle[] = [];
  let file = '';
  /** pd-topology's pool: node-a holds p0 and d0, node-b holds d1 and p1 (the fourth simulator). */
  let topologyFile = '';
  const hostOf = (i: number) => `127.0.0.1:${sims[i].port}`;
  const prefill = () => hostOf(0);
  const decodes = () => [hostOf(1), hostOf(2)];
  const encode = () => hostOf(3);

  beforeAll(async () => {
    sims = await Promise.all(
      [0, 1, 2, 3].map(() => startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL] }))),
    );
    file = endpointsFile(
      endpointsYaml([
        spec('p0', '127.0.0.1', 'prefill', {}, sims[0].port),
        spec('d0', '127.0.0.1', 'decode', {}, sims[1].port),
        spec('d1', '127.0.0.1', 'decode', {}, sims[2].port),
        spec('e0', '127.0.0.1', 'encode', {}, sims[3].port),
      ]),
    );
    const host = (node: string) => ({ [TOPOLOGY_HOST]: node });
    topologyFile = endpointsFile(
      endpointsYaml([
        spec('p0', '127.0.0.1', 'prefill', host('node-a'), sims[0].port),
        spec('d0', '127.0.0.1', 'decode', host('node-a'), sims[1].port),
        spec('d1', '127.0.0.1', 'decode', host('node-b'), sims[2].port),
        spec('p1', '127.0.0.1', 'prefill', host('node-b'), sims[3].port),
      ]),
    );
  }, DRIVE_TIMEOUT_MS);
  afterAll(async () => {
    await Promise.all(sims.map((handle) => handle.close(500)));
  });

  async function withEpp(
    configText: string,
    run: (route: (right: Record<string, unknown>, path?: string) => Promise<Routed>) => Promise<void>,
    pool = file,
  ): Promise<void> {
    let epp: EppHandle | undefined;
    let client: ExtProcTestClient | undefined;
    try {
      epp = await startEpp(
        eppConfig({
          host: '127.0.0.1',
          grpcPort: 0,
          grpcHealthPort: 0,
          metricsPort: 0,
          secureServing: false,
          endpointsFile: pool,
          configText,
        }),
        { random: seeded(7) },
      );
      const e = epp;
      await waitFor(
        () => e.store.all().length === 4 && e.store.all().every((endpoint) => endpoint.metrics.updatedAt > 0),
        SCRAPE_WAIT_MS,
        'the EPP to scrape the four simulators',
      );
      const c = (client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`));
      let n = 0;
      await run(async (payload, path = '/v1/completions') => {
        const call = c.open();
        call.send(
          headers({
            ':method': 'POST',
            ':path': path,
            ':authority': 'envoy',
            'content-type': 'application/json',
            'x-request-id': `r${++n}`,
          }),
          body(JSON.stringify({ model: MODEL, ...payload }), true),
        );
        const [h] = await call.waitFor(2);
        const set = new Map(
          setHeadersOf(h.request_headers!.response.header_mutation).map(([k, value]) => [k.toLowerCase(), value]),
        );
        call.send(
          responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
          responseBody('{"choices":[]}', true),
        );
        await call.waitFor(3);
        call.end();
        expect(await call.ended).toEqual({ code: 0, details: 'OK' });
        return {
          destination: set.get('x-gateway-destination-endpoint')!,
          prefiller: set.get('x-prefiller-host-port'),
          encoders: set.get('x-encoder-hosts-ports'),
          dataParallel: set.get('x-data-parallel-host-port'),
        };
      });
    } finally {
      client?.close();
      await epp?.close(1000);
    }
  }

  const drives: Record<
    Exclude<Drive, 'precise'>,
    (route: (right: Record<string, unknown>, path?: string) => Promise<Routed>) => Promise<void>
  > = {
    async pd(route) {
      const first = await route({ prompt: LONG });
      expect(decodes()).toContain(first.destination);
      expect(first.prefiller).toBe(prefill());
      const again = await route({ prompt: LONG });
      expect(again).toEqual({
        destination: first.destination,
        prefiller: undefined,
        encoders: undefined,
        dataParallel: undefined,
      });
    },
    async single(route) {
      const r = await route({ prompt: LONG });
      expect(decodes()).toContain(r.destination);
      expect(r.prefiller).toBeUndefined();
    },
    async 'single-any-role'(route) {
      const r = await route({ prompt: LONG });
      expect([prefill(), ...decodes(), encode()]).toContain(r.destination);
      expect(r.prefiller).toBeUndefined();
    },
    async 'decode-only'(route) {
      for (const prompt of [LONG, 'hi']) {
        const r = await route({ prompt });
        expect(decodes()).toContain(r.destination);
        expect(r.prefiller).toBeUndefined();
      }
    },
    async 'data-parallel'(route) {
      const r = await route({ prompt: LONG });
      expect(r.destination).toBe('127.0.0.1:8000');
      expect(decodes()).toContain(r.dataParallel);
    },
    async 'e-p-d'(route) {
      const mm = await route(
        { messages: [{ role: 'user', content: [{ type: 'text', text: LONG }, IMAGE] }] },
        '/v1/chat/completions',
      );
      expect(decodes()).toContain(mm.destination);
      expect(mm.encoders).toBe(encode());
      expect(mm.prefiller).toBe(prefill());
      const text = await route({ messages: [{ role: 'user', content: 'hi' }] }, '/v1/chat/completions');
      expect(decodes()).toContain(text.destination);
      expect(text.encoders).toBeUndefined();
      expect(text.prefiller).toBeUndefined();
    },
    async 'pd-topology'(route) {
      const sameHost = new Map([
        [hostOf(1), hostOf(0)],
        [hostOf(2), hostOf(3)],
      ]);
      const decodesSeen = new Set<string>();
      // Each prompt differs from its first character: every one is uncached and goes P/D.
      for (let i = 0; i < 8; i++) {
        const r = await route({ prompt: `${i} ${LONG}` });
        expect(sameHost.has(r.destination), r.destination).toBe(true);
        expect(r.prefiller, `request ${i}`).toBe(sameHost.get(r.destination));
        decodesSeen.add(r.destination);
      }
      // Both hosts were used, so the pairing is not one lucky draw.
      expect(decodesSeen.size).toBe(2);
    },
    async 'mm-embeddings'(route) {
      // Each prompt's text differs from its first character, so no prefix block matches: only the image is shared.
      const chat = (i: number, url: string) => ({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: `${i} ${LONG}` },
              { type: 'image_url', image_url: { url } },
            ],
          },
        ],
      });
      const cat = 'https://example.com/cat.png';
      const first = await route(chat(0, cat), '/v1/chat/completions');
      expect(decodes()).toContain(first.destination);
      for (let i = 1; i <= 4; i++)
        expect((await route(chat(i, cat), '/v1/chat/completions')).destination, `request ${i}`).toBe(first.destination);
    },
    async 'e-pd'(route) {
      const mm = await route(
        { messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, IMAGE] }] },
        '/v1/chat/completions',
      );
      expect(decodes()).toContain(mm.destination);
      expect(mm.encoders).toBe(encode());
      expect(mm.prefiller).toBeUndefined();
      const text = await route({ messages: [{ role: 'user', content: LONG }] }, '/v1/chat/completions');
      expect(text.encoders).toBeUndefined();
      expect(text.prefiller).toBeUndefined();
    },
  };

  for (const [name, e] of Object.entries(EXPECTED)) {
    // Precise configs need simulators publishing KV events: test/epp/precise-prefix-cache.test.ts drives them.
    if (!e.loads || e.drive === 'precise') continue;
    it(
      `${name}: ${e.drive}`,
      async () => {
        await withEpp(
          fixtureText(name),
          drives[e.drive as Exclude<Drive, 'precise'>],
          e.drive === 'pd-topology' ? topologyFile : file,
        );
      },
      DRIVE_TIMEOUT_MS,
    );
  }
});
