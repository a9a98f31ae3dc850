/**
 * The plugins pd-router added from llm-d-router's catalogue, side by side with llm-d-router ebab687's own EPP: both
 * load the same EndpointPickerConfig (file discovery over the same endpoints file, pd-router's simulators as the model
 * servers) and answer the same requests over ext_proc. Each case compares what the two decide where upstream's
 * semantics make the answer deterministic: header-profile-handler (destinations, the 429 body), session affinity
 * (the x-session-token each writes, stickiness, a token naming a pod that left; session ids), burst co-location,
 * context-length-aware, topology
 * affinity (the prefill pick shares the decode pick's host), lora-affinity-scorer (vllm:lora_requests_info scraped
 * from the simulators), endpoint-attribute-filter (a customMetrics attribute) and multimodal embeddings-cache affinity
 * (requests with the same image follow the first pick). The upstream EPP runs with
 * --allow-experimental-plugins: these plugins are alpha there.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, expect, it } from 'vitest';
import { eppConfig, healthClientConstructor, startEpp, type EppHandle } from '../../src/epp/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { ExtProcTestClient } from '../epp/ext-proc-client.js';
import { routeOverExtProc, type RouteOutcome } from '../epp/ext-proc-route.js';
import { upstreamText } from '../fixtures/upstream-configs/index.js';
import { freePortRange, metricValue, metricsText, waitFor } from '../helpers.js';
import { ManagedProcess, waitReady } from './control-plane.js';
import { describeWith, need, pathOf } from './need.js';

const req = await need('llm-d-router-ebab687-epp');
const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const WAIT_MS = 30_000;
const TEST_MS = 120_000;

interface Peer {
  name: string;
  route(payload: Record<string, unknown>, headers?: Record<string, string>, path?: string): Promise<RouteOutcome>;
  /**
   * The peer has scraped every endpoint, and each shows the waiting-queue size given (its per-endpoint queue gauge, or
   * its store): llm-d-router's gauge exists before the first scrape, so a test that needs scraped figures waits for a
   * queue only a scrape can show.
   */
  scraped(queues: Record<string, number>): Promise<boolean>;
  close(): Promise<void>;
}

let sims: SimulatorHandle[] = [];
let peers: Peer[] = [];
const holds: AbortController[] = [];
afterEach(async () => {
  for (const h of holds.splice(0)) h.abort();
  for (const p of peers.splice(0)) await p.close();
  await Promise.all(sims.map((sim) => sim.close(500)));
  sims = [];
});

type Pod = { name: string; sim: SimulatorHandle; labels?: Record<string, string> };

function writeConfig(config: string, pods: Pod[]): { file: string; text: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-plugins-diff-'));
  const endpoints = path.join(dir, 'endpoints.yaml');
  writeFileSync(
    endpoints,
    `endpoints:\n${pods.map((pod) => `- {name: ${pod.name}, namespace: default, address: 127.0.0.1, port: "${pod.sim.port}", labels: ${JSON.stringify(pod.labels ?? {})}}`).join('\n')}\n`,
  );
  // The same discovery for both: a file-discovery plugin the config names.
  const withDiscovery = config.replace(
    /^plugins:\n/m,
    `plugins:\n- type: file-discovery\n  parameters: {path: ${endpoints}}\n`,
  );
  const text = /^dataLayer:/m.test(withDiscovery)
    ? withDiscovery.replace(/^dataLayer:\n/m, 'dataLayer:\n  discovery: {pluginRef: file-discovery}\n')
    : `${withDiscovery}dataLayer:\n  discovery: {pluginRef: file-discovery}\n`;
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, text);
  return { file, text };
}

function healthy(port: number): Promise<boolean> {
  const Ctor = healthClientConstructor();
  // eslint-disable-next-line no-restricted-syntax -- the loaded health client's methods are not typed by proto-loader
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(
      request: { service: string },
      options: grpc.CallOptions,
      callback: (err: Error | null, reply: { status: string }) => void,
    ): void;
  };
  return new Promise((resolve) =>
    client.Check(
      { service: 'envoy.service.ext_proc.v3.ExternalProcessor' },
      { deadline: Date.now() + 2_000 },
      (err: Error | null, reply: { status: string }) => {
        client.close();
        resolve(!err && reply.status === 'SERVING');
      },
    ),
  );
}

