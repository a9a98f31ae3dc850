/**
 * A real Kubernetes control plane for the interop suite: etcd and kube-apiserver (pinned builds, artifacts.ts) on
 * loopback, in a temporary directory removed at the end.
 *
 * - One instance per interop run is started by the global setup and shared by every test file (sharedCluster() in
 *   need.ts): each test works in its own namespace. Tests that restart the API server or compact etcd start their
 *   own with startControlPlane().
 * - The API server serves HTTPS on 127.0.0.1 with a self-signed certificate (the kubeconfigs written here carry it
 *   as their CA), authenticates an admin by a static token (group system:masters) and service accounts by tokens
 *   from the TokenRequest API (signed with a key pair made here), and authorises with RBAC.
 * - There is no kubelet, scheduler or controller-manager. So: pods are never scheduled or run; the tests create Pod
 *   objects and write their status as a kubelet would (createPod/setPodStatus), and the model servers behind them are
 *   local processes on the pod's 127.0.0.x address. A pod without spec.nodeName is deleted at once (the API server
 *   skips graceful deletion for unscheduled pods); one with a nodeName stays Terminating (deletionTimestamp set) until
 *   deleted again with grace period 0, as a kubelet would. Deployments, ReplicaSets and Services are stored but
 *   nothing acts on them (no pods from Deployments, no Endpoints). The ServiceAccount admission plugin is off (it
 *   needs the token controller's objects). Namespaces are never deleted: without the namespace controller a deleted
 *   namespace would stay Terminating with all its objects, so each test takes a fresh one (createNamespace) and leaves
 *   it behind; the whole cluster goes when the run ends.
 * - CRDs: the shared instance has Gateway API Inference Extension v1.5.0 and Gateway API v1.4.0 (standard) installed.
 *   GAIE v1.4.0 defines the same CRD names (and, unlike v1.5.0, the v1alpha2 inference.networking.x-k8s.io
 *   InferencePool), so a test that needs v1.4.0 starts its own control plane with `crds: ['gaie-v1.4.0']`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { Agent } from 'undici';
import { parseAllDocuments, stringify } from 'yaml';
import { selfSignedCertificate } from '../../src/common/index.js';
import { freePortRange } from '../helpers.js';
import { artifact } from './artifacts.js';

/** What a client needs to reach a cluster (handed from the global setup to the test files). */
export interface ClusterInfo {
  /** https://127.0.0.1:<port> */
  server: string;
  /** The API server's (self-signed) serving certificate, the CA of every kubeconfig. */
  caPem: string;
  /** Bearer token of the admin user (group system:masters). */
  adminToken: string;
  /** A client certificate the API server accepts (--client-ca-file is the certificate itself): user interop-cert-admin, group system:masters. */
  clientCert?: { cert: string; key: string };
}

/** A self-signed client certificate (CN = user, O = group) for --client-ca-file. */
async function clientCertificate(user: string, group: string): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned');
  const notAfter = new Date();
  notAfter.setFullYear(notAfter.getFullYear() + 1);
  const pems = await generate(
    [
      { name: 'commonName', value: user },
      { name: 'organizationName', value: group },
    ],
    {
      keyType: 'ec',
      curve: 'P-256',
      notAfterDate: notAfter,
      extensions: [
        { name: 'basicConstraints', cA: true },
        { name: 'keyUsage', digitalSignature: true, keyCertSign: true },
        { name: 'extKeyUsage', clientAuth: true },
      ],
    },
  );
  return { cert: pems.cert, key: pems.private };
}

export type CrdSet = 'gaie-v1.4.0' | 'gaie-v1.5.0' | 'gateway-api-v1.4.0';

const CRD_DIRS: Record<CrdSet, string> = {
  'gaie-v1.4.0': 'config/crd/bases',
  'gaie-v1.5.0': 'config/crd/bases',
  'gateway-api-v1.4.0': 'config/crd/standard',
};

