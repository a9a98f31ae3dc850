/**
 * llm-d's own manifests and GAIE's chart, rendered as their deploy scripts render them (upstream-deploy.ts, gaie.ts)
 * with pd-router's images swapped in, applied to the shared kube-apiserver, and run: every pd-router container as its
 * per-component binary with exactly the rendered args and env, as the manifest's ServiceAccount (local-kubelet.ts).
 * Each pod must pass its manifest's own probes, and a request through pd-router's gateway must be served: P/D for a
 * long prompt wherever the EPP's config is a P/D one.
 *
 * - llm-d-inference-scheduler v0.7.1: its P/D kind environment (inference-gateway + vllm-sim-pd), which runs in the
 *   namespace "default" (the environment's EPP args say `--pool-namespace default`, and the base component's EPP,
 *   without that flag or $NAMESPACE, falls back to it); with GAIE v1.4.0's inferencepool chart (the GAIE release v0.7.1
 *   runs on), installed twice in front of the same pods: default values, and llm-d's P/D config
 *   (deploy/config/pd-epp-config.yaml) as its pluginsCustomConfig, as llm-d's guides install it. The objects are
 *   deleted afterwards, so "default" is left as it was. The cluster has GAIE v1.5.0's CRDs: the v1 InferencePool CRD of
 *   v1.4.0 differs from v1.5.0's only in its bundle-version annotation.
 * - llm-d-router ebab687: inference-gateway + the p-d environment in a namespace of its own, as its e2e tests deploy
 *   them, with GAIE v1.5.0's chart the same two ways (ebab687's pd-epp-config.yaml).
 * - Missing RBAC: v0.7.1's environment applied to another namespace. Its EPP still asks for the pool in "default",
 *   where its Role grants nothing: the EPP stays up and unready, and says what it lacks.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { GatewayHandle } from '../../src/gateway/index.js';
import { ENVSUBST_DEFAULTS, UPSTREAM_CONTAINERS, envsubst as copiedEnvsubst } from '../deploy/upstream-manifests.js';
import type { KubeCluster } from './control-plane.js';
import { pdRouterEppImageValues, renderInferencePoolChart } from './gaie.js';
import { LocalKubelet, type PodRun } from './local-kubelet.js';
import { UPSTREAM, upstreamFile } from './llm-d.js';
import {
  byKind,
  eppOf,
  expectDisaggregated,
  expectServedLocally,
  gatewayTo,
  modelServers,
  named,
  renderedArgs,
  splitDeployments,
  untilEppSees,
} from './manifest-stack.js';
import { runProbe } from './probes.js';
import { both, describeWith, need, needSharedControlPlane, pathOf, openSharedCluster } from './need.js';
import { PD_ROUTER_IMAGES, renderRouterPd, renderV071PdEnvironment, type Rendered } from './upstream-deploy.js';

type Obj = Record<string, any>;

/** upstream-args.test.ts's copy of a container's args, with the deploy scripts' defaults filled in. */
const envsubstCopied = (name: string, vars = ENVSUBST_DEFAULTS) => copiedEnvsubst(UPSTREAM_CONTAINERS[name].args, vars);

const cpReq = await needSharedControlPlane();
const v071Req = both(cpReq, await need(UPSTREAM['v0.7.1'].source, 'helm', 'gaie-v1.4.0'));
const routerReq = both(cpReq, await need(UPSTREAM.ebab687.source, 'helm', 'gaie-v1.5.0'));

const T = 240_000;
const UDS_TOKENIZER =
  "llm-d's UDS tokenizer (ghcr.io/llm-d/llm-d-uds-tokenizer), used only by upstream's tokenizer plugins; pd-router's EPP tokenizes in process and runs none of them";

let cluster: KubeCluster | undefined;
openSharedCluster(cpReq, (opened) => (cluster = opened));