async function startPdRouter(text: string, pods: Pod[]): Promise<Peer> {
  const epp: EppHandle = await startEpp(
    eppConfig({
      host: '127.0.0.1',
      grpcPort: 0,
      grpcHealthPort: 0,
      metricsPort: 0,
      secureServing: false,
      configText: text,
      refreshMetricsInterval: 50,
    }),
  );
  const client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`);
  return {
    name: 'pd-router',
    route: (payload, headers = {}, path) => routeOverExtProc(client, payload, { headers, path }),
    scraped: (queues) =>
      Promise.resolve(
        epp.store.size === pods.length &&
          epp.store
            .all()
            .every(
              (candidate) =>
                candidate.metrics.updatedAt > 0 &&
                candidate.metrics.waitingQueueSize === (queues[candidate.name] ?? candidate.metrics.waitingQueueSize),
            ),
      ),
    async close() {
      client.close();
      await epp.close(1000);
    },
  };
}

async function startUpstream(file: string, pods: Pod[]): Promise<Peer> {
  const [grpcPort, healthPort, metricsPort] = [await freePortRange(1), await freePortRange(1), await freePortRange(1)];
  const proc = ManagedProcess.spawn('llm-d-router ebab687 epp', pathOf(req, 'llm-d-router-ebab687-epp'), [
    '--pool-name=epp',
    `--config-file=${file}`,
    `--grpc-port=${grpcPort}`,
    `--grpc-health-port=${healthPort}`,
    `--metrics-port=${metricsPort}`,
    '--secure-serving=false',
    '--metrics-endpoint-auth=false',
    '--tracing=false',
    '--allow-experimental-plugins',
  ]);
  try {
    await waitReady(proc, `gRPC health SERVING on port ${healthPort}`, () => healthy(healthPort), 60_000);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  const client = new ExtProcTestClient(`127.0.0.1:${grpcPort}`);
  return {
    name: 'llm-d-router',
    route: (payload, headers = {}, path) => routeOverExtProc(client, payload, { headers, path }),
    async scraped(queues) {
      const text = await metricsText(`http://127.0.0.1:${metricsPort}`);
      return pods.every((pod) => {
        const value = metricValue(text, 'llm_d_epp_per_endpoint_queue_size', { model_server_endpoint: pod.name });
        const expected = Object.hasOwn(queues, pod.name) ? queues[pod.name] : undefined;
        return value !== undefined && (expected === undefined || value === expected);
      });
    },
    async close() {
      client.close();
      await proc.stop();
    },
  };
}

/** Both EPPs on one config and pool; resolves once each has scraped every simulator (showing `queues`, by pod). */
async function bothEpps(config: string, pods: Pod[], queues: Record<string, number> = {}): Promise<Peer[]> {
  const { file, text } = writeConfig(config, pods);
  peers = [await startPdRouter(text, pods), await startUpstream(file, pods)];
  for (const p of peers) await waitFor(() => p.scraped(queues), WAIT_MS, `${p.name} to scrape the simulators`);
  return peers;
}

async function simulators(count: number, overrides: Parameters<typeof simConfig>[0] = {}): Promise<SimulatorHandle[]> {
  sims = await Promise.all(
    Array.from({ length: count }, () =>
      startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: ['m'], ...overrides })),
    ),
  );
  return sims;
}

const destination = (outcome: RouteOutcome) => outcome.set.get('x-gateway-destination-endpoint');
const hostOf = (sim: SimulatorHandle) => `127.0.0.1:${sim.port}`;

