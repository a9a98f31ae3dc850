/**
 * The Kubernetes access layer's protocol edges that a real kube-apiserver produces only rarely (test/interop covers the
 * normal paths, RBAC, compaction and restarts against one): a loopback HTTP server answers lists and watches as the
 * API server does, scripted per test. Also the kubeconfig forms, read from files.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { describeKubeError } from '../../src/common/kubernetes/api-errors.js';
import { KubeClient, type KubeObject } from '../../src/common/kubernetes/client.js';
import { loadKubeConfig } from '../../src/common/kubernetes/kubeconfig.js';
import { ListWatch } from '../../src/common/kubernetes/list-watch.js';
import { microTime } from '../../src/epp/ha/lease-elector.js';

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

let server: Server | undefined;
const open = new Set<ServerResponse>();
const dirs: string[] = [];
let client: KubeClient | undefined;
afterEach(async () => {
  await client?.close();
  client = undefined;
  for (const res of open) res.destroy();
  open.clear();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A loopback API server: `handler` gets every request; lists and watches are told apart by `watch=true`. */
async function apiServer(handler: Handler): Promise<string> {
  server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    handler(req, res, new URL(req.url!, 'http://x'));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function clientFor(url: string, limits: { requestTimeoutMs?: number; maxResponseBytes?: number } = {}): KubeClient {
  client = new KubeClient(loadKubeConfig({ server: url, ...limits }));
  return client;
}

const pod = (name: string, rv: string): KubeObject => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });
const list = (rv: string, ...items: KubeObject[]) =>
  JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: rv }, items });
const line = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;

