/**
 * Mixed pairs: pd-router's EPP with each upstream pd-sidecar, and each upstream EPP (llm-d's own P/D sample config of
 * its release) with pd-router's sidecar; end to end through pd-router's gateway (the Envoy stand-in) to pd-router
 * simulators. Each pair serves a P/D request (the prefill leg on the prefiller, the decode leg with the prefiller's
 * kv_transfer_params), a streamed P/D chat request, and a short request decided decode-only (served by the decode pod
 * alone).
 *
 * Topology, as in a cluster: the prefill pod runs its model server on the pool's target port; the decode pod runs the
 * sidecar on that port and its model server behind it (here on 127.0.0.1, the sidecar's "localhost").
 * - Upstream EPP + pd-router sidecar: pods on 127.0.0.x in an InferencePool on kube-apiserver.
 * - pd-router EPP + upstream sidecar: the upstream sidecars have no bind-address flag and listen on every address, so
 *   on one machine the prefill pod's model server cannot share their port (in a cluster each pod has its own network
 *   namespace). pd-router's EPP therefore discovers these two endpoints from a file (llm-d's file-discovery format),
 *   each with its own port, instead of from an InferencePool, whose pods share the target port.
 */
import { afterEach, expect, it } from 'vitest';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { postJson, sseJson } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { eppPoolAccess, freePortOn } from './kube-fixtures.js';
import { UPSTREAM, UPSTREAM_RELEASES, startUpstreamEpp, startUpstreamSidecar, upstreamFile } from './llm-d.js';
import { both, describeWith, need, needSharedControlPlane, openSharedCluster } from './need.js';
import { PeerSet, startPdRouterEpp, startPdRouterSidecar, writeEndpointsFile } from './pd-router-peers.js';

const cpReq = await needSharedControlPlane();
const eppReq = Object.fromEntries(
  await Promise.all(
    UPSTREAM_RELEASES.map(
      async (text) => [text, both(cpReq, await need(UPSTREAM[text].source, UPSTREAM[text].epp))] as const,
    ),
  ),
);
const sidecarReq = Object.fromEntries(
  await Promise.all(
    UPSTREAM_RELEASES.map(async (text) => [text, await need(UPSTREAM[text].source, UPSTREAM[text].sidecar)] as const),
  ),
);

let cluster: KubeCluster | undefined;
openSharedCluster(cpReq, (opened) => (cluster = opened));

const peers = new PeerSet();
let sims: SimulatorHandle[] = [];
let gateway: GatewayHandle | undefined;
afterEach(async () => {
  await gateway?.close();
  await peers.closeAll();
  await Promise.all(sims.map((handle) => handle.close()));
  sims = [];
  gateway = undefined;
});

const MODEL = 'sim-model';
/** Far over the sample configs' nonCachedTokens (16) by any count (v0.7.1's json/4, llm-d-router's bytes/4). */
const longPrompt = (tag: string) => `${tag}: ` + Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');

async function startSim(host: string, port: number, engineId: string): Promise<SimulatorHandle> {
  const s = await startSimulator(simConfig({ host, port, model: [MODEL], mode: 'echo', engineId, seed: 1 }));
  sims.push(s);
  return s;
}

/**
 * The three requests every pair must serve, through the gateway: P/D completions, P/D chat streamed, a short local one;
 * checked on the client's answers and on what each simulator received.
 */