/** GAIE's inferencepool chart in front of the stack's pool pods: `release` with default values, or with `pdConfig` as its config. */
async function chart(
  req: typeof v071Req,
  version: 'v1.4.0' | 'v1.5.0',
  namespace: string,
  release: string,
  pool: Obj,
  pdConfig?: string,
): Promise<Obj[]> {
  const values = pdRouterEppImageValues(version, PD_ROUTER_IMAGES.epp);
  if (pdConfig)
    Object.assign(values.inferenceExtension, {
      pluginsConfigFile: 'pd-config.yaml',
      pluginsCustomConfig: { 'pd-config.yaml': pdConfig },
    });
  return renderInferencePoolChart(pathOf(req, 'helm'), pathOf(req, `gaie-${version}`), {
    release,
    namespace,
    matchLabels: pool.spec.selector.matchLabels,
    targetPort: pool.spec.targetPorts[0].number,
    values,
  });
}

/**
 * What GAIE's chart adds with `monitoring.prometheus.enabled` (its default leaves it out): leave for the EPPs'
 * ServiceAccounts to review tokens, so /metrics auth (on by default, as upstream) can answer the tests' admin token.
 */
function metricsAuthRbac(namespace: string, serviceAccounts: string[]): Obj[] {
  const name = `${namespace}-epp-metrics-auth`;
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      rules: [
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: serviceAccounts.map((sa) => ({ kind: 'ServiceAccount', name: sa, namespace })),
    },
  ];
}

/** The chart twice beside the environment: `gaie-default` (default values) and `gaie-pd` (`pdConfig`), with their metrics-auth RBAC. */
async function bothCharts(
  req: typeof v071Req,
  version: 'v1.4.0' | 'v1.5.0',
  namespace: string,
  pool: Obj,
  pdConfig: string,
): Promise<Obj[]> {
  return [
    ...(await chart(req, version, namespace, 'gaie-default', pool)),
    ...(await chart(req, version, namespace, 'gaie-pd', pool, pdConfig)),
    ...metricsAuthRbac(namespace, ['gaie-default-epp', 'gaie-pd-epp']),
  ];
}

/** Both chart EPPs see the pool's `endpoints`; `gaie-pd` disaggregates a long prompt and `gaie-default` serves a request. */
async function expectChartsServe(stack: Stack, endpoints: number, model: string): Promise<void> {
  for (const release of ['gaie-pd', 'gaie-default']) await untilEppSees(stack.epps[release], release, endpoints);
  const servers = modelServers(stack.kubelet);
  const pd = await gatewayTo(stack.epps['gaie-pd']);
  stack.gateways.push(pd);
  await expectDisaggregated(pd, model, servers);
  const plain = await gatewayTo(stack.epps['gaie-default']);
  stack.gateways.push(plain);
  await expectServedLocally(plain, model, servers);
}

interface Stack {
  kubelet: LocalKubelet;
  objects: Obj[];
  pool: Obj;
  /** EPP pods by what they came from. */
  epps: Record<string, PodRun>;
  gateways: GatewayHandle[];
}

/**
 * Applies everything, runs the pool's pods first (so an EPP can see them Ready), then each EPP Deployment; every pod
 * must pass its probes.
 */
async function deploy(kubelet: LocalKubelet, objects: Obj[], eppSources: Record<string, string>): Promise<Stack> {
  await kubelet.cluster.apply(objects, { namespace: kubelet.namespace });
  const pool =
    byKind(objects, 'InferencePool').find((obj) => Object.values(eppSources).includes(obj.metadata.name)) ??
    byKind(objects, 'InferencePool')[0];
  const { modelServers: servers, others } = splitDeployments(objects, pool);
  // Started side by side, as a cluster would: a process's start-up is mostly waiting on a loaded machine.
  await Promise.all(servers.map((obj) => kubelet.runDeployment(obj)));
  const epps: Record<string, PodRun> = {};
  await Promise.all(
    Object.entries(eppSources).map(async ([what, deployment]) => {
      const d = others.find((obj) => obj.metadata.name === deployment);
      if (!d) throw new Error(`no Deployment ${deployment} for ${what}`);
      [epps[what]] = await kubelet.runDeployment(d);
    }),
  );
  return { kubelet, objects, pool, epps, gateways: [] };
}

