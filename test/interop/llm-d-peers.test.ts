/**
 * The EPPs and sidecars, pd-router's and upstream's, each run against the real control plane and pd-router's
 * simulators, to prove every peer runs here:
 * - pd-router's EPP as a process (`node dist/src/cli.js epp`) with the ServiceAccount, RBAC and InferencePool that
 *   Gateway API Inference Extension's inferencepool chart (v1.5.0, rendered by helm) creates;
 * - the upstream EPPs (llm-d-router ebab687, llm-d-inference-scheduler v0.7.1) with their own P/D sample configs;
 * - the upstream P/D sidecars in front of a pd-router simulator.
 * Requests go through pd-router's gateway (the Envoy stand-in).
 */
import { afterEach, expect, it } from 'vitest';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { metricsText, metricValue, postJson, startCli, waitFor } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { renderInferencePoolChart } from './gaie.js';
import { GAIE_EPP_RULES, eppPoolAccess, freePortOn, startSimsOn } from './kube-fixtures.js';
import {
  UPSTREAM,
  UPSTREAM_RELEASES,
  startUpstreamEpp,
  startUpstreamSidecar,
  upstreamFile,
  type UpstreamPeer,
} from './llm-d.js';
import { both, describeWith, need, needSharedControlPlane, pathOf, openSharedCluster } from './need.js';

const cpReq = await needSharedControlPlane();
const chartReq = both(cpReq, await need('helm', 'gaie-v1.5.0'));
const eppReq = Object.fromEntries(
  await Promise.all(
    UPSTREAM_RELEASES.map(
      async (text) => [text, both(cpReq, await need(UPSTREAM[text].source, UPSTREAM[text].epp))] as const,
    ),
  ),
);
const sidecarReq = Object.fromEntries(
  await Promise.all(UPSTREAM_RELEASES.map(async (text) => [text, await need(UPSTREAM[text].sidecar)] as const)),
);

let cluster: KubeCluster | undefined;
openSharedCluster(cpReq, (opened) => (cluster = opened));

let sims: SimulatorHandle[] = [];
let gateway: GatewayHandle | undefined;
let peers: Array<UpstreamPeer | { close(): Promise<unknown> }> = [];
afterEach(async () => {
  await gateway?.close();
  for (const p of peers.reverse()) await p.close();
  await Promise.all(sims.map((handle) => handle.close()));
  sims = [];
  peers = [];
  gateway = undefined;
});

type Obj = Record<string, any>;
const MODEL = 'sim-model';
/** Shorter than the P/D sample configs' nonCachedTokens (16): decided decode-only, served by the decode pod alone. */
const SHORT = { model: MODEL, prompt: 'hi', max_tokens: 2 };

/** A namespace with a prefill and a decode pod on 127.0.0.x, each served by a pd-router simulator on the pool's port. */
async function podsWithSims(
  prefix: string,
  addresses: [string, string],
): Promise<{ ns: string; port: number; prefill: SimulatorHandle; decode: SimulatorHandle }> {
  const port = await freePortOn(addresses);
  sims = await startSimsOn(addresses, port, { model: [MODEL] });
  const ns = await cluster!.createNamespace(prefix);
  await cluster!.createPod(ns, 'prefill-0', {
    labels: { app: 'vllm-pd', 'llm-d.ai/role': 'prefill' },
    ip: addresses[0],
  });
  await cluster!.createPod(ns, 'decode-0', { labels: { app: 'vllm-pd', 'llm-d.ai/role': 'decode' }, ip: addresses[1] });
  return { ns, port, prefill: sims[0], decode: sims[1] };
}