/** Every Kubernetes process we started, killed by pid if the process exits without stopping them. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** A process we started, with the tail of its output kept for failure messages. */
export class ManagedProcess {
  private out = '';
  private exitCode: number | null | undefined;
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    private readonly maxOutput = 256 * 1024,
  ) {
    live.add(child);
    const keep = (chunk: Buffer) => {
      this.out += chunk.toString();
      if (this.out.length > this.maxOutput * 2) this.out = this.out.slice(-this.maxOutput);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        live.delete(child);
        resolve();
      }),
    );
  }

  static spawn(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): ManagedProcess {
    return new ManagedProcess(
      name,
      spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  output(): string {
    return this.out;
  }

  tail(chars = 6000): string {
    return this.out.slice(-chars);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. Only ever signals our own child. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }

  /**
   * Resolves with the match once the output so far matches `re`, checked again on every chunk the process writes;
   * rejects with the log tail if the process exits first or after `timeoutMs`.
   */
  untilOutput(re: RegExp, timeoutMs: number, what = String(re)): Promise<RegExpMatchArray> {
    const now = this.out.match(re);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const streams = [this.child.stdout, this.child.stderr].filter(
        (stream): stream is NonNullable<typeof stream> => !!stream,
      );
      const done = () => {
        clearTimeout(timer);
        for (const s of streams) s.off('data', onData);
        this.child.off('exit', onExit);
      };
      // Runs after the constructor's listener has appended the chunk.
      const onData = () => {
        const m = this.out.match(re);
        if (!m) return;
        done();
        resolve(m);
      };
      const onExit = () => {
        done();
        reject(
          new Error(
            `${this.name} exited (code ${this.child.exitCode ?? this.child.signalCode}) before ${what}; its log:\n${this.tail()}`,
          ),
        );
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: ${what} not seen within ${timeoutMs} ms; its log:\n${this.tail()}`));
      }, timeoutMs);
      for (const s of streams) s.on('data', onData);
      this.child.once('exit', onExit);
      if (!this.running) onExit();
    });
  }

  /** Resolves when the process exits (for tests that expect it to). */
  async waitExit(): Promise<number | null | undefined> {
    await this.exited;
    return this.exitCode;
  }
}

/**
 * Waits until `check` passes for a process we started, failing with its log tail if it exits or the deadline passes.
 * This polling is only for the readiness of our own processes.
 */
export async function waitReady(
  proc: ManagedProcess,
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited before ${what}; its log:\n${proc.tail()}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`${proc.name}: ${what} not reached within ${timeoutMs} ms; its log:\n${proc.tail()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

type Obj = k8s.KubernetesObject & Record<string, any>;

export interface PodOptions {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Pod IP (a 127.0.0.x address for a local model server); without it the pod is created Pending, as if just scheduled. */
  ip?: string;
  /** The Ready condition (default true when an ip is given). */
  ready?: boolean;
  /** A node name makes the pod "scheduled": deletion is then graceful (Terminating until deleted with grace 0). */
  nodeName?: string;
  /** The pod's spec (e.g. a Deployment's pod template); default one placeholder container. */
  spec?: k8s.V1PodSpec;
}

export interface PodStatusOptions {
  ip?: string;
  ready?: boolean;
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
}

const FIELD_MANAGER = 'pd-router-interop';

/** Client-side helpers over one cluster (shared or our own). */
export class KubeCluster {
  readonly admin: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;
  readonly objects: k8s.KubernetesObjectApi;
  private readonly dispatcher: Agent;
  private readonly tmpDirs: string[] = [];

  constructor(readonly info: ClusterInfo) {
    this.admin = this.kubeConfig(info.adminToken);
    this.core = this.admin.makeApiClient(k8s.CoreV1Api);
    this.objects = k8s.KubernetesObjectApi.makeApiClient(this.admin);
    this.dispatcher = new Agent({ connect: { ca: info.caPem }, connections: 8 });
  }

  get server(): string {
    return this.info.server;
  }

  /** A client configuration for a bearer token (default: the admin's). */
  kubeConfig(token = this.info.adminToken): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'interop',
          server: this.info.server,
          caData: Buffer.from(this.info.caPem).toString('base64'),
          skipTLSVerify: false,
        },
      ],
      users: [{ name: 'user', token }],
      contexts: [{ name: 'interop', cluster: 'interop', user: 'user' }],
      currentContext: 'interop',
    });
    return kc;
  }

  /** Writes a kubeconfig file for a bearer token into a temporary directory (removed by close()). */
  writeKubeconfig(token = this.info.adminToken, namespace?: string): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-kubeconfig-'));
    this.tmpDirs.push(dir);
    const file = path.join(dir, 'kubeconfig');
    writeFileSync(
      file,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'interop',
            cluster: {
              server: this.info.server,
              'certificate-authority-data': Buffer.from(this.info.caPem).toString('base64'),
            },
          },
        ],
        users: [{ name: 'user', user: { token } }],
        contexts: [
          { name: 'interop', context: { cluster: 'interop', user: 'user', ...(namespace ? { namespace } : {}) } },
        ],
        'current-context': 'interop',
      }),
      { mode: 0o600 },
    );
    return file;
  }

  /** A raw request to the API server as admin (or with `token`); the answer's status and text. */
  async request(
    method: string,
    apiPath: string,
    opts: { body?: unknown; contentType?: string; token?: string; timeoutMs?: number } = {},
  ): Promise<{ status: number; text: string; json: any }> {
    const res = await fetch(this.info.server + apiPath, {
      method,
      headers: {
        authorization: `Bearer ${opts.token ?? this.info.adminToken}`,
        ...(opts.body !== undefined ? { 'content-type': opts.contentType ?? 'application/json' } : {}),
      },
      body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
      // @ts-expect-error undici's dispatcher option (Node's fetch is undici)
      dispatcher: this.dispatcher,
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json };
  }

  /** The API server's Prometheus metrics (admin). */
  async metrics(): Promise<string> {
    const r = await this.request('GET', '/metrics');
    if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${r.text.slice(0, 500)}`);
    return r.text;
  }

  private async namespaced(apiVersion: string, kind: string): Promise<boolean> {
    // eslint-disable-next-line no-restricted-syntax -- resource() is protected in KubernetesObjectApi's types
    const api = this.objects as unknown as {
      resource(apiVersion: string, kind: string): Promise<k8s.V1APIResource | undefined>;
    };
    const r = await api.resource(apiVersion, kind);
    if (!r) throw new Error(`the API server does not serve ${kind} in ${apiVersion}`);
    return r.namespaced;
  }

  /**
   * Server-side apply of objects (or a multi-document YAML text), as admin. Namespaced objects without a namespace
   * get `namespace` (default "default"). Returns the applied objects as stored.
   */
  async apply(input: string | Obj | Obj[], opts: { namespace?: string } = {}): Promise<Obj[]> {
    const objs: Obj[] =
      typeof input === 'string'
        ? parseAllDocuments(input)
            .map((def) => def.toJSON() as Obj)
            .filter((obj) => obj && obj.kind)
        : Array.isArray(input)
          ? input
          : [input];
    const out: Obj[] = [];
    for (const o of objs) {
      const obj = structuredClone(o);
      obj.metadata ??= {};
      if (await this.namespaced(obj.apiVersion!, obj.kind!)) obj.metadata.namespace ??= opts.namespace ?? 'default';
      else delete obj.metadata.namespace;
      out.push(
        await this.objects.patch(obj, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply),
      );
    }
    return out;
  }

  /** Deletes an object (as admin); a missing object is not an error. */
  async remove(obj: Obj, gracePeriodSeconds?: number): Promise<void> {
    try {
      await this.objects.delete(obj, undefined, undefined, gracePeriodSeconds);
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
    }
  }

  /**
   * Installs a set of CRDs from its pinned module (server-side apply, so it may replace another version of the same
   * CRDs) and waits until each is Established and served.
   */
  async installCrds(set: CrdSet): Promise<string[]> {
    const dir = path.join((await artifact(set)).path, CRD_DIRS[set]);
    const files = readdirSync(dir)
      .filter((field) => field.endsWith('.yaml'))
      .sort();
    const crds: Obj[] = files
      .flatMap((field) =>
        parseAllDocuments(readFileSync(path.join(dir, field), 'utf8')).map((def) => def.toJSON() as Obj),
      )
      .filter((obj) => obj?.kind === 'CustomResourceDefinition');
    await this.apply(crds);
    for (const crd of crds) {
      await this.waitFor(
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
        crd.metadata!.name!,
        (obj) =>
          (obj?.status?.conditions ?? []).some(
            (config: { type: string; status: string }) => config.type === 'Established' && config.status === 'True',
          ),
        30_000,
      );
      // Established means served; the discovery documents (which apply() reads) follow a moment later.
      const group = crd.spec.group as string;
      for (const v of crd.spec.versions as Array<{ name: string; served: boolean }>) {
        if (!v.served) continue;
        const plural = crd.spec.names.plural as string;
        const deadline = Date.now() + 30_000;
        for (;;) {
          const r = await this.request('GET', `/apis/${group}/${v.name}`);
          if (r.status === 200 && (r.json?.resources ?? []).some((item: { name: string }) => item.name === plural))
            break;
          if (Date.now() > deadline)
            throw new Error(
              `${plural}.${group}/${v.name} not in discovery within 30 s: ${r.status} ${r.text.slice(0, 300)}`,
            );
          await new Promise((res) => setTimeout(res, 50));
        }
      }
    }
    return crds.map((obj) => obj.metadata!.name!);
  }

  /**
   * Waits, by list and then watch, until the named object at `collectionPath` satisfies `predicate` (it is given
   * undefined while the object does not exist).
   */
  async waitFor(
    collectionPath: string,
    name: string,
    predicate: (obj: Obj | undefined) => boolean,
    timeoutMs: number,
  ): Promise<Obj | undefined> {
    const fieldSelector = `metadata.name=${name}`;
    const list = await this.request('GET', `${collectionPath}?fieldSelector=${encodeURIComponent(fieldSelector)}`);
    if (list.status !== 200) throw new Error(`GET ${collectionPath}: ${list.status} ${list.text.slice(0, 500)}`);
    const current = list.json.items?.[0] as Obj | undefined;
    if (predicate(current)) return current;
    const watch = new k8s.Watch(this.admin);
    let controller: AbortController | undefined;
    try {
      return await new Promise<Obj | undefined>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${collectionPath}/${name}: condition not met within ${timeoutMs} ms`)),
          timeoutMs,
        );
        void watch
          .watch(
            collectionPath,
            { fieldSelector, resourceVersion: list.json.metadata.resourceVersion },
            (type: string, obj: Obj) => {
              const o = type === 'DELETED' ? undefined : obj;
              if (predicate(o)) {
                clearTimeout(timer);
                resolve(o);
              }
            },
            (err: unknown) => {
              clearTimeout(timer);
              reject(
                err instanceof Error
                  ? err
                  : new Error(`watch of ${collectionPath}/${name} ended before the condition was met`),
              );
            },
          )
          .then((abortController) => (controller = abortController), reject);
      });
    } finally {
      controller?.abort();
    }
  }

  /** Creates a namespace with a generated name (`<prefix>-xxxxx`); it is never deleted (see the file comment). */
  async createNamespace(prefix: string): Promise<string> {
    const ns = await this.core.createNamespace({ body: { metadata: { generateName: `${prefix}-` } } });
    return ns.metadata!.name!;
  }

  /** Creates a Pod; with an `ip` its status is then written as a kubelet would (Running, podIP(s), Ready). */
  async createPod(namespace: string, name: string, opts: PodOptions = {}): Promise<k8s.V1Pod> {
    const pod = await this.core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: opts.labels, annotations: opts.annotations },
        spec: Object.assign(
          {},
          opts.spec ?? { containers: [{ name: 'model-server', image: 'pd-router.invalid/model-server:none' }] },
          opts.nodeName ? { nodeName: opts.nodeName } : {},
        ),
      },
    });
    if (opts.ip === undefined) return pod;
    return this.setPodStatus(namespace, name, { ip: opts.ip, ready: opts.ready ?? true, phase: 'Running' });
  }

  /** Writes a pod's status as a kubelet would: phase, podIP/podIPs, and the Ready and ContainersReady conditions. */
  async setPodStatus(namespace: string, name: string, options: PodStatusOptions): Promise<k8s.V1Pod> {
    const now = new Date().toISOString();
    const status: Record<string, unknown> = {};
    if (options.phase) status.phase = options.phase;
    if (options.ip !== undefined) {
      status.podIP = options.ip;
      status.podIPs = [{ ip: options.ip }];
      status.hostIP = '127.0.0.1';
      status.hostIPs = [{ ip: '127.0.0.1' }];
      status.startTime = now;
    }
    if (options.ready !== undefined) {
      const c = (type: string, ok: boolean) => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now });
      status.conditions = [
        c('PodScheduled', true),
        c('Initialized', true),
        c('ContainersReady', options.ready),
        c('Ready', options.ready),
      ];
    }
    return this.core.patchNamespacedPodStatus(
      { namespace, name, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  /** Merges labels and annotations into a pod's metadata (null deletes a key). */
  async patchPodMetadata(
    namespace: string,
    name: string,
    metadata: { labels?: Record<string, string | null>; annotations?: Record<string, string | null> },
  ): Promise<k8s.V1Pod> {
    return this.core.patchNamespacedPod(
      { namespace, name, body: { metadata } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  /** Deletes a pod; grace period 0 (the default) removes it at once, as `kubectl delete --force` or a kubelet would. */
  async deletePod(namespace: string, name: string, gracePeriodSeconds = 0): Promise<void> {
    await this.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds });
  }

  /** Creates a ServiceAccount (if missing). */
  async createServiceAccount(namespace: string, name: string): Promise<void> {
    await this.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
  }

  /** A token for a ServiceAccount from the TokenRequest API (the API server's own audience unless given). */
  async serviceAccountToken(
    namespace: string,
    name: string,
    opts: { audiences?: string[]; expirationSeconds?: number } = {},
  ): Promise<string> {
    const r = await this.core.createNamespacedServiceAccountToken({
      namespace,
      name,
      body: { spec: { audiences: opts.audiences ?? [], expirationSeconds: opts.expirationSeconds ?? 3600 } },
    });
    return r.status!.token;
  }

  /** A kubeconfig file for a ServiceAccount (token from the TokenRequest API), its namespace as the context's. */
  async serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
    return this.writeKubeconfig(await this.serviceAccountToken(namespace, name), namespace);
  }

  /** A Role with `rules` bound to a ServiceAccount in its namespace. */
  async grant(namespace: string, serviceAccount: string, roleName: string, rules: k8s.V1PolicyRule[]): Promise<void> {
    await this.apply(
      [
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: roleName, namespace }, rules },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: roleName, namespace },
          subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace }],
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: roleName },
        },
      ],
      { namespace },
    );
  }

  /** Removes the temporary kubeconfig files and closes the HTTP connections (the cluster itself stays). */
  async close(): Promise<void> {
    for (const d of this.tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
    if (!this.dispatcher.closed) await this.dispatcher.close();
  }
}

