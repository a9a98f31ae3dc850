/**
 * pd-router's own Kubernetes access layer (src/common/kubernetes: kubeconfig.ts, client.ts) against the shared
 * kube-apiserver: each way of authenticating a kubeconfig or an in-cluster process may use, and the memory promise
 * behind it: the EPP with a pool, leader election and /metrics auth loads no module of @kubernetes/client-node (whose
 * generated APIs cost ~75 MB), while a kubeconfig with an exec plugin loads it on first use and still works.
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { describeKubeError } from '../../src/common/kubernetes/api-errors.js';
import { KubeClient } from '../../src/common/kubernetes/client.js';
import { loadKubeConfig, type KubeClientSettings } from '../../src/common/kubernetes/kubeconfig.js';
import { healthClientConstructor } from '../../src/epp/index.js';
import { CLI } from '../helpers.js';
import { ManagedProcess, waitReady, type KubeCluster } from './control-plane.js';
import { inferencePool } from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-kube-access-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;

/** Writes a kubeconfig for the shared API server with these cluster and user entries. */
function kubeconfig(cluster_: Record<string, unknown>, user: Record<string, unknown>): string {
  const file = path.join(dir, `kubeconfig-${++fileCount}`);
  writeFileSync(
    file,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: cluster.server, ...cluster_ } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
    { mode: 0o600 },
  );
  return file;
}

const caData = () => ({ 'certificate-authority-data': Buffer.from(cluster.info.caPem).toString('base64') });