async function servesPdAndLocal(gatewayUrl: string, prefill: SimulatorHandle, decode: SimulatorHandle): Promise<void> {
  const why = (result: { status: number; text: string }) => `${result.status} ${result.text}\n${peers.tails()}`;
  // 1. P/D, completions.
  const pd = await postJson(`${gatewayUrl}/v1/completions`, {
    model: MODEL,
    prompt: longPrompt('completion'),
    max_tokens: 3,
  });
  peers.check();
  expect(pd.status, why(pd)).toBe(200);
  // The echo simulator answers the prompt's first tokens.
  const text = pd.body.choices[0].text as string;
  expect(text.startsWith('completion: word0') && longPrompt('completion').startsWith(text), text).toBe(true);
  expect(prefill.engine.recentRequests().map((record) => [record.kind, record.path])).toEqual([
    ['prefill', '/v1/completions'],
  ]);
  expect(decode.engine.recentRequests().map((record) => [record.kind, record.path])).toEqual([
    ['decode', '/v1/completions'],
  ]);
  const params = (reason: unknown) => reason as { remote_engine_id?: string; do_remote_prefill?: boolean };
  expect(params(decode.engine.recentRequests()[0].kvTransferParams)).toMatchObject({
    do_remote_prefill: true,
    remote_engine_id: 'prefill-0',
  });

  // 2. P/D, chat, streamed.
  const chat = await fetch(`${gatewayUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: longPrompt('chat') }],
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    }),
    signal: AbortSignal.timeout(60_000),
  });
  const chatText = await chat.text();
  peers.check();
  expect(chat.status, why({ status: chat.status, text: chatText })).toBe(200);
  const events = sseJson(chatText);
  const chatAnswer = events.map((err) => err.choices?.[0]?.delta?.content ?? '').join('');
  expect(chatAnswer.startsWith('chat: word0') && longPrompt('chat').startsWith(chatAnswer), chatAnswer).toBe(true);
  expect(chatText.trimEnd().endsWith('data: [DONE]')).toBe(true);
  expect(prefill.engine.recentRequests().map((record) => [record.kind, record.path])).toEqual([
    ['prefill', '/v1/completions'],
    ['prefill', '/v1/chat/completions'],
  ]);
  const chatDecode = decode.engine.recentRequests()[1];
  expect([chatDecode.kind, chatDecode.path, (chatDecode.body as { stream?: boolean }).stream]).toEqual([
    'decode',
    '/v1/chat/completions',
    true,
  ]);
  expect(params(chatDecode.kvTransferParams).remote_engine_id).toBe('prefill-0');

  // 3. Short: decided decode-only, the decode pod alone serves it.
  const local = await postJson(`${gatewayUrl}/v1/completions`, { model: MODEL, prompt: 'hi', max_tokens: 2 });
  peers.check();
  expect(local.status, why(local)).toBe(200);
  expect(local.body.choices[0].text).toBe('hi');
  expect(prefill.engine.recentRequests()).toHaveLength(2);
  const last = decode.engine.recentRequests()[2];
  expect([last.kind, last.kvTransferParams]).toEqual(['aggregated', undefined]);
}

for (const release of UPSTREAM_RELEASES) {
  const name = UPSTREAM[release].name;

  describeWith(eppReq[release], `mixed pair: ${name} EPP (its pd-epp-config.yaml) + pd-router sidecar`, () => {
    it('serves P/D (completions, streamed chat) and local requests through the gateway', async () => {
      const addresses = release === 'ebab687' ? ['127.0.0.61', '127.0.0.62'] : ['127.0.0.63', '127.0.0.64'];
      const port = await freePortOn(addresses);
      const prefill = await startSim(addresses[0], port, 'prefill-0');
      const decode = await startSim('127.0.0.1', 0, 'decode-0');
      peers.add(await startPdRouterSidecar({ host: addresses[1], port, modelServerPort: decode.port }));
      const ns = await cluster!.createNamespace(`mixed-up-epp-${release.replace(/\W/g, '')}`);
      await cluster!.createPod(ns, 'prefill-0', {
        labels: { app: 'vllm-pd', 'llm-d.ai/role': 'prefill' },
        ip: addresses[0],
      });
      await cluster!.createPod(ns, 'decode-0', {
        labels: { app: 'vllm-pd', 'llm-d.ai/role': 'decode' },
        ip: addresses[1],
      });
      const kubeconfig = await eppPoolAccess(cluster!, ns, port);
      const epp = peers.add(
        await startUpstreamEpp(release, {
          kubeconfig,
          poolName: 'pool',
          poolNamespace: ns,
          configFile: await upstreamFile(release, 'deploy/config/pd-epp-config.yaml'),
        }),
      );
      gateway = await startGateway(
        gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${epp.grpcPort}`, eppTls: false }),
      );
      await servesPdAndLocal(gateway.url, prefill, decode);
    }, 180_000);
  });

  describeWith(
    both(sidecarReq[release], await need(UPSTREAM[release].source)),
    `mixed pair: pd-router EPP (${name}'s pd-epp-config.yaml) + ${name} pd-sidecar`,
    () => {
      it('serves P/D (completions, streamed chat) and local requests through the gateway', async () => {
        const addresses = release === 'ebab687' ? ['127.0.0.65', '127.0.0.66'] : ['127.0.0.67', '127.0.0.68'];
        const prefill = await startSim(addresses[0], 0, 'prefill-0');
        const decode = await startSim('127.0.0.1', 0, 'decode-0');
        const sidecar = peers.add(await startUpstreamSidecar(release, { vllmPort: decode.port }));
        const endpointsFile = writeEndpointsFile([
          { name: 'prefill-0', address: addresses[0], port: prefill.port, role: 'prefill' },
          { name: 'decode-0', address: addresses[1], port: sidecar.port, role: 'decode' },
        ]);
        const epp = peers.add(
          await startPdRouterEpp({
            configFile: await upstreamFile(release, 'deploy/config/pd-epp-config.yaml'),
            discovery: { endpointsFile },
          }),
        );
        gateway = await startGateway(
          gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${epp.grpcPort}`, eppTls: false }),
        );
        await servesPdAndLocal(gateway.url, prefill, decode);
      }, 180_000);
    },
  );
}
