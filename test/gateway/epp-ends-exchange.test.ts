/**
 * The EPP ends an exchange on its own while the request is upstream: llm-d-router's flow-control eviction answers an
 * in-flight sheddable request 429 when a critical one waits at saturation. Envoy acts on that immediate response at
 * once (the upstream request is reset, the client gets the 429); the gateway, standing in for Envoy, must too, not
 * when the upstream's answer eventually comes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startEpp, type EppHandle } from '../../src/epp/index.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { loopbackEppConfig, seeded, spec } from '../epp/fixtures.js';
import { postCompletion, startRecorder, type Recorder } from './fixtures.js';

const PRIORITIES: Record<string, number> = { sheddable: -1, critical: 10 };
const CONFIG = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- {type: random-picker}
- {name: sat, type: concurrency-detector, parameters: {maxConcurrency: 1}}
flowControl:
  enableEviction: true
  defaultRequestTTL: 600s
  saturationDetector: {pluginRef: sat}
`;

const post = (gateway: GatewayHandle, objective: string) =>
  postCompletion(
    gateway.url,
    { model: 'food-review', prompt: `hello ${objective}` },
    { 'x-gateway-inference-objective': objective },
  ).done;

let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

async function start(): Promise<{ upstream: Recorder; epp: EppHandle; gateway: GatewayHandle }> {
  const upstream = await startRecorder();
  cleanup.push(() => upstream.close());
  const epp = await startEpp(loopbackEppConfig(CONFIG, [spec('pod-a', '127.0.0.1', undefined, {}, upstream.port)]), {
    random: seeded(),
    requestPolicies: { rewrite: () => undefined, priority: (text) => PRIORITIES[text] ?? 0 },
  });
  cleanup.push(() => epp.close(1_000));
  const gateway = await startGateway(
    gatewayConfig({ host: '127.0.0.1', port: 0, eppTls: false, epp: `127.0.0.1:${epp.grpcPort}` }),
  );
  cleanup.push(() => gateway.close(1_000));
  return { upstream, epp, gateway };
}

/** A streamed request: `started` with its first bytes, `done` once it ends or is cut. */
const stream = (gateway: GatewayHandle, objective: string) =>
  postCompletion(
    gateway.url,
    { model: 'food-review', prompt: `hello ${objective}`, stream: true },
    { 'x-gateway-inference-objective': objective },
  );

describe('the EPP evicts a request while it is upstream', () => {
  it('the client gets the 429 at once and the upstream request is reset; the critical request is served', async () => {
    const { upstream, gateway } = await start();
    // The sheddable request reaches the upstream, which holds it (never answers).
    let sheddableGone!: Promise<void>;
    const arrived = upstream.nextArrival().then((req) => {
      sheddableGone = new Promise<void>((resolve) => req.socket.once('close', () => resolve()));
    });
    upstream.handler = (req, res) => {
      if (req.headers['x-gateway-inference-objective'] !== 'sheddable')
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices":[]}');
    };
    const sheddable = post(gateway, 'sheddable');
    await arrived;
    // The critical request waits at saturation: the EPP evicts the sheddable one and routes the critical one.
    const critical = post(gateway, 'critical');
    const evicted = await sheddable;
    expect([evicted.status, evicted.headers['x-llm-d-request-dropped-reason'], evicted.text]).toEqual([
      429,
      'evicted',
      'request evicted by flow control',
    ]);
    await sheddableGone;
    expect((await critical).status).toBe(200);
  }, 60_000);
});

// Response bodies through the EPP (the default, FULL_DUPLEX_STREAMED): its exchange lasts until the answer ends, so the
// answer can be evicted midway. (With NONE the exchange ends at the response headers, in the EPP's books too.)
describe('the EPP evicts a request whose response is streaming', () => {
  it('the client response is cut, never completed, and the upstream request is reset', async () => {
    const { upstream, gateway } = await start();
    let sheddableGone!: Promise<void>;
    const arrived = upstream.nextArrival().then((req) => {
      sheddableGone = new Promise<void>((resolve) => req.socket.once('close', () => resolve()));
    });
    upstream.handler = (req, res) => {
      if (req.headers['x-gateway-inference-objective'] === 'sheddable') {
        // The first event, then nothing more.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"choices":[{"index":0,"text":"first"}]}\n\n');
      } else res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices":[]}');
    };
    const sheddable = stream(gateway, 'sheddable');
    await arrived;
    await sheddable.started;
    const critical = post(gateway, 'critical');
    const cut = await sheddable.done;
    expect(cut.status).toBe(200);
    expect(cut.text).toContain('first');
    expect(cut.ending).not.toBe('end');
    await sheddableGone;
    expect((await critical).status).toBe(200);
  }, 60_000);
});
