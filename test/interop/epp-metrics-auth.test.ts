/**
 * /metrics authentication (--metrics-endpoint-auth, upstream's default on) against the real kube-apiserver, with
 * ServiceAccount tokens from the TokenRequest API: TokenReview, then a SubjectAccessReview for get on /metrics. The
 * EPP runs in-process; its ServiceAccount gets the ClusterRole GAIE's chart gives its EPP (tokenreviews and
 * subjectaccessreviews create, /metrics get), names made unique per namespace since ClusterRoles are cluster-wide.
 */
import { afterEach, expect, it } from 'vitest';
import { eppConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { endpointsFile, endpointsYaml, spec } from '../epp/fixtures.js';
import type { KubeCluster } from './control-plane.js';
import { NO_SCRAPE } from './epp-replicas.js';
import { GAIE_EPP_RULES, inferencePool, capturedLogger } from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let epp: EppHandle | undefined;
afterEach(async () => {
  await epp?.close(500);
  epp = undefined;
});

const T = 60_000;
const base = {
  host: '127.0.0.1',
  grpcPort: 0,
  grpcHealthPort: 0,
  metricsPort: 0,
  secureServing: false,
  configText: NO_SCRAPE,
};

/** The rules of GAIE v1.5.0's inference-extension.rbac ClusterRole (epplib/templates/_rbac.yaml). */
const GAIE_METRICS_AUTH_RULES = [
  { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
  { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
  { nonResourceURLs: ['/metrics'], verbs: ['get'] },
];

async function clusterGrant(name: string, rules: unknown[], ns: string, serviceAccount: string): Promise<void> {
  await cluster.apply([
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name }, rules },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace: ns }],
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    },
  ]);
}

/** A namespace with the pool, the EPP's ServiceAccount (GAIE's namespaced rules) and two others: scraper and stranger. */
async function setUp(prefix: string): Promise<{ ns: string; kubeconfig: string; scraper: string; stranger: string }> {
  const ns = await cluster.createNamespace(prefix);
  for (const sa of ['epp', 'scraper', 'stranger']) await cluster.createServiceAccount(ns, sa);
  await cluster.grant(ns, 'epp', 'epp', GAIE_EPP_RULES);
  await clusterGrant(`${ns}-metrics-reader`, [{ nonResourceURLs: ['/metrics'], verbs: ['get'] }], ns, 'scraper');
  await cluster.apply(inferencePool('pool', { app: 'vllm' }, [8000]), { namespace: ns });
  return {
    ns,
    kubeconfig: await cluster.serviceAccountKubeconfig(ns, 'epp'),
    scraper: await cluster.serviceAccountToken(ns, 'scraper'),
    stranger: await cluster.serviceAccountToken(ns, 'stranger'),
  };
}