/** Every pd-router container ran with exactly its rendered args (only a ConfigMap mount path replaced) and passed its probes. */
function expectRanAsRendered(kubelet: LocalKubelet, notRun: string[]): void {
  for (const c of kubelet.containers({ role: 'pd-router' })) {
    expect(c.args, `${c.pod.name}/${c.name}`).toEqual(renderedArgs(c));
    // What ran differs from the rendered args only where a volume's mount path became its local directory.
    expect(c.argv).toHaveLength(c.args.length);
    c.argv.forEach((left, i) => {
      if (left !== c.args[i])
        expect(
          c.rewrites.some((result) => c.args[i].replace(result.from, result.to) === left),
          `${c.pod.name}/${c.name} arg ${c.args[i]} ran as ${left}`,
        ).toBe(true);
    });
    expect(c.proc!.running, `${c.pod.name}/${c.name} is running`).toBe(true);
    for (const [kind, result] of Object.entries(c.probes))
      expect(result.ok, `${c.pod.name}/${c.name} ${kind}: ${result.detail}`).toBe(true);
    expect(c.probes.readiness ?? c.probes.liveness ?? { ok: true }).toMatchObject({ ok: true });
  }
  expect(
    kubelet
      .containers({ role: 'not-run' })
      .map((config) => config.name)
      .sort(),
  ).toEqual([...notRun].sort());
}

describeWith(
  v071Req,
  "llm-d-inference-scheduler v0.7.1: the P/D kind environment and GAIE v1.4.0's inferencepool chart, with pd-router's images",
  () => {
    let stack: Stack;
    let rendered: Rendered;
    const ns = 'default';

    beforeAll(async () => {
      const src = await upstreamFile('v0.7.1', '');
      rendered = await renderV071PdEnvironment(src);
      const pool = byKind(rendered.objects, 'InferencePool')[0];
      const pdConfig = readFileSync(path.join(src, 'deploy/config/pd-epp-config.yaml'), 'utf8');
      const objects = [...rendered.objects, ...(await bothCharts(v071Req, 'v1.4.0', ns, pool, pdConfig))];
      const kubelet = new LocalKubelet(cluster!, ns, {
        addresses: Array.from({ length: 8 }, (_, i) => `127.0.2.${i + 1}`),
        notRun: { 'uds-tokenizer': UDS_TOKENIZER },
      });
      stack = await deploy(kubelet, objects, {
        environment: rendered.vars.EPP_NAME,
        'gaie-default': 'gaie-default-epp',
        'gaie-pd': 'gaie-pd-epp',
      });
    }, T);

    afterAll(async () => {
      for (const g of stack?.gateways ?? []) await g.close();
      await stack?.kubelet.close();
      // Leave "default" as it was: the pods, then every applied object (graceful deletion needs no controller here).
      await stack?.kubelet.deletePods();
      for (const o of stack?.objects ?? [])
        await cluster!.remove({ ...o, metadata: { ...o.metadata, namespace: ns } }).catch(() => undefined);
    });

    it('every pd-router container runs as its binary with the rendered args, as its ServiceAccount, and passes its probes', () => {
      expectRanAsRendered(stack.kubelet, ['uds-tokenizer', 'uds-tokenizer', 'uds-tokenizer', 'uds-tokenizer']);
      // 1 prefill + 2 decode pods (the script's VLLM_REPLICA_COUNT_D default), three EPPs.
      expect(
        stack.kubelet
          .containers({ component: 'sim' })
          .map((config) => config.pod.labels['llm-d.ai/role'])
          .sort(),
      ).toEqual(['decode', 'decode', 'prefill']);
      expect(stack.kubelet.containers({ component: 'sidecar' })).toHaveLength(2);
      const envEpp = eppOf(stack.epps.environment);
      expect(envEpp.rewrites.map((result) => result.from)).toEqual(['/etc/epp']);
      expect(stack.epps.environment.serviceAccount).toBe(rendered.vars.EPP_NAME);
      expect(stack.epps['gaie-pd'].serviceAccount).toBe('gaie-pd-epp');
      // The environment's EPP and the charts' EPPs are probed over gRPC health, the decode pods' sidecars have no probe (ready once listening).
      expect(envEpp.probes.readiness!.detail).toMatch(
        /service "envoy\.service\.ext_proc\.v3\.ExternalProcessor": SERVING/,
      );
      expect(eppOf(stack.epps['gaie-default']).probes.readiness!.detail).toMatch(
        /service "inference-extension": SERVING/,
      );
    });

    it('the container args upstream-args.test.ts copied from these files are the rendered ones', () => {
      const ran = (deployment: string, container: string) =>
        stack.kubelet.containers({ deployment }).find((config) => config.name === container)!.args;
      expect(envsubstCopied('v0.7.1 EPP, kind environment')).toEqual(ran(rendered.vars.EPP_NAME, 'epp'));
      expect(envsubstCopied('v0.7.1 sidecar')).toEqual(ran('vllm-sim-d', 'routing-sidecar'));
      expect(envsubstCopied('v0.7.1 simulator (decode)')).toEqual(ran('vllm-sim-d', 'vllm'));
    });

    it("the environment's EPP (sim-pd-epp-config.yaml) serves a long prompt P/D and a short one on a decode pod, through the gateway", async () => {
      const pool = stack.pool.metadata.name as string;
      await untilEppSees(stack.epps.environment, pool, 3);
      const gateway = await gatewayTo(stack.epps.environment);
      stack.gateways.push(gateway);
      const servers = modelServers(stack.kubelet);
      await expectDisaggregated(gateway, rendered.vars.MODEL_NAME, servers);
      const local = await expectServedLocally(gateway, rendered.vars.MODEL_NAME, servers);
      expect(local.role).toBe('decode');
    }, 120_000);

    it("GAIE v1.4.0's chart: with llm-d's pd-epp-config.yaml a long prompt goes P/D; with its default values a request is served", async () => {
      await expectChartsServe(stack, 3, rendered.vars.MODEL_NAME);
    }, 120_000);
  },
);