/** Lists namespaces with a client made from `settings`: the user's name as the API server sees it, or the error. */
async function whoAmI(settings: KubeClientSettings): Promise<string> {
  const client = new KubeClient(loadKubeConfig(settings));
  try {
    const review = await client.create<{ status?: { userInfo?: { username?: string } } }>(
      '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    );
    await client.list('/api/v1/namespaces', { query: { limit: 1 } });
    return review.status?.userInfo?.username ?? '(no user)';
  } finally {
    await client.close();
  }
}

const statusOf = (err: unknown) =>
  describeKubeError(err, { verb: 'list', resource: 'namespaces', group: '', namespace: '', server: cluster.server });

/** A node script printing an ExecCredential with `token` (a client-go credential plugin). */
function execPlugin(token: string): Record<string, unknown> {
  const script = path.join(dir, `exec-credential-${++fileCount}.mjs`);
  writeFileSync(
    script,
    `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: ${JSON.stringify(token)} } }));\n`,
  );
  return {
    exec: {
      apiVersion: 'client.authentication.k8s.io/v1',
      command: process.execPath,
      args: [script],
      interactiveMode: 'Never',
    },
  };
}

describeWith(req, "pd-router's Kubernetes client against kube-apiserver", () => {
  it('kubeconfig users: token, tokenFile (relative), client certificate (data and files); CA data and file; insecure-skip-tls-verify', async () => {
    const token = cluster.info.adminToken;
    expect(await whoAmI({ kubeconfig: kubeconfig(caData(), { token }) })).toBe('interop-admin');
    writeFileSync(path.join(dir, 'admin.token'), `${token}\n`);
    writeFileSync(path.join(dir, 'apiserver-ca.crt'), cluster.info.caPem);
    expect(
      await whoAmI({
        kubeconfig: kubeconfig({ 'certificate-authority': 'apiserver-ca.crt' }, { tokenFile: 'admin.token' }),
      }),
    ).toBe('interop-admin');
    const cert = cluster.info.clientCert!;
    expect(
      await whoAmI({
        kubeconfig: kubeconfig(caData(), {
          'client-certificate-data': Buffer.from(cert.cert).toString('base64'),
          'client-key-data': Buffer.from(cert.key).toString('base64'),
        }),
      }),
    ).toBe('interop-cert-admin');
    writeFileSync(path.join(dir, 'client.crt'), cert.cert);
    writeFileSync(path.join(dir, 'client.key'), cert.key, { mode: 0o600 });
    expect(
      await whoAmI({
        kubeconfig: kubeconfig(
          { 'insecure-skip-tls-verify': true },
          { 'client-certificate': 'client.crt', 'client-key': 'client.key' },
        ),
      }),
    ).toBe('interop-cert-admin');
  });

  it('a wrong CA is a TLS failure naming the API server; a wrong token is 401 with the API server message', async () => {
    const other = (await import('../../src/common/index.js')).selfSignedCertificate;
    const wrongCa = (await other('not-the-apiserver')).cert;
    const tlsErr = await whoAmI({
      kubeconfig: kubeconfig(
        { 'certificate-authority-data': Buffer.from(wrongCa).toString('base64') },
        { token: cluster.info.adminToken },
      ),
    }).catch((error: unknown) => error);
    expect(statusOf(tlsErr)).toMatchObject({ unreachable: cluster.server });
    const authErr = await whoAmI({ kubeconfig: kubeconfig(caData(), { token: 'wrong' }) }).catch(
      (error: unknown) => error,
    );
    expect(statusOf(authErr)).toMatchObject({ status: 401, reason: 'Unauthorized' });
    expect(statusOf(authErr).error).toMatch(/rejected the credentials \(401 Unauthorized\): Unauthorized/);
  });

  it('in-cluster: the service-account token is re-read when the kubelet rotates it (no new client)', async () => {
    const saDir = mkdtempSync(path.join(dir, 'sa-'));
    writeFileSync(path.join(saDir, 'ca.crt'), cluster.info.caPem);
    writeFileSync(path.join(saDir, 'namespace'), 'default');
    writeFileSync(path.join(saDir, 'token'), 'expired-token');
    const url = new URL(cluster.server);
    const connection = loadKubeConfig({
      env: { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port },
      inClusterDir: saDir,
    });
    expect(connection.source).toBe('in-cluster');
    const client = new KubeClient(connection);
    try {
      const denied = await client.list('/api/v1/namespaces', { query: { limit: 1 } }).catch((error: unknown) => error);
      expect(statusOf(denied).status).toBe(401);
      // As the kubelet does: the new token in a new file swapped in under the same name.
      writeFileSync(path.join(saDir, 'token.new'), cluster.info.adminToken);
      renameSync(path.join(saDir, 'token.new'), path.join(saDir, 'token'));
      const namespaces = await client.list('/api/v1/namespaces', { query: { limit: 1 } });
      expect(namespaces.items.length).toBe(1);
    } finally {
      await client.close();
    }
  });

  it('an exec credential plugin: authenticated through client-node, loaded on first use', async () => {
    expect(await whoAmI({ kubeconfig: kubeconfig(caData(), execPlugin(cluster.info.adminToken)) })).toBe(
      'interop-admin',
    );
  });

  /**
   * Runs the EPP (pool discovery, the CRD watchers, leader election and /metrics auth: every Kubernetes feature) with
   * a module hook recording every module it loads, until it reports SERVING; returns the module URLs.
   */
  async function eppModules(kubeconfigFile: string, ns: string): Promise<string[]> {
    const log = path.join(dir, `modules-${++fileCount}.txt`);
    writeFileSync(log, '');
    const hooks = path.join(dir, 'record-hooks.mjs');
    writeFileSync(
      hooks,
      [
        "import { appendFileSync } from 'node:fs';",
        'let out;',
        'export function initialize(data) { out = data.out; }',
        'export async function resolve(specifier, context, nextResolve) {',
        '  const resolved = await nextResolve(specifier, context);',
        "  appendFileSync(out, resolved.url + '\\n');",
        '  return resolved;',
        '}',
      ].join('\n'),
    );
    const register = path.join(dir, `register-${fileCount}.mjs`);
    writeFileSync(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { out: ${JSON.stringify(log)} } });\n`,
    );
    const proc = ManagedProcess.spawn('pd-router epp', process.execPath, [
      `--import=${pathToFileURL(register).href}`,
      CLI,
      'epp',
      '--host=127.0.0.1',
      '--grpc-port=0',
      '--grpc-health-port=0',
      '--metrics-port=0',
      '--secure-serving=false',
      '--tracing=false',
      '--pool-name=pool',
      `--pool-namespace=${ns}`,
      `--kubeconfig=${kubeconfigFile}`,
      '--ha-enable-leader-election',
      '--metrics-endpoint-auth=true',
    ]);
    try {
      const m = (await proc.untilOutput(/"healthPort":(\d+)/, 60_000, 'the listening line'))[1];
      const Ctor = healthClientConstructor();

      const health: any = new Ctor(`127.0.0.1:${m}`, grpc.credentials.createInsecure());
      try {
        // Readiness of our own process: the pool and its pods listed, the CRDs discovered, the Lease held.
        await waitReady(
          proc,
          'SERVING (pool synced, leader)',
          () =>
            new Promise<boolean>((resolve) =>
              health.Check(
                { service: '' },
                { deadline: Date.now() + 2000 },
                (err: Error | null, answer: { status: string }) => resolve(!err && answer.status === 'SERVING'),
              ),
            ),
          60_000,
        );
      } finally {
        health.close();
      }
    } finally {
      await proc.stop();
    }
    return readFileSync(log, 'utf8').split('\n').filter(Boolean);
  }

  async function poolNamespace(prefix: string): Promise<string> {
    const ns = await cluster.createNamespace(prefix);
    await cluster.apply(inferencePool('pool', { app: 'vllm' }, [8000]), { namespace: ns });
    await cluster.createPod(ns, 'p0', { labels: { app: 'vllm' }, ip: '10.6.0.1' });
    return ns;
  }

  it('the EPP with a pool, the CRD watchers, leader election and /metrics auth loads no module of @kubernetes/client-node', async () => {
    const ns = await poolNamespace('no-client-node');
    writeFileSync(path.join(dir, 'admin-epp.token'), cluster.info.adminToken);
    const modules = await eppModules(kubeconfig(caData(), { tokenFile: 'admin-epp.token' }), ns);
    // The hook saw the EPP's own Kubernetes modules, so an empty result below is not a hook that saw nothing.
    expect(modules.some((url) => url.endsWith('/dist/src/common/kubernetes/client.js'))).toBe(true);
    expect(modules.some((url) => url.endsWith('/dist/src/epp/ha/lease-elector.js'))).toBe(true);
    expect(modules.filter((url) => url.includes('@kubernetes/client-node'))).toEqual([]);
  }, 180_000);

  it('the same EPP with an exec-plugin kubeconfig loads client-node (its generated code too) and works', async () => {
    const ns = await poolNamespace('exec-client-node');
    const modules = await eppModules(kubeconfig(caData(), execPlugin(cluster.info.adminToken)), ns);
    expect(modules.some((url) => url.includes('/@kubernetes/client-node/dist/gen/'))).toBe(true);
  }, 180_000);
});
