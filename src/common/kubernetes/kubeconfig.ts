/**
 * Where the Kubernetes API server is and how to authenticate to it, read without @kubernetes/client-node: its
 * KubeConfig module statically imports every generated API and model (~75 MB of resident memory in an otherwise idle
 * process), which the EPP and the sidecar never need for list, watch, get, create and replace.
 *
 * - `server` set (--kube-api-server): that URL, no credentials, TLS not verified (kubectl proxy, tests).
 * - `kubeconfig` set (--kubeconfig; several files separated by ':' as in $KUBECONFIG): that file's current context.
 * - Otherwise, as controller-runtime's GetConfig: $KUBECONFIG, else in-cluster (KUBERNETES_SERVICE_HOST/PORT and the
 *   service-account token, ca.crt and namespace), else ~/.kube/config.
 *
 * Handled here: the cluster's server, certificate-authority(-data), insecure-skip-tls-verify and tls-server-name; the
 * user's token, tokenFile (re-read when the file changes, as a projected service-account token rotates),
 * client-certificate(-data) / client-key(-data) and username/password. A user this module does not handle (exec
 * plugins, auth-provider oidc/gcp/azure) is authenticated by client-node's KubeConfig, imported only then (see
 * KubeAuth.fallback), so no kubeconfig that worked before stops working; only those users pay its memory.
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { isIPv6 } from 'node:net';
import { parse as parseYaml } from 'yaml';
import type { KubeConfig as ClientNodeKubeConfig } from '@kubernetes/client-node';

export const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeClientSettings {
  /** API server URL; when set, used without credentials (tests, `kubectl proxy`). */
  server?: string;
  /** kubeconfig path(s); default: $KUBECONFIG, else in-cluster, else ~/.kube/config. */
  kubeconfig?: string;
  /** Deadline of each list, get, create or replace, and of a watch's response headers (ms). */
  requestTimeoutMs?: number;
  /** Bound of one response body (a list) and of one watch event line (bytes). */
  maxResponseBytes?: number;
  /** Environment (tests); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The service-account directory of the in-cluster config (tests); default IN_CLUSTER_DIR. */
  inClusterDir?: string;
}

export const DEFAULT_KUBE_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_KUBE_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** TLS settings of the connection to the API server. */
export interface KubeTls {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized: boolean;
  servername?: string;
}

/** What a request needs besides the URL: headers (Authorization) and client-certificate material. */
export interface KubeAuthState {
  headers: Record<string, string>;
  cert?: string | Buffer;
  key?: string | Buffer;
}

/** Produces the credentials of each request (a token file is re-read when it changes). */
export interface KubeAuth {
  /** Where the credentials come from, for logs (never the secret itself). */
  readonly kind: string;
  current(): Promise<KubeAuthState>;
  /** The API server rejected the credentials (401): re-read what can be re-read before the next request. */
  invalidate(): void;
}

/** A resolved connection: the API server, TLS, credentials and the context's namespace. */
export interface KubeConnection {
  server: string;
  tls: KubeTls;
  auth: KubeAuth;
  namespace?: string;
  /** Where this came from, for logs (`in-cluster`, a kubeconfig path, `--kube-api-server`). */
  source: string;
  requestTimeoutMs: number;
  maxResponseBytes: number;
}

/** A static token, client certificate or basic auth: nothing to refresh. */
function staticAuth(kind: string, state: KubeAuthState): KubeAuth {
  return { kind, current: () => Promise.resolve(state), invalidate: () => undefined };
}

/**
 * A bearer token read from a file, re-read whenever the file changes (stat: inode, size, mtime) or the API server
 * answered 401: the kubelet rotates a projected service-account token by swapping a symlink, so a long-running
 * process must not keep the first token (client-go re-reads it too).
 */
export function tokenFileAuth(file: string, extra: Omit<KubeAuthState, 'headers'> = {}): KubeAuth {
  let token = '';
  let stamp = '';
  return {
    kind: `token file ${file}`,
    current() {
      const s = statSync(file);
      const now = `${s.ino}/${s.size}/${s.mtimeMs}`;
      if (now !== stamp) {
        token = readFileSync(file, 'utf8').trim();
        stamp = now;
      }
      const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
      return Promise.resolve({ ...extra, headers });
    },
    invalidate() {
      stamp = '';
    },
  };
}

/**
 * A kubeconfig user this module does not authenticate itself (exec plugin, auth-provider): client-node's KubeConfig,
 * loaded on first use, applies it (running the plugin, refreshing OIDC tokens) to each request.
 */