async function scrape(token?: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${epp!.metricsPort}/metrics`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(20_000),
  });
  return { status: r.status, text: await r.text() };
}

/** POSTs of tokenreviews the API server has served, from its own metrics (files run one at a time). */
async function tokenReviews(): Promise<number> {
  const text = await cluster.metrics();
  let n = 0;
  for (const line of text.split('\n'))
    if (
      line.startsWith('apiserver_request_total{') &&
      line.includes('resource="tokenreviews"') &&
      line.includes('verb="POST"')
    )
      n += Number(line.split(' ').at(-1));
  return n;
}

const untilReady = (what: string) =>
  new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + T;
    const tick = () =>
      epp!.ready()
        ? resolve()
        : Date.now() > deadline
          ? reject(new Error(`${what}: not ready within ${T} ms`))
          : setTimeout(tick, 50);
    tick();
  });

describeWith(req, '/metrics auth (TokenReview + SubjectAccessReview, real kube-apiserver)', () => {
  it('401 without a token or with a bad one, 403 for a ServiceAccount without get /metrics, 200 with it; outcomes cached per token', async () => {
    const { ns, kubeconfig, scraper, stranger } = await setUp('metrics-auth');
    await clusterGrant(`${ns}-epp-metrics-auth`, GAIE_METRICS_AUTH_RULES, ns, 'epp');
    epp = await startEpp(eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, kubeconfig }));
    await untilReady('EPP with metrics auth');
    expect(await scrape()).toEqual({ status: 401, text: 'Unauthorized\n' });
    expect(await scrape('not-a-token')).toEqual({ status: 401, text: 'Unauthorized\n' });
    expect(await scrape(stranger)).toEqual({
      status: 403,
      text: `Authorization denied for user system:serviceaccount:${ns}:stranger\n`,
    });
    const ok = await scrape(scraper);
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('# TYPE');
    // The EPP's own token works too: GAIE's ClusterRole lets it read /metrics (its chart hands Prometheus that token).
    expect((await scrape(await cluster.serviceAccountToken(ns, 'epp'))).status).toBe(200);
    // Cached: more scrapes with known tokens review nothing again.
    const before = await tokenReviews();
    for (let i = 0; i < 5; i++) {
      expect((await scrape(scraper)).status).toBe(200);
      expect((await scrape(stranger)).status).toBe(403);
    }
    expect(await tokenReviews()).toBe(before);
  });

  it('with --metrics-auth-cache-ttl=0 every scrape is reviewed, so a revoked permission takes effect at once', async () => {
    const { ns, kubeconfig, scraper } = await setUp('metrics-auth-ttl');
    await clusterGrant(`${ns}-epp-metrics-auth`, GAIE_METRICS_AUTH_RULES, ns, 'epp');
    epp = await startEpp(
      eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, kubeconfig, metricsAuthCacheTtl: 0 }),
    );
    await untilReady('EPP with metrics auth, no cache');
    expect((await scrape(scraper)).status).toBe(200);
    await cluster.remove({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: `${ns}-metrics-reader` },
    });
    // RBAC is read from the API server's informer: the removal shows within moments.
    const deadline = Date.now() + T;
    let status = 200;
    while (status === 200 && Date.now() < deadline) status = (await scrape(scraper)).status;
    expect(status).toBe(403);
  });

  it('missing RBAC for tokenreviews: a log naming it, /metrics 500, readiness unaffected (as upstream); 200 once the ClusterRole is bound, no restart', async () => {
    const { ns, kubeconfig, scraper } = await setUp('metrics-auth-rbac');
    const log = capturedLogger(T);
    epp = await startEpp(eppConfig({ ...base, poolName: 'pool', poolNamespace: ns, kubeconfig }), {
      logger: log.logger,
    });
    await log.untilLine(
      /missing RBAC permission: create tokenreviews\.authentication\.k8s\.io/,
      'the missing permission logged',
    );
    // GAIE's chart with default values enables auth but grants the reviews only with Prometheus monitoring on; upstream's
    // EPP serves traffic there, so pd-router's readiness does not depend on the permission either.
    await untilReady('discovery synced without the metrics-auth permission');
    expect(await scrape(scraper)).toEqual({ status: 500, text: 'Authentication failed\n' });
    expect(await scrape()).toEqual({ status: 401, text: 'Unauthorized\n' });
    await clusterGrant(`${ns}-epp-metrics-auth`, GAIE_METRICS_AUTH_RULES, ns, 'epp');
    const deadline = Date.now() + T;
    let status = 500;
    while (status === 500 && Date.now() < deadline) status = (await scrape(scraper)).status;
    expect(status).toBe(200);
    await log.untilLine(/TokenReview and SubjectAccessReview allowed again/, 'the probe succeeding logged');
  });

  it('an endpoints file alone: /metrics stays open (no Kubernetes API); --metrics-endpoint-auth-always requires a token there too', async () => {
    const file = endpointsFile(endpointsYaml([spec('a', '10.9.0.1')]));
    epp = await startEpp(eppConfig({ ...base, endpointsFile: file }));
    expect(epp.ready()).toBe(true);
    expect((await scrape()).status).toBe(200);
    await epp.close(500);
    const { ns, kubeconfig, scraper } = await setUp('metrics-auth-always');
    await clusterGrant(`${ns}-epp-metrics-auth`, GAIE_METRICS_AUTH_RULES, ns, 'epp');
    epp = await startEpp(eppConfig({ ...base, endpointsFile: file, metricsEndpointAuthAlways: true, kubeconfig }));
    await untilReady('endpoints file with --metrics-endpoint-auth-always');
    expect((await scrape()).status).toBe(401);
    expect((await scrape(scraper)).status).toBe(200);
  });
});