describeWith(
  chartReq,
  "pd-router EPP (process) with the GAIE inferencepool chart's ServiceAccount, RBAC and InferencePool",
  () => {
    it("discovers the pool's pods and serves a request through the gateway", async () => {
      const { ns, port, decode, prefill } = await podsWithSims('peer-pdr', ['127.0.0.41', '127.0.0.42']);
      const rendered = await renderInferencePoolChart(pathOf(chartReq, 'helm'), pathOf(chartReq, 'gaie-v1.5.0'), {
        release: 'pool',
        namespace: ns,
        matchLabels: { app: 'vllm-pd' },
        targetPort: port,
      });
      const kinds = ['ServiceAccount', 'Role', 'RoleBinding', 'InferencePool'];
      const objs = rendered.filter((obj) => kinds.includes(obj.kind));
      expect(objs.map((obj) => obj.kind).sort()).toEqual([
        'InferencePool',
        'Role',
        'Role',
        'RoleBinding',
        'RoleBinding',
        'ServiceAccount',
      ]);
      // The chart's rules are the ones the other interop tests grant as GAIE_EPP_RULES.
      const rules = objs.filter((obj) => obj.kind === 'Role').flatMap((obj: Obj) => obj.rules);
      const norm = (rs: Obj[]) =>
        rs
          .map((obj) => JSON.stringify({ g: obj.apiGroups, r: [...obj.resources].sort(), v: [...obj.verbs].sort() }))
          .sort();
      expect(norm(rules)).toEqual(norm(GAIE_EPP_RULES as Obj[]));
      await cluster!.apply(objs, { namespace: ns });
      const deployment = rendered.find((obj) => obj.kind === 'Deployment')!;
      const sa = deployment.spec.template.spec.serviceAccountName as string;
      const pool = objs.find((obj) => obj.kind === 'InferencePool')!.metadata.name as string;
      const kubeconfig = await cluster!.serviceAccountKubeconfig(ns, sa);

      const epp = await startCli(
        // The chart grants no token reviews with its default values (Prometheus monitoring off): /metrics read without auth.
        [
          'epp',
          '--host=127.0.0.1',
          '--grpc-port=0',
          '--grpc-health-port=0',
          '--metrics-port=0',
          '--secure-serving=false',
          `--pool-name=${pool}`,
          `--pool-namespace=${ns}`,
          `--kubeconfig=${kubeconfig}`,
          '--metrics-endpoint-auth=false',
        ],
        /"grpcPort":(\d+),"healthPort":\d+,"metricsPort":(\d+)/,
        { timeoutMs: 30_000 },
      );
      peers.push({ close: epp.stop });
      const [grpcPort, metricsPort] = [epp.match[1], epp.match[2]];
      // The EPP's own view: both pods as endpoints with fresh metrics (it scrapes the simulators).
      const metricsUrl = `http://127.0.0.1:${metricsPort}`;
      await waitFor(
        async () => metricValue(await metricsText(metricsUrl), 'llm_d_epp_ready_endpoints', { name: pool }) === 2,
        30_000,
        'both pods discovered and scraped',
      );
      const text = await metricsText(metricsUrl);
      // Endpoints are named after their pod and rank, as llm-d-router names them.
      for (const pod of ['prefill-0', 'decode-0'])
        expect(
          metricValue(text, 'llm_d_epp_per_endpoint_queue_size', {
            name: pool,
            model_server_endpoint: `${pod}-rank-0`,
          }),
          text,
        ).toBe(0);

      gateway = await startGateway(
        gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${grpcPort}`, eppTls: false }),
      );
      const r = await postJson(`${gateway.url}/v1/completions`, SHORT);
      expect(r.status, r.text).toBe(200);
      expect(r.body.choices[0].text).toBe('hi');
      expect(decode.engine.recentRequests().length + prefill.engine.recentRequests().length).toBe(1);
    }, 120_000);
  },
);

for (const release of UPSTREAM_RELEASES) {
  describeWith(eppReq[release], `upstream EPP: ${UPSTREAM[release].name}`, () => {
    it('starts against kube-apiserver with its P/D sample config, becomes ready, and picks the decode pod for a request through the gateway', async () => {
      const { ns, decode, prefill } = await podsWithSims(
        `peer-epp-${release.replace(/\W/g, '')}`,
        release === 'ebab687' ? ['127.0.0.51', '127.0.0.52'] : ['127.0.0.53', '127.0.0.54'],
      );
      const port = decode.port;
      const kubeconfig = await eppPoolAccess(cluster!, ns, port);
      const epp = await startUpstreamEpp(release, {
        kubeconfig,
        poolName: 'pool',
        poolNamespace: ns,
        configFile: await upstreamFile(release, 'deploy/config/pd-epp-config.yaml'),
      });
      peers.push(epp);
      expect(await epp.health()).toBe('SERVING');
      gateway = await startGateway(
        gatewayConfig({ host: '127.0.0.1', port: 0, epp: `127.0.0.1:${epp.grpcPort}`, eppTls: false }),
      );
      const r = await postJson(`${gateway.url}/v1/completions`, SHORT);
      expect(r.status, `${r.text}\n${epp.proc.tail()}`).toBe(200);
      expect(decode.engine.recentRequests()).toHaveLength(1);
      expect(prefill.engine.recentRequests()).toHaveLength(0);
    }, 180_000);
  });

  describeWith(sidecarReq[release], `upstream pd-sidecar: ${UPSTREAM[release].name}`, () => {
    it('in front of a pd-router simulator, serves a P/D request: prefill on the prefiller, decode with its kv_transfer_params', async () => {
      const prefill = await startSimulator(
        simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId: 'prefill-0', seed: 1 }),
      );
      const decode = await startSimulator(
        simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId: 'decode-0', seed: 2 }),
      );
      sims = [prefill, decode];
      const sidecar = await startUpstreamSidecar(release, { vllmPort: decode.port });
      peers.push(sidecar);
      const r = await postJson(
        `${sidecar.url}/v1/completions`,
        { model: MODEL, prompt: 'disaggregated hello', max_tokens: 3 },
        { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}` },
      );
      expect(r.status, `${r.text}\n${sidecar.proc.tail()}`).toBe(200);
      expect(r.body.choices[0].text).toMatch(/^disaggregated/);
      const p = prefill.engine.recentRequests();
      const d = decode.engine.recentRequests();
      expect(p).toHaveLength(1);
      expect(p[0].kind).toBe('prefill');
      expect(d).toHaveLength(1);
      expect(d[0].kind).toBe('decode');
      expect((d[0].kvTransferParams as { remote_engine_id?: string } | undefined)?.remote_engine_id).toBe('prefill-0');
    }, 60_000);
  });
}