/** Holds a request on a simulator (it runs until the test ends). */
function hold(sim: SimulatorHandle, model: string): void {
  const ac = new AbortController();
  holds.push(ac);
  void fetch(`${sim.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'hold', max_tokens: 2 }),
    signal: ac.signal,
  }).catch(() => undefined);
}

describeWith(req, 'the new plugins, pd-router and llm-d-router ebab687 side by side', () => {
  it(
    'header-profile-handler: each stage’s pods, the default, and the same 429 for an unknown profile',
    async () => {
      const [e, p, d] = await simulators(3);
      const config = `${LLMD}plugins:\n- type: encode-filter\n- type: prefill-filter\n- type: decode-filter\n- type: header-profile-handler\nschedulingProfiles:\n- {name: encode, plugins: [{pluginRef: encode-filter}]}\n- {name: prefill, plugins: [{pluginRef: prefill-filter}]}\n- {name: decode, plugins: [{pluginRef: decode-filter}]}\n`;
      const role = (role: string) => ({ 'llm-d.ai/role': role });
      for (const peer of await bothEpps(config, [
        { name: 'e0', sim: e, labels: role('encode') },
        { name: 'p0', sim: p, labels: role('prefill') },
        { name: 'd0', sim: d, labels: role('decode') },
      ])) {
        const at = async (stage?: string) =>
          destination(await peer.route({ model: 'm', prompt: 'hi' }, stage ? { 'EPP-Profile': stage } : {}));
        expect([await at('encode'), await at('prefill'), await at('decode'), await at()], peer.name).toEqual([
          hostOf(e),
          hostOf(p),
          hostOf(d),
          hostOf(d),
        ]);
        expect(
          (await peer.route({ model: 'm', prompt: 'hi' }, { 'EPP-Profile': 'nope', 'x-request-id': 'req-nope' }))
            .rejected,
          peer.name,
        ).toEqual({
          status: 429,
          body: 'inference error: ResourceExhausted - failed to find target endpoint: failed to run any scheduler profile for request req-nope',
        });
      }
    },
    TEST_MS,
  );

  it(
    'session-affinity-scorer: the same token on the response, the session sticks, a token naming a pod that left is scored normally',
    async () => {
      const [a, b] = await simulators(2);
      const config = `${LLMD}plugins:\n- type: session-affinity-scorer\n- type: max-score-picker\nschedulingProfiles:\n- {name: default, plugins: [{pluginRef: session-affinity-scorer}, {pluginRef: max-score-picker}]}\n`;
      const tokens: string[] = [];
      for (const peer of await bothEpps(config, [
        { name: 'a', sim: a },
        { name: 'b', sim: b },
      ])) {
        const token = Buffer.from('default/b').toString('base64');
        for (let i = 0; i < 4; i++) {
          const r = await peer.route({ model: 'm', prompt: `hi ${i}` }, { 'x-session-token': token });
          expect(destination(r), peer.name).toBe(hostOf(b));
          tokens.push(r.response.get('x-session-token')!);
        }
        const gone = await peer.route(
          { model: 'm', prompt: 'hi' },
          { 'x-session-token': Buffer.from('default/left-the-pool').toString('base64') },
        );
        expect(gone.rejected, peer.name).toBeUndefined();
        expect([hostOf(a), hostOf(b)], peer.name).toContain(destination(gone));
        expect(Buffer.from(gone.response.get('x-session-token')!, 'base64').toString(), peer.name).toBe(
          destination(gone) === hostOf(a) ? 'default/a' : 'default/b',
        );
      }
      expect(new Set(tokens)).toEqual(new Set([Buffer.from('default/b').toString('base64')]));
    },
    TEST_MS,
  );

  it(
    'session-affinity-filter, session_id strategy: a session stays on the endpoint its first request went to',
    async () => {
      const [a, b, c] = await simulators(3);
      const config = `${LLMD}plugins:\n- type: session-affinity-filter\n  parameters: {strategy: session_id}\n- type: random-picker\nschedulingProfiles:\n- {name: default, plugins: [{pluginRef: session-affinity-filter}, {pluginRef: random-picker}]}\n`;
      for (const peer of await bothEpps(config, [
        { name: 'a', sim: a },
        { name: 'b', sim: b },
        { name: 'c', sim: c },
      ])) {
        for (const session of ['s1', 's2', 's3']) {
          const first = destination(await peer.route({ model: 'm', prompt: 'hi' }, { 'x-session-id': session }));
          for (let i = 0; i < 4; i++)
            expect(
              destination(await peer.route({ model: 'm', prompt: `hi ${i}` }, { 'x-session-id': session })),
              `${peer.name} ${session}`,
            ).toBe(first);
        }
        // Without a session id the random picker spreads requests (so the stickiness above is the filter's).
        const spread = new Set<string | undefined>();
        for (let i = 0; i < 12; i++) spread.add(destination(await peer.route({ model: 'm', prompt: 'hi' })));
        expect(spread.size, peer.name).toBeGreaterThan(1);
      }
    },
    TEST_MS,
  );

  it(
    'burst-prefix-cache-producer: a burst of one prompt within the window goes to one replica',
    async () => {
      const [a, b, c] = await simulators(3);
      const config = `${LLMD}plugins:\n- type: burst-prefix-cache-producer\n  parameters: {windowDurationMs: 1000}\n- type: prefix-cache-scorer\n  parameters: {prefixMatchInfoProducerName: burst-prefix-cache-producer}\n- type: max-score-picker\nschedulingProfiles:\n- {name: default, plugins: [{pluginRef: prefix-cache-scorer}, {pluginRef: max-score-picker}]}\n`;
      for (const peer of await bothEpps(config, [
        { name: 'a', sim: a },
        { name: 'b', sim: b },
        { name: 'c', sim: c },
      ])) {
        const prompt = 'Group sample prompt for a rollout step. '.repeat(12);
        const burst = await Promise.all(Array.from({ length: 6 }, () => peer.route({ model: 'm', prompt })));
        expect(new Set(burst.map(destination)).size, peer.name).toBe(1);
      }
    },
    TEST_MS,
  );

  it(
    'context-length-aware with filtering: short prompts to the short-context pod, long ones to the long-context pod',
    async () => {
      const [short, long] = await simulators(2, { maxModelLen: 100_000 });
      const config = `${LLMD}plugins:\n- type: context-length-aware\n  parameters: {enableFiltering: true}\n- type: max-score-picker\nschedulingProfiles:\n- {name: default, plugins: [{pluginRef: context-length-aware}, {pluginRef: max-score-picker}]}\n`;
      const label = (range: string) => ({ 'llm-d.ai/context-length-range': range });
      for (const peer of await bothEpps(config, [
        { name: 'short', sim: short, labels: label('0-1000') },
        { name: 'long', sim: long, labels: label('1000-100000') },
      ])) {
        expect(destination(await peer.route({ model: 'm', prompt: 'a short question' })), peer.name).toBe(
          hostOf(short),
        );
        expect(destination(await peer.route({ model: 'm', prompt: 'many words here '.repeat(1000) })), peer.name).toBe(
          hostOf(long),
        );
      }
    },
    TEST_MS,
  );

  it(
    'topology affinity (pd-topology-epp-config.yaml): the prefill pick shares the decode pick’s host',
    async () => {
      const [p0, d0, d1, p1] = await simulators(4);
      const config = upstreamText('llm-d-router-ebab687/deploy/config/pd-topology-epp-config.yaml');
      const at = (role: string, host: string) => ({ 'llm-d.ai/role': role, 'kubernetes.io/hostname': host });
      const pods = [
        { name: 'p0', sim: p0, labels: at('prefill', 'node-a') },
        { name: 'd0', sim: d0, labels: at('decode', 'node-a') },
        { name: 'd1', sim: d1, labels: at('decode', 'node-b') },
        { name: 'p1', sim: p1, labels: at('prefill', 'node-b') },
      ];
      const sameHost = new Map([
        [hostOf(d0), hostOf(p0)],
        [hostOf(d1), hostOf(p1)],
      ]);
      for (const peer of await bothEpps(config, pods)) {
        for (let i = 0; i < 6; i++) {
          const r = await peer.route({
            model: 'm',
            prompt: `${i} Tell me about the history of Rome in great detail. `.repeat(8),
          });
          expect(r.set.get('x-prefiller-host-port'), `${peer.name} request ${i}`).toBe(sameHost.get(destination(r)!));
        }
      }
    },
    TEST_MS,
  );

  it(
    'lora-affinity-scorer over the simulators’ vllm:lora_requests_info: the adapter’s server, else the one with room',
    async () => {
      const loras = ['{"name":"sql-lora","path":"/a/sql"}', '{"name":"chat-lora","path":"/a/chat"}'];
      const [a, b] = await simulators(2, { loraModules: loras, maxLoras: 1, maxNumSeqs: 1, timeToFirstToken: 120_000 });
      // sql-lora runs on b, and a second sql-lora request waits there: the queue of 1 tells when an EPP has scraped b.
      hold(b, 'sql-lora');
      await waitFor(() => b.engine.scheduler.running === 1, WAIT_MS, 'sql-lora running on b');
      hold(b, 'sql-lora');
      await waitFor(() => b.engine.scheduler.waiting === 1, WAIT_MS, 'sql-lora waiting on b');
      const config = `${LLMD}plugins:\n- type: lora-affinity-scorer\n- type: max-score-picker\nschedulingProfiles:\n- {name: default, plugins: [{pluginRef: lora-affinity-scorer}, {pluginRef: max-score-picker}]}\n`;
      for (const peer of await bothEpps(
        config,
        [
          { name: 'a', sim: a },
          { name: 'b', sim: b },
        ],
        { b: 1 },
      )) {
        expect(destination(await peer.route({ model: 'sql-lora', prompt: 'hi' })), peer.name).toBe(hostOf(b));
        expect(destination(await peer.route({ model: 'chat-lora', prompt: 'hi' })), peer.name).toBe(hostOf(a));
      }
    },
    TEST_MS,
  );

  it(
    'endpoint-attribute-filter on a customMetrics attribute: the busy server is filtered out',
    async () => {
      const [a, b] = await simulators(2, { maxNumSeqs: 1, timeToFirstToken: 120_000 });
      // One request runs on a and one waits: the queue of 1 tells when an EPP has scraped a.
      hold(a, 'm');
      await waitFor(() => a.engine.scheduler.running === 1, WAIT_MS, 'a request running on a');
      hold(a, 'm');
      await waitFor(() => a.engine.scheduler.waiting === 1, WAIT_MS, 'a request waiting on a');
      const config = `${LLMD}plugins:
- type: metrics-data-source
- type: core-metrics-extractor
  parameters:
    engineConfigs:
    - name: vllm
      queuedRequestsSpec: vllm:num_requests_waiting
      runningRequestsSpec: vllm:num_requests_running
      kvUsageSpec: vllm:kv_cache_usage_perc
      customMetrics:
      - {attributeKey: running, metricSpec: vllm:num_requests_running}
- type: endpoint-attribute-filter
  parameters:
    attribute: running
    onMissing: Fail
    algorithm: {type: threshold, threshold: {operator: LessThan, value: 1}}
- type: max-score-picker
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors: [{pluginRef: core-metrics-extractor}]
schedulingProfiles:
- {name: default, plugins: [{pluginRef: endpoint-attribute-filter}, {pluginRef: max-score-picker}]}
`;
      for (const peer of await bothEpps(
        config,
        [
          { name: 'a', sim: a },
          { name: 'b', sim: b },
        ],
        { a: 1 },
      )) {
        for (let i = 0; i < 3; i++)
          expect(destination(await peer.route({ model: 'm', prompt: `hi ${i}` })), peer.name).toBe(hostOf(b));
      }
    },
    TEST_MS,
  );
  it(
    'mm-embeddings-cache-producer and -scorer: requests with the same image (new text each) follow the first pick',
    async () => {
      const [a, b, c] = await simulators(3);
      // cacheSizeInMBPerServer, not the sample's cacheSizeInMB: llm-d-router's strict decoder rejects that key.
      const config = `${LLMD}plugins:\n- type: mm-embeddings-cache-producer\n  parameters: {cacheSizeInMBPerServer: 4}\n- type: mm-embeddings-cache-scorer\n- type: max-score-picker\nschedulingProfiles:\n- {name: default, plugins: [{pluginRef: mm-embeddings-cache-scorer}, {pluginRef: max-score-picker}]}\n`;
      const chat = (i: number, url: string) => ({
        model: 'm',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: `${i} what is in this picture?` },
              { type: 'image_url', image_url: { url } },
            ],
          },
        ],
      });
      const at = async (peer: Peer, i: number, url: string) =>
        destination(await peer.route(chat(i, url), {}, '/v1/chat/completions'));
      for (const peer of await bothEpps(config, [
        { name: 'a', sim: a },
        { name: 'b', sim: b },
        { name: 'c', sim: c },
      ])) {
        for (const url of ['https://example.com/cat.png', 'data:image/png;base64,iVBORw0KGgo=']) {
          const first = await at(peer, 0, url);
          for (let i = 1; i <= 4; i++) expect(await at(peer, i, url), `${peer.name} ${url} request ${i}`).toBe(first);
        }
      }
    },
    TEST_MS,
  );
});