function clientNodeAuth(kind: string, load: (kc: ClientNodeKubeConfig) => void): KubeAuth {
  let kc: Promise<ClientNodeKubeConfig> | undefined;
  return {
    kind: `${kind} (through @kubernetes/client-node)`,
    async current() {
      kc ??= import('@kubernetes/client-node').then((clientNode) => {
        const config = new clientNode.KubeConfig();
        load(config);
        return config;
      });
      const opts: { headers?: Record<string, unknown>; cert?: string | Buffer; key?: string | Buffer; auth?: string } =
        {};
      await (await kc).applyToHTTPSOptions(opts);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(opts.headers ?? {}))
        if (typeof v === 'string' || typeof v === 'number') headers[k.toLowerCase()] = String(v);
      if (opts.auth) headers.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
      return { headers, ...(opts.cert ? { cert: opts.cert } : {}), ...(opts.key ? { key: opts.key } : {}) };
    },
    invalidate: () => undefined,
  };
}

interface Named<T> {
  name: string;
  value: T;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- kubeconfig YAML as written by users: every field is checked before use */
type Doc = Record<string, any>;

/** A kubeconfig file's entries, or the merge of several (the first file to name an entry wins, as kubectl). */
interface KubeconfigDoc {
  clusters: Named<Doc>[];
  users: Named<Doc>[];
  contexts: Named<Doc>[];
  currentContext?: string;
  /** The file each entry came from, to resolve its relative paths. */
  dirOf: Map<Doc, string>;
  files: string[];
}

function readKubeconfig(files: string[]): KubeconfigDoc {
  const out: KubeconfigDoc = { clusters: [], users: [], contexts: [], dirOf: new Map(), files };
  for (const file of files) {
    let doc: Doc;
    try {
      doc = (parseYaml(readFileSync(file, 'utf8')) as Doc | null) ?? {};
    } catch (err) {
      throw new Error(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
    }
    if (typeof doc !== 'object') throw new Error(`kubeconfig ${file} is not a YAML mapping`);
    const dir = path.dirname(path.resolve(file));
    const add = (list: Named<Doc>[], entries: unknown, field: string) => {
      if (!Array.isArray(entries)) return;
      for (const e of entries as Doc[]) {
        if (!e || typeof e.name !== 'string' || list.some((named) => named.name === e.name)) continue;
        const value = (e[field] as Doc | undefined) ?? {};
        out.dirOf.set(value, dir);
        list.push({ name: e.name, value });
      }
    };
    add(out.clusters, doc.clusters, 'cluster');
    add(out.users, doc.users, 'user');
    add(out.contexts, doc.contexts, 'context');
    if (!out.currentContext && typeof doc['current-context'] === 'string' && doc['current-context'])
      out.currentContext = doc['current-context'];
  }
  return out;
}

const str = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

function fileOrData(entry: Doc, dir: string, fileKey: string, dataKey: string): Buffer | undefined {
  const data = str(entry[dataKey]);
  if (data) return Buffer.from(data, 'base64');
  const file = str(entry[fileKey]);
  if (file) return readFileSync(path.resolve(dir, file));
  return undefined;
}

function fromKubeconfig(
  files: string[],
  settings: Required<Pick<KubeClientSettings, 'requestTimeoutMs' | 'maxResponseBytes'>>,
): KubeConnection {
  const doc = readKubeconfig(files);
  const source = `kubeconfig ${files.join(path.delimiter)}`;
  const contextName = doc.currentContext;
  if (!contextName) throw new Error(`${source} has no current-context`);
  const context = doc.contexts.find((entry) => entry.name === contextName)?.value;
  if (!context) throw new Error(`${source}: current-context "${contextName}" is not among its contexts`);
  const clusterName = str(context.cluster);
  const cluster = doc.clusters.find((entry) => entry.name === clusterName)?.value;
  if (!cluster) throw new Error(`${source}: context "${contextName}" names cluster "${clusterName}", which it lacks`);
  const server = str(cluster.server);
  if (!server) throw new Error(`${source}: cluster "${clusterName}" has no server`);
  const clusterDir = doc.dirOf.get(cluster) ?? '.';
  const insecure = cluster['insecure-skip-tls-verify'] === true;
  const tls: KubeTls = {
    rejectUnauthorized: !insecure,
    ...(insecure ? {} : { ca: fileOrData(cluster, clusterDir, 'certificate-authority', 'certificate-authority-data') }),
    ...(str(cluster['tls-server-name']) ? { servername: str(cluster['tls-server-name']) } : {}),
  };
  const userName = str(context.user);
  const user = (userName ? doc.users.find((entry) => entry.name === userName)?.value : undefined) ?? {};
  const userDir = doc.dirOf.get(user) ?? clusterDir;
  const base = { server, tls, namespace: str(context.namespace), source, ...settings };
  if (user.exec || user['auth-provider']) {
    const exec = user.exec as Doc | undefined;
    const provider = user['auth-provider'] as Doc | undefined;
    const kind = exec ? `exec plugin ${String(exec.command)}` : `auth-provider ${String(provider?.name)}`;
    return {
      ...base,
      auth: clientNodeAuth(kind, (kc) => {
        // The same files, merged as client-node merges $KUBECONFIG, and the same context.
        kc.loadFromFile(files[0]);
        for (const f of files.slice(1)) {
          const more = new (kc.constructor as new () => ClientNodeKubeConfig)();
          more.loadFromFile(f);
          kc.mergeConfig(more);
        }
        kc.setCurrentContext(contextName);
      }),
    };
  }
  const cert = fileOrData(user, userDir, 'client-certificate', 'client-certificate-data');
  const key = fileOrData(user, userDir, 'client-key', 'client-key-data');
  if (Boolean(cert) !== Boolean(key))
    throw new Error(`${source}: user "${userName}" has a client certificate without its key (or the reverse)`);
  const material = cert && key ? { cert, key } : {};
  const token = str(user.token);
  const tokenFile = str(user.tokenFile);
  if (token)
    return { ...base, auth: staticAuth('token', { ...material, headers: { authorization: `Bearer ${token}` } }) };
  if (tokenFile) return { ...base, auth: tokenFileAuth(path.resolve(userDir, tokenFile), material) };
  const username = str(user.username);
  if (username) {
    const basic = Buffer.from(`${username}:${typeof user.password === 'string' ? user.password : ''}`).toString(
      'base64',
    );
    return { ...base, auth: staticAuth('basic auth', { ...material, headers: { authorization: `Basic ${basic}` } }) };
  }
  return { ...base, auth: staticAuth(cert ? 'client certificate' : 'no credentials', { ...material, headers: {} }) };
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function inCluster(
  env: NodeJS.ProcessEnv,
  dir: string,
  settings: Required<Pick<KubeClientSettings, 'requestTimeoutMs' | 'maxResponseBytes'>>,
): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT!;
  let namespace: string | undefined;
  try {
    namespace = readFileSync(path.join(dir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    namespace = undefined;
  }
  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    tls: { ca: readFileSync(path.join(dir, 'ca.crt')), rejectUnauthorized: true },
    auth: tokenFileAuth(path.join(dir, 'token')),
    namespace,
    source: 'in-cluster',
    ...settings,
  };
}

const exists = (file: string) => {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
};

/** Resolves the connection from the settings and the environment (see the file comment for the order). */
export function loadKubeConfig(settings: KubeClientSettings = {}): KubeConnection {
  const limits = {
    requestTimeoutMs: settings.requestTimeoutMs ?? DEFAULT_KUBE_REQUEST_TIMEOUT_MS,
    maxResponseBytes: settings.maxResponseBytes ?? DEFAULT_KUBE_MAX_RESPONSE_BYTES,
  };
  if (settings.server)
    return {
      server: settings.server,
      tls: { rejectUnauthorized: false },
      auth: staticAuth('no credentials', { headers: {} }),
      source: '--kube-api-server',
      ...limits,
    };
  const split = (list: string) => list.split(path.delimiter).filter(Boolean);
  if (settings.kubeconfig) return fromKubeconfig(split(settings.kubeconfig), limits);
  const env = settings.env ?? process.env;
  if (env.KUBECONFIG && split(env.KUBECONFIG).length > 0) return fromKubeconfig(split(env.KUBECONFIG), limits);
  const dir = settings.inClusterDir ?? IN_CLUSTER_DIR;
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && exists(path.join(dir, 'token')))
    return inCluster(env, dir, limits);
  const home = path.join(env.HOME || homedir(), '.kube', 'config');
  if (exists(home)) return fromKubeconfig([home], limits);
  throw new Error(
    'no Kubernetes API configuration: not in a cluster (KUBERNETES_SERVICE_HOST unset or no service-account token), no --kubeconfig, no $KUBECONFIG, no ~/.kube/config',
  );
}