describeWith(
  routerReq,
  "llm-d-router ebab687: inference-gateway and the p-d environment, and GAIE v1.5.0's inferencepool chart, with pd-router's images",
  () => {
    let stack: Stack;
    let rendered: Rendered;

    beforeAll(async () => {
      const src = await upstreamFile('ebab687', '');
      const ns = await cluster!.createNamespace('llm-d-router-pd');
      rendered = await renderRouterPd(src, ns);
      const pool = byKind(rendered.objects, 'InferencePool')[0];
      const pdConfig = readFileSync(path.join(src, 'deploy/config/pd-epp-config.yaml'), 'utf8');
      const objects = [...rendered.objects, ...(await bothCharts(routerReq, 'v1.5.0', ns, pool, pdConfig))];
      const kubelet = new LocalKubelet(cluster!, ns, {
        addresses: Array.from({ length: 8 }, (_, i) => `127.0.2.${i + 11}`),
      });
      stack = await deploy(kubelet, objects, {
        environment: rendered.vars.EPP_NAME,
        'gaie-default': 'gaie-default-epp',
        'gaie-pd': 'gaie-pd-epp',
      });
    }, T);

    afterAll(async () => {
      for (const g of stack?.gateways ?? []) await g.close();
      await stack?.kubelet.close();
    });

    it('every pd-router container runs as its binary with the rendered args, as its ServiceAccount, and passes its probes', () => {
      expectRanAsRendered(stack.kubelet, []);
      expect(
        stack.kubelet
          .containers({ component: 'sim' })
          .map((config) => config.pod.labels['llm-d.ai/role'])
          .sort(),
      ).toEqual(['decode', 'prefill']);
      // The model servers' own readiness probes (GET /health) ran against pd-router-sim.
      for (const c of stack.kubelet.containers({ component: 'sim' }))
        expect(c.probes.readiness!.detail).toMatch(/^GET http:\/\/127\.0\.2\.\d+:(8000|8200)\/health: 200/);
      expect(eppOf(stack.epps.environment).argv).toContain(`--pool-namespace`);
      expect(stack.epps.environment.serviceAccount).toBe(rendered.vars.EPP_NAME);
    });

    it('the container args upstream-args.test.ts copied from these files are the rendered ones', () => {
      const ran = (deployment: string, container: string) =>
        stack.kubelet.containers({ deployment }).find((config) => config.name === container)!.args;
      const vars = { ...ENVSUBST_DEFAULTS, NAMESPACE: rendered.vars.NAMESPACE };
      expect(envsubstCopied('llm-d-router ebab687 EPP', vars)).toEqual(ran(rendered.vars.EPP_NAME, 'epp'));
      expect(envsubstCopied('llm-d-router ebab687 sidecar, P/D environment', vars)).toEqual(
        ran('vllm-d', 'routing-sidecar'),
      );
    });

    it("the environment's EPP (sim-pd-epp-config.yaml, llm-d.ai/v1alpha1) serves a long prompt P/D and a short one on the decode pod", async () => {
      await untilEppSees(stack.epps.environment, stack.pool.metadata.name, 2);
      const gateway = await gatewayTo(stack.epps.environment);
      stack.gateways.push(gateway);
      const servers = modelServers(stack.kubelet);
      await expectDisaggregated(gateway, rendered.vars.MODEL_NAME, servers);
      expect((await expectServedLocally(gateway, rendered.vars.MODEL_NAME, servers)).role).toBe('decode');
    }, 120_000);

    it("GAIE v1.5.0's chart: with llm-d-router's pd-epp-config.yaml a long prompt goes P/D; with its default values a request is served", async () => {
      await expectChartsServe(stack, 2, rendered.vars.MODEL_NAME);
    }, 120_000);
  },
);