/** Resolves with the first value `take` returns that is not undefined, fed by `subscribe`; rejects after 10 s. */
function next<T>(subscribe: (feed: (value: T) => void) => void, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not seen within 10 s`)), 10_000);
    subscribe((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

function recorder(informer: ListWatch): string[] {
  const events: string[] = [];
  informer.on('add', (obj) => events.push(`add ${obj.metadata?.name}`));
  informer.on('update', (obj) => events.push(`update ${obj.metadata?.name}`));
  informer.on('delete', (obj) => events.push(`delete ${obj.metadata?.name}`));
  return events;
}

describe('ListWatch against a scripted API server', () => {
  it('an ERROR 410 Gone event re-lists at once: objects gone meanwhile are deleted, new ones added, no error reported', async () => {
    const watches: string[] = [];
    let lists = 0;
    let rewatched: () => void = () => undefined;
    const url = await apiServer((req, res, reqUrl) => {
      if (reqUrl.searchParams.get('watch') !== 'true') {
        lists++;
        res.setHeader('content-type', 'application/json');
        res.end(lists === 1 ? list('10', pod('a', '1'), pod('b', '2')) : list('20', pod('a', '1'), pod('c', '15')));
        return;
      }
      watches.push(
        `${reqUrl.searchParams.get('resourceVersion')} bookmarks=${reqUrl.searchParams.get('allowWatchBookmarks')}`,
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      if (watches.length === 1)
        res.write(line('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' }));
      else rewatched();
    });
    const informer = new ListWatch(clientFor(url), '/api/v1/namespaces/ns/pods');
    const events = recorder(informer);
    const errors: unknown[] = [];
    informer.on('error', (err) => errors.push(err));
    const second = next<true>((feed) => (rewatched = () => feed(true)), 'the watch after the re-list');
    await informer.start();
    await second;
    expect(lists).toBe(2);
    expect(events).toEqual(['add a', 'add b', 'delete b', 'add c']);
    expect(errors).toEqual([]);
    expect(
      informer
        .list()
        .map((obj) => obj.metadata?.name)
        .sort(),
    ).toEqual(['a', 'c']);
    await informer.stop();
    expect(watches).toEqual(['10 bookmarks=true', '20 bookmarks=true']);
  });

  it('a 410 answer to the watch itself re-lists too; a watch the server ends is resumed from the last resourceVersion without a list', async () => {
    let lists = 0;
    const watchRvs: string[] = [];
    let thirdWatch: () => void = () => undefined;
    const url = await apiServer((req, res, reqUrl) => {
      if (reqUrl.searchParams.get('watch') !== 'true') {
        lists++;
        res.setHeader('content-type', 'application/json');
        res.end(list(lists === 1 ? '10' : '30', pod('a', lists === 1 ? '1' : '25')));
        return;
      }
      watchRvs.push(reqUrl.searchParams.get('resourceVersion')!);
      if (watchRvs.length === 1) {
        res.writeHead(410, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Gone', message: 'gone' }));
      } else if (watchRvs.length === 2) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(line('MODIFIED', pod('a', '31')));
        res.end(line('BOOKMARK', { metadata: { resourceVersion: '40' } }));
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        thirdWatch();
      }
    });
    const informer = new ListWatch(clientFor(url), '/api/v1/namespaces/ns/pods', { labelSelector: 'app=x' });
    const events = recorder(informer);
    const resumed = next<true>((feed) => (thirdWatch = () => feed(true)), 'the resumed watch');
    await informer.start();
    await resumed;
    expect(watchRvs).toEqual(['10', '30', '40']);
    expect(lists).toBe(2);
    expect(events).toEqual(['add a', 'update a', 'update a']);
    await informer.stop();
  });

  it('an event line longer than the bound is an error (reported, not a crash); the body is not buffered past it', async () => {
    const url = await apiServer((req, res, reqUrl) => {
      if (reqUrl.searchParams.get('watch') !== 'true') {
        res.end(list('10'));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(line('ADDED', pod('small', '11')));
      // One event of ~20 KiB, sent in pieces, never finished by a newline.
      const big = line('ADDED', { ...pod('big', '12'), data: 'x'.repeat(20_000) });
      for (let i = 0; i < big.length - 1; i += 1000) res.write(big.slice(i, Math.min(i + 1000, big.length - 1)));
    });
    const informer = new ListWatch(clientFor(url, { maxResponseBytes: 4096 }), '/api/v1/namespaces/ns/pods');
    const events = recorder(informer);
    const failed = next<unknown>((feed) => informer.on('error', feed), 'the error');
    await informer.start();
    const err = (await failed) as Error;
    expect(err.message).toMatch(/an event line is longer than 4096 bytes \(--kube-max-response-size\)/);
    expect(informer.failedVerb).toBe('watch');
    expect(events).toEqual(['add small']);
    await informer.stop();
  });

  it('a list body over the bound fails the list, named as a list', async () => {
    const url = await apiServer((req, res) =>
      res.end(list('1', ...Array.from({ length: 200 }, (_, i) => pod(`p${i}`, '1')))),
    );
    const informer = new ListWatch(clientFor(url, { maxResponseBytes: 2048 }), '/api/v1/namespaces/ns/pods');
    const failed = next<unknown>((feed) => informer.on('error', feed), 'the error');
    await informer.start();
    expect(((await failed) as Error).message).toMatch(/response larger than 2048 bytes/);
    expect(informer.failedVerb).toBe('list');
  });

  it('stop() during the list: nothing is reported, no watch is opened', async () => {
    let answer: (() => void) | undefined;
    let watches = 0;
    const url = await apiServer((req, res, reqUrl) => {
      if (reqUrl.searchParams.get('watch') === 'true') watches++;
      else answer = () => res.end(list('1', pod('a', '1')));
    });
    const informer = new ListWatch(clientFor(url), '/api/v1/namespaces/ns/pods');
    const events = recorder(informer);
    const errors: unknown[] = [];
    informer.on('error', (err) => errors.push(err));
    const started = informer.start();
    await next<true>((feed) => server!.once('request', () => feed(true)), 'the list request');
    await informer.stop();
    answer?.();
    await started;
    expect({ events, errors, watches }).toEqual({ events: [], errors: [], watches: 0 });
  });
});

describe('KubeClient calls', () => {
  it('a non-2xx answer is a KubeApiError with the status and the Status message, as describeKubeError reads it', async () => {
    const url = await apiServer((req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'Status',
          code: 403,
          reason: 'Forbidden',
          message: 'pods is forbidden: User "system:serviceaccount:ns:epp" cannot list resource "pods"',
        }),
      );
    });
    const err = await clientFor(url)
      .list('/api/v1/namespaces/ns/pods')
      .catch((error: unknown) => error);
    expect(err).toMatchObject({ code: 403, statusCode: 403 });
    expect(describeKubeError(err, { verb: 'list', resource: 'pods', group: '', namespace: 'ns', server: url })).toEqual(
      {
        status: 403,
        reason: 'Forbidden',
        error: 'pods is forbidden: User "system:serviceaccount:ns:epp" cannot list resource "pods"',
        missingPermission: 'list pods in namespace ns',
      },
    );
  });

  it('a call the server never answers fails at its deadline with ETIMEDOUT', async () => {
    const url = await apiServer(() => undefined);
    const err = await clientFor(url, { requestTimeoutMs: 300 })
      .get('/api/v1/namespaces/ns/pods/a')
      .catch((error: unknown) => error);
    expect(err).toMatchObject({
      code: 'ETIMEDOUT',
      message: 'GET /api/v1/namespaces/ns/pods/a: no answer within 300 ms',
    });
  });

  it('a watch whose headers never come fails at the deadline through `done`', async () => {
    const url = await apiServer(() => undefined);
    const done = new Promise<Error | undefined>((resolve) => {
      void clientFor(url, { requestTimeoutMs: 300 }).watch('/api/v1/pods', {}, () => undefined, resolve);
    });
    expect((await done)?.message).toBe('watch /api/v1/pods: no answer within 300 ms');
  });
});

describe('kubeconfig', () => {
  function tmp(): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-kubecfg-'));
    dirs.push(dir);
    return dir;
  }
  function kubeconfig(dir: string, cluster: object, user: object, extra: object = {}): string {
    const file = path.join(dir, 'config');
    writeFileSync(
      file,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1:6443', ...cluster } }],
        users: [{ name: 'u', user }],
        contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u', namespace: 'team' } }],
        'current-context': 'ctx',
        ...extra,
      }),
    );
    return file;
  }
  const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

  it('token, CA data, tls-server-name and the context namespace', async () => {
    const dir = tmp();
    const c = loadKubeConfig({
      kubeconfig: kubeconfig(
        dir,
        { 'certificate-authority-data': Buffer.from(CA).toString('base64'), 'tls-server-name': 'kubernetes' },
        { token: 'abc' },
      ),
    });
    expect(c.server).toBe('https://10.0.0.1:6443');
    expect(c.namespace).toBe('team');
    expect(c.tls).toEqual({ ca: Buffer.from(CA), rejectUnauthorized: true, servername: 'kubernetes' });
    expect(await c.auth.current()).toEqual({ headers: { authorization: 'Bearer abc' } });
  });

  it('tokenFile and certificate-authority relative to the kubeconfig; the token is re-read when the file changes', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'ca.crt'), CA);
    writeFileSync(path.join(dir, 'token'), 'first\n');
    const c = loadKubeConfig({
      kubeconfig: kubeconfig(dir, { 'certificate-authority': 'ca.crt' }, { tokenFile: 'token' }),
    });
    expect(c.tls.ca).toEqual(Buffer.from(CA));
    expect((await c.auth.current()).headers).toEqual({ authorization: 'Bearer first' });
    // The kubelet swaps the projected token atomically: a new file (inode) under the same name.
    writeFileSync(path.join(dir, 'token.new'), 'second');
    renameSync(path.join(dir, 'token.new'), path.join(dir, 'token'));
    expect((await c.auth.current()).headers).toEqual({ authorization: 'Bearer second' });
  });

  it('insecure-skip-tls-verify drops the CA; client certificate data; username and password', async () => {
    const dir = tmp();
    const c = loadKubeConfig({
      kubeconfig: kubeconfig(
        dir,
        { 'insecure-skip-tls-verify': true, 'certificate-authority-data': Buffer.from(CA).toString('base64') },
        {
          'client-certificate-data': Buffer.from('CERT').toString('base64'),
          'client-key-data': Buffer.from('KEY').toString('base64'),
          username: 'admin',
          password: 'secret',
        },
      ),
    });
    expect(c.tls).toEqual({ rejectUnauthorized: false });
    expect(await c.auth.current()).toEqual({
      cert: Buffer.from('CERT'),
      key: Buffer.from('KEY'),
      headers: { authorization: `Basic ${Buffer.from('admin:secret').toString('base64')}` },
    });
    expect(() =>
      loadKubeConfig({
        kubeconfig: kubeconfig(tmp(), {}, { 'client-certificate-data': Buffer.from('CERT').toString('base64') }),
      }),
    ).toThrow(/client certificate without its key/);
  });

  it('an exec plugin or auth-provider user is left to client-node (loaded on first use)', () => {
    const c = loadKubeConfig({
      kubeconfig: kubeconfig(tmp(), {}, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'aws' } }),
    });
    expect(c.auth.kind).toBe('exec plugin aws (through @kubernetes/client-node)');
    const oidc = loadKubeConfig({
      kubeconfig: kubeconfig(tmp(), {}, { 'auth-provider': { name: 'oidc', config: {} } }),
    });
    expect(oidc.auth.kind).toBe('auth-provider oidc (through @kubernetes/client-node)');
  });

  it('several files ($KUBECONFIG): the first to name an entry wins; a missing context or cluster is named', () => {
    const first = kubeconfig(tmp(), {}, { token: 'one' });
    const second = kubeconfig(tmp(), { server: 'https://other:6443' }, { token: 'two' }, { 'current-context': 'ctx' });
    expect(loadKubeConfig({ kubeconfig: '', env: { KUBECONFIG: `${first}${path.delimiter}${second}` } }).server).toBe(
      'https://10.0.0.1:6443',
    );
    const bad = kubeconfig(tmp(), {}, {}, { 'current-context': 'nope' });
    expect(() => loadKubeConfig({ kubeconfig: bad })).toThrow(/current-context "nope" is not among its contexts/);
  });

  it('in-cluster from KUBERNETES_SERVICE_HOST/PORT and the service-account directory (IPv6 in brackets)', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'token'), 'sa-token');
    writeFileSync(path.join(dir, 'ca.crt'), CA);
    writeFileSync(path.join(dir, 'namespace'), 'llm');
    const c = loadKubeConfig({
      env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      inClusterDir: dir,
    });
    expect({ server: c.server, namespace: c.namespace, source: c.source }).toEqual({
      server: 'https://[fd00::1]:443',
      namespace: 'llm',
      source: 'in-cluster',
    });
    expect((await c.auth.current()).headers).toEqual({ authorization: 'Bearer sa-token' });
    expect(() => loadKubeConfig({ env: { HOME: dir }, inClusterDir: dir })).toThrow(/no Kubernetes API configuration/);
  });
});

it("Lease times are Go's MicroTime: RFC 3339 with six fractional digits, UTC", () => {
  expect(microTime(new Date('2026-12-07T13:12:16.123Z'))).toBe('2026-12-07T13:12:16.123000Z');
  expect(microTime()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
});