export interface ControlPlaneOptions {
  /** CRD sets installed once the API server is ready (default none). */
  crds?: CrdSet[];
  /** The API server's watch cache (default on, as in a cluster). Off, watches are served by etcd itself, so an etcd compaction makes a resumed watch fail with 410 Gone. */
  watchCache?: boolean;
  /** --min-request-timeout in seconds: a watch is ended by the server after a random time between this and twice it (default 1800, the API server's). */
  minRequestTimeoutSeconds?: number;
  /** Deadline for each process to become ready (default 300 s: kube-apiserver took 120 s on a loaded, shared 2-core machine). */
  readyTimeoutMs?: number;
  extraApiServerArgs?: string[];
}

/** etcd and kube-apiserver started by us; stop() ends both (by pid) and removes the directory. */
export class ControlPlane extends KubeCluster {
  private apiServer?: ManagedProcess;

  private constructor(
    info: ClusterInfo,
    private readonly dir: string,
    readonly etcd: ManagedProcess,
    readonly etcdUrl: string,
    private readonly apiServerArgs: string[],
    private readonly apiServerBinary: string,
    private readonly readyTimeoutMs: number,
  ) {
    super(info);
  }

  /** The running kube-apiserver process (its log: apiServerProcess.output()). */
  get apiServerProcess(): ManagedProcess | undefined {
    return this.apiServer;
  }