describeWith(v071Req, 'missing RBAC: v0.7.1\'s P/D environment applied outside "default"', () => {
  let kubelet: LocalKubelet;
  afterAll(async () => {
    await kubelet?.close();
  });

  it('its EPP, denied the pool in "default", stays up and unready, and each attempt names the permission it lacks; no crash, no stack trace', async () => {
    const ns = await cluster!.createNamespace('v071-elsewhere');
    const rendered = await renderV071PdEnvironment(await upstreamFile('v0.7.1', ''));
    await cluster!.apply(rendered.objects, { namespace: ns });
    kubelet = new LocalKubelet(cluster!, ns, { addresses: ['127.0.2.21'], notRun: { 'uds-tokenizer': UDS_TOKENIZER } });
    const [pod] = await kubelet.runDeployment(named(rendered.objects, 'Deployment', rendered.vars.EPP_NAME), {
      requireReady: false,
    });
    const epp = eppOf(pod);
    // The pool's informer (the EPP's InferenceModelRewrite / InferenceObjective informers fail too, each on its own backoff).
    await epp.proc!.untilOutput(
      /("what":"inferencepools"[^\n]*kubernetes list\/watch failed[^\n]*\n[\s\S]*){3}/,
      30_000,
      'three failed attempts',
    );
    const failures = epp
      .proc!.output()
      .split('\n')
      .filter((line) => line.includes('kubernetes list/watch failed'))
      .map((line) => JSON.parse(line) as Obj)
      .filter((obj) => obj.what === 'inferencepools');
    expect(failures[0]).toMatchObject({
      status: 403,
      missingPermission: 'list inferencepools.inference.networking.k8s.io in namespace default',
    });
    expect(failures[0].error).toContain(
      `User "system:serviceaccount:${ns}:${rendered.vars.EPP_NAME}" cannot list resource "inferencepools"`,
    );
    expect(failures.slice(0, 3).map((obj) => obj.retryInMs)).toEqual([500, 1000, 2000]);
    expect(epp.proc!.output()).not.toMatch(/"stack"|\\n\s+at /);
    await kubelet.probeOnce(pod);
    expect(epp.probes.readiness).toMatchObject({ ok: false });
    expect(epp.probes.readiness!.detail).toMatch(/NOT_SERVING$/);
    // This manifest probes liveness with the readiness probe's service name, so both get the same answer and a kubelet
    // would restart the container after three failed liveness probes, as it restarts upstream's EPP (see README).
    // pd-router's own manifests probe the `liveness` service, which stays SERVING:
    expect(epp.probes.liveness!.ok).toBe(false);
    expect((await runProbe({ grpc: { port: 9003, service: 'liveness' } }, epp.raw, pod.ip)).ok).toBe(true);
    expect(epp.proc!.running).toBe(true);
  }, 180_000);
});
