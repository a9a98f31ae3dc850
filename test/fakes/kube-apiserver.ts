/**
 * A fake Kubernetes API server speaking list and watch over HTTP on loopback: pods (core/v1) and InferencePools
 * (inference.networking.k8s.io/v1 and the v1alpha2 group). Tests mutate its objects and open watches receive
 * ADDED/MODIFIED/DELETED events, as from a real API server. It records every request, so tests can check which
 * resources and verbs a component needed (RBAC).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

type Obj = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };

interface Watcher {
  resource: string;
  namespace: string;
  labelSelector?: string;
  fieldSelector?: string;
  res: http.ServerResponse;
}

export interface RecordedRequest {
  method: string;
  path: string;
  resource: string;
  verb: 'list' | 'watch' | 'get' | 'other';
  query: Record<string, string>;
}

function matchesLabels(obj: Obj, selector?: string): boolean {
  if (!selector) return true;
  const labels = obj.metadata.labels ?? {};
  return selector.split(',').every((term) => {
    const [k, v] = term.split('=');
    return labels[k!] === v;
  });
}

function matchesFields(obj: Obj, selector?: string): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const [k, v] = term.split('=');
    if (k === 'metadata.name') return obj.metadata.name === v;
    if (k === 'metadata.namespace') return obj.metadata.namespace === v;
    return true;
  });
}

export class FakeKubeApiServer {
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  private readonly objects = new Map<string, Map<string, Obj>>(); // resource -> key(ns/name) -> obj
  private readonly watchers = new Set<Watcher>();
  private rv = 100;
  private failures: Array<{ resource: string; status: number; remaining: number }> = [];
  readonly requests: RecordedRequest[] = [];
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next `times` list/watch calls on `resource` answer `status` (e.g. 403 for missing RBAC). */
  failNext(resource: 'pods' | 'inferencepools', status: number, times = 1): void {
    this.failures.push({ resource, status, remaining: times });
  }

  /** Ends every open watch, as an API server does when it times a watch out. */
  dropWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  openWatches(resource?: string): number {
    return [...this.watchers].filter((w) => !resource || w.resource === resource).length;
  }

  upsert(resource: 'pods' | 'inferencepools', obj: Obj): Obj {
    const ns = obj.metadata.namespace ?? 'default';
    const stored: Obj = structuredClone({ ...obj, metadata: { ...obj.metadata, namespace: ns, resourceVersion: String(++this.rv) } });
    const map = this.objects.get(resource) ?? new Map<string, Obj>();
    const key = `${ns}/${obj.metadata.name}`;
    const type = map.has(key) ? 'MODIFIED' : 'ADDED';
    map.set(key, stored);
    this.objects.set(resource, map);
    this.notify(resource, type, stored);
    return stored;
  }

  remove(resource: 'pods' | 'inferencepools', namespace: string, name: string): void {
    const map = this.objects.get(resource);
    const obj = map?.get(`${namespace}/${name}`);
    if (!obj) return;
    map!.delete(`${namespace}/${name}`);
    this.notify(resource, 'DELETED', { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } });
  }

  private notify(resource: string, type: string, obj: Obj): void {
    for (const w of this.watchers) {
      if (w.resource !== resource || w.namespace !== obj.metadata.namespace) continue;
      if (!matchesLabels(obj, w.labelSelector) || !matchesFields(obj, w.fieldSelector)) {
        // An object that stops matching a label selector is reported as deleted, as the API server does.
        if (type === 'MODIFIED') w.res.write(JSON.stringify({ type: 'DELETED', object: obj }) + '\n');
        continue;
      }
      w.res.write(JSON.stringify({ type, object: obj }) + '\n');
    }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const m =
      /^\/api\/v1\/namespaces\/([^/]+)\/(pods)$/.exec(url.pathname) ??
      /^\/apis\/inference\.networking\.(?:x-)?k8s\.io\/v1(?:alpha2)?\/namespaces\/([^/]+)\/(inferencepools)$/.exec(url.pathname);
    const watch = query.watch === 'true' || query.watch === '1';
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, resource: m?.[2] ?? '', verb: m ? (watch ? 'watch' : 'list') : 'other', query });
    if (!m || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404, reason: 'NotFound' }));
      return;
    }
    const [, namespace, resource] = m as unknown as [string, string, string];
    const failure = this.failures.find((f) => f.resource === resource && f.remaining > 0);
    if (failure) {
      failure.remaining--;
      res.writeHead(failure.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: failure.status, reason: failure.status === 403 ? 'Forbidden' : 'Error', message: `injected ${failure.status}` }));
      return;
    }
    const items = [...(this.objects.get(resource)?.values() ?? [])].filter(
      (o) => o.metadata.namespace === namespace && matchesLabels(o, query.labelSelector) && matchesFields(o, query.fieldSelector),
    );
    if (!watch) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: resource === 'pods' ? 'PodList' : 'InferencePoolList',
          apiVersion: resource === 'pods' ? 'v1' : 'inference.networking.k8s.io/v1',
          metadata: { resourceVersion: String(this.rv) },
          items,
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { resource, namespace, labelSelector: query.labelSelector, fieldSelector: query.fieldSelector, res };
    this.watchers.add(w);
    req.on('close', () => this.watchers.delete(w));
  }
}

/** A pod object as the API server returns it. */
export function podObject(name: string, ip: string, labels: Record<string, string>, opts: { ready?: boolean; namespace?: string; annotations?: Record<string, string> } = {}): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.namespace ?? 'default', labels, ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: { containers: [{ name: 'vllm', image: 'x' }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }] },
  };
}

/** An InferencePool (GA v1 shape). */
export function inferencePoolObject(name: string, matchLabels: Record<string, string>, ports: number[], namespace = 'default'): Obj {
  return {
    apiVersion: 'inference.networking.k8s.io/v1',
    kind: 'InferencePool',
    metadata: { name, namespace },
    spec: { selector: { matchLabels }, targetPorts: ports.map((number) => ({ number })), endpointPickerRef: { name: 'epp', port: { number: 9002 } } },
  };
}