  static async start(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const [etcdBin, apiBin] = await Promise.all([artifact('etcd'), artifact('kube-apiserver')]);
    const readyTimeoutMs = opts.readyTimeoutMs ?? 300_000;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-control-plane-'));
    let etcd: ManagedProcess | undefined;
    let plane: ControlPlane | undefined;
    try {
      const [clientPort, peerPort, apiPort] = [await freePortRange(1), await freePortRange(1), await freePortRange(1)];
      const etcdUrl = `http://127.0.0.1:${clientPort}`;
      etcd = ManagedProcess.spawn('etcd', etcdBin.path, [
        '--name=interop',
        `--data-dir=${path.join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=interop=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync', // test data; fsync on a shared disk only slows every write
        '--log-level=warn',
      ]);
      await waitReady(
        etcd,
        `${etcdUrl}/health`,
        async () => {
          const r = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2_000) });
          return r.status === 200 && ((await r.json()) as { health?: string }).health === 'true';
        },
        readyTimeoutMs,
      );

      const tls = await selfSignedCertificate('kube-apiserver', ['127.0.0.1', 'kubernetes', 'kubernetes.default.svc']);
      writeFileSync(path.join(dir, 'apiserver.crt'), tls.cert);
      writeFileSync(path.join(dir, 'apiserver.key'), tls.key, { mode: 0o600 });
      const adminToken = randomBytes(24).toString('hex');
      const clientCert = await clientCertificate('interop-cert-admin', 'system:masters');
      writeFileSync(path.join(dir, 'client-ca.crt'), clientCert.cert);
      writeFileSync(path.join(dir, 'tokens.csv'), `${adminToken},interop-admin,interop-admin,"system:masters"\n`, {
        mode: 0o600,
      });
      const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      writeFileSync(path.join(dir, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      writeFileSync(path.join(dir, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
      mkdirSync(path.join(dir, 'certs'));
      const issuer = 'https://kubernetes.default.svc.cluster.local';
      const args = [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${path.join(dir, 'certs')}`,
        `--tls-cert-file=${path.join(dir, 'apiserver.crt')}`,
        `--tls-private-key-file=${path.join(dir, 'apiserver.key')}`,
        `--token-auth-file=${path.join(dir, 'tokens.csv')}`,
        `--client-ca-file=${path.join(dir, 'client-ca.crt')}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=${issuer}`,
        `--service-account-key-file=${path.join(dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${path.join(dir, 'sa.key')}`,
        `--api-audiences=${issuer}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        // Needs the ServiceAccount objects the token controller (kube-controller-manager) would make.
        '--disable-admission-plugins=ServiceAccount',
        // Compaction only when a test asks for it (compactEtcd).
        '--etcd-compaction-interval=0',
        // No Endpoints for the "kubernetes" Service: nothing would use them.
        '--endpoint-reconciler-type=none',
        `--watch-cache=${opts.watchCache ?? true}`,
        `--min-request-timeout=${opts.minRequestTimeoutSeconds ?? 1800}`,
        '--profiling=false',
        ...(opts.extraApiServerArgs ?? []),
      ];
      plane = new ControlPlane(
        { server: `https://127.0.0.1:${apiPort}`, caPem: tls.cert, adminToken, clientCert },
        dir,
        etcd,
        etcdUrl,
        args,
        apiBin.path,
        readyTimeoutMs,
      );
      await plane.startApiServer();
      for (const set of opts.crds ?? []) await plane.installCrds(set);
      return plane;
    } catch (e) {
      if (plane) await plane.stop();
      else {
        await etcd?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
      throw e;
    }
  }

  /** Starts kube-apiserver (again, on the same port) and waits for /readyz. */
  async startApiServer(): Promise<void> {
    if (this.apiServer?.running) throw new Error('kube-apiserver is already running');
    this.apiServer = ManagedProcess.spawn('kube-apiserver', this.apiServerBinary, this.apiServerArgs);
    await waitReady(
      this.apiServer,
      `${this.server}/readyz`,
      async () => (await this.request('GET', '/readyz', { timeoutMs: 2_000 })).status === 200,
      this.readyTimeoutMs,
    );
  }

  /** Stops kube-apiserver (SIGTERM: it ends open watches and exits); etcd keeps running. */
  async stopApiServer(): Promise<void> {
    await this.apiServer?.stop(15_000);
  }

  /** Stops and starts kube-apiserver on the same port against the same etcd. */
  async restartApiServer(): Promise<void> {
    await this.stopApiServer();
    await this.startApiServer();
  }

  /** etcd's current revision (the newest resourceVersion). */
  async etcdRevision(): Promise<number> {
    const r = await fetch(`${this.etcdUrl}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('\0').toString('base64'), limit: 1 }),
      signal: AbortSignal.timeout(5_000),
    });
    const body = (await r.json()) as { header?: { revision?: string } };
    if (r.status !== 200 || !body.header?.revision) throw new Error(`etcd range: ${r.status} ${JSON.stringify(body)}`);
    return Number(body.header.revision);
  }

  /** Compacts etcd up to its current revision (physically), so older resourceVersions are gone; returns that revision. */
  async compactEtcd(): Promise<number> {
    const revision = await this.etcdRevision();
    const r = await fetch(`${this.etcdUrl}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: String(revision), physical: true }),
      signal: AbortSignal.timeout(30_000),
    });
    if (r.status !== 200) throw new Error(`etcd compaction at ${revision}: ${r.status} ${await r.text()}`);
    return revision;
  }

  /** Stops kube-apiserver and etcd (by pid, only ours) and removes the directory; safe to call twice. */
  async stop(): Promise<void> {
    await this.close();
    await this.apiServer?.stop(15_000);
    await this.etcd.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts etcd and kube-apiserver on loopback (see ControlPlane). */
export function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  return ControlPlane.start(opts);
}
