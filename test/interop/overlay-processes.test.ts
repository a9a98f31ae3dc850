/**
 * Each of pd-router's Kustomize overlays, rendered as `kubectl kustomize` renders it, applied to the shared
 * kube-apiserver and run (local-kubelet.ts): the EPP and every routing sidecar as their per-component binaries with the
 * rendered args and env, as the overlay's ServiceAccounts, so the overlay's RBAC is what lets them see the pool; the
 * cpu-sim overlay's simulators as pd-router-sim; the accelerator overlays' vLLM containers stood in for by pd-router's
 * simulator on the pod address. Every pod must pass its own probes (the EPP's gRPC `readiness`, the sidecar's
 * `/ready`, vLLM's `/v1/models`), and requests through pd-router's gateway must be served: a long prompt P/D, a short
 * one on a decode pod. Envoy (the cpu-sim overlay's envoy-standalone component) is not run: the gateway stands in.
 */
import { afterEach, expect, it } from 'vitest';
import type { GatewayHandle } from '../../src/gateway/index.js';
import { metricsText, metricValue } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { LocalKubelet } from './local-kubelet.js';
import { byKind, eppOf, expectDisaggregated, expectServedLocally, gatewayTo, modelServers, named, renderedArgs, splitDeployments, untilEppSees } from './manifest-stack.js';
import { describeWith, needSharedControlPlane, sharedCluster } from './need.js';
import { renderOverlay } from './upstream-deploy.js';

type Obj = Record<string, any>;

const OVERLAYS = ['cpu-sim', 'nvidia', 'amd', 'intel-gaudi', 'intel-xpu', 'tpu'] as const;
const ENVOY = "Envoy (envoy-standalone): pd-router's gateway, the Envoy stand-in, sends the requests to the EPP";

const req = await needSharedControlPlane();
let cluster: KubeCluster | undefined;
let kubelet: LocalKubelet | undefined;
let gateway: GatewayHandle | undefined;
afterEach(async () => {
  await gateway?.close();
  await kubelet?.close();
  await cluster?.close();
  gateway = kubelet = cluster = undefined;
});

/** The model the overlay serves: vLLM's `serve <model>`, or the simulator's `--model <model>`. */
function servedModel(deployment: Obj): string {
  const args = (deployment.spec.template.spec.containers.find((c: Obj) => c.name === 'vllm').args ?? []) as string[];
  if (args[0] === 'serve') return args[1]!;
  const i = args.findIndex((a) => a === '--model' || a.startsWith('--model='));
  return args[i]!.includes('=') ? args[i]!.split('=')[1]! : args[i + 1]!;
}

describeWith(req, "pd-router's Kustomize overlays, applied to kube-apiserver and run from their rendered manifests", () => {
  OVERLAYS.forEach((overlay, index) => {
    it(`${overlay}: every container passes its probes; a long prompt goes P/D and a short one stays on a decode pod, through the gateway`, async () => {
      cluster = sharedCluster();
      const ns = await cluster.createNamespace(`overlay-${overlay}`);
      const objects = await renderOverlay(overlay);
      // The metrics-auth ClusterRoleBinding names its subject's namespace (the overlays' `namespace:` would set it).
      for (const o of objects) if (o.kind === 'ClusterRoleBinding') for (const sub of o.subjects) sub.namespace = ns;
      await cluster.apply(objects, { namespace: ns });
      kubelet = new LocalKubelet(cluster, ns, { addresses: Array.from({ length: 16 }, (_, i) => `127.0.${3 + index}.${i + 1}`), notRun: { envoy: ENVOY } });
      const pool = named(objects, 'InferencePool', 'pd-pool');
      const { modelServers: servers } = splitDeployments(objects, pool);
      await Promise.all(servers.map((d) => kubelet!.runDeployment(d)));
      // One EPP replica: the overlays run two under leader election, where the follower is unready by design
      // (high availability has its own tests, epp-ha.test.ts).
      const [eppPod] = await kubelet.runDeployment(named(objects, 'Deployment', 'pd-router-epp'), { replicas: 1 });
      const envoy = byKind(objects, 'Deployment').find((d) => d.metadata.name === 'pd-router-envoy');
      if (envoy) await kubelet.runDeployment(envoy, { requireReady: false });

      // Exactly the rendered args (the EPP's config mount path replaced by its directory), the overlay's ServiceAccounts, probes passed.
      for (const c of kubelet.containers({ role: 'pd-router' })) {
        expect(c.args).toEqual(renderedArgs(c).map((a) => a.replace(/\$\((POD_NAMESPACE|NAMESPACE)\)/, ns).replace('$(POD_NAME)', c.pod.name)));
        expect(Object.values(c.probes).every((p) => p!.ok), `${c.pod.name}/${c.name}: ${JSON.stringify(c.probes)}`).toBe(true);
        expect(c.probes.readiness, `${c.pod.name}/${c.name} has a readiness probe`).toBeDefined();
      }
      expect(eppOf(eppPod!).rewrites.map((r) => r.from)).toEqual(['/etc/pd-router']);
      expect(eppPod!.serviceAccount).toBe('pd-router-epp');
      for (const s of kubelet.containers({ component: 'sidecar' })) expect(s.pod.serviceAccount).toBe('pd-router-sidecar');
      for (const c of kubelet.containers({ role: 'simulator' })) expect(c.probes.readiness!.detail).toMatch(/\/v1\/models: 200/);
      expect(kubelet.containers({ role: 'not-run' }).map((c) => c.name)).toEqual(envoy ? ['envoy'] : []);
      const counts = Object.fromEntries(servers.map((d) => [d.metadata.name, d.spec.replicas]));
      expect(kubelet.containers({ component: 'sidecar' })).toHaveLength(counts.decode);

      await untilEppSees(eppPod!, 'pd-pool', counts.prefill + counts.decode);
      gateway = await gatewayTo(eppPod!);
      const model = servedModel(named(objects, 'Deployment', 'decode'));
      const sims = modelServers(kubelet);
      const { decodePod, prefillPod, decode } = await expectDisaggregated(gateway, model, sims);
      if (overlay === 'cpu-sim') {
        // pd-router-sim's engine id is its pod's name, from the overlay's $(POD_NAME): the decode leg carries the prefill pod's.
        expect(decode.kvTransferParams.remote_engine_id).toBe(prefillPod.name);
      }
      expect((await expectServedLocally(gateway, model, sims)).role).toBe('decode');
      const epp = await metricsText(`http://${eppPod!.ip}:9090`);
      expect(metricValue(epp, 'llm_d_epp_disagg_decision_total', { decision_type: 'prefill-decode' })).toBe(1);
      // The sidecar's metrics port from the overlay serves its counters.
      const sidecarMetrics = await metricsText(`http://${decodePod.ip}:9091`);
      expect(metricValue(sidecarMetrics, 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'disaggregated' })).toBe(1);
    }, 300_000);
  });
});
