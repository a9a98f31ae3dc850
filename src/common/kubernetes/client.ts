/**
 * The few Kubernetes API calls pd-router makes (list, get, create, replace, watch), as plain JSON over undici.
 *
 * - Every call has a deadline (the connection's requestTimeoutMs, or the caller's); a watch's headers have that
 *   deadline, and the watch itself a lifetime: its `timeoutSeconds` (else the API server's own bound, WATCH_LIFETIME_MS)
 *   plus 30 s, in case the connection died silently (TCP keep-alive, on in undici, notices that sooner).
 * - A response body, and a watch's event line, may be at most maxResponseBytes; a longer one fails the call (the
 *   informer retries with backoff) rather than growing the heap.
 * - A non-2xx answer throws KubeApiError: `code` is the HTTP status and `body` the API server's Status object as text,
 *   the shape describeKubeError() and apiMessage() read (client-node's ApiException has the same two fields).
 * - A 401 makes the credentials be re-read (a rotated service-account token) before the next call.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { KubeAuthState, KubeConnection } from './kubeconfig.js';

/** A failed API call: the HTTP status (`code`, and `statusCode` as a watch failure had it) and the Status text. */
export class KubeApiError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: number,
    readonly body: string,
    what: string,
  ) {
    let message: string | undefined;
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = undefined;
    }
    super(message ? message : `HTTP-Code: ${code} (${what})`);
    this.name = 'KubeApiError';
    this.statusCode = code;
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface CallOptions {
  query?: Query;
  /** This call's deadline (default the connection's requestTimeoutMs). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface WatchHandle {
  /** Ends the watch; `done` is not called for an abort. */
  abort(): void;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- objects as the API server sent them; callers check fields */
export type KubeObject = Record<string, any> & {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: any };
};
/* eslint-enable @typescript-eslint/no-explicit-any */

export interface KubeList<T> {
  items: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

const WATCH_GRACE_MS = 30_000;
/**
 * A watch without timeoutSeconds is ended by the API server within twice its --min-request-timeout (60 min by
 * default); past that (and a grace) the connection is taken for dead and the watch ends with an error (it is resumed).
 */
export const WATCH_LIFETIME_MS = 60 * 60_000 + WATCH_GRACE_MS;

function urlOf(server: string, apiPath: string, query: Query = {}): string {
  const url = new URL(server.replace(/\/+$/, '') + apiPath);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  return url.toString();
}

/** Reads a body up to `max` bytes; more fails (and the rest is not read). */
async function readBounded(body: Dispatcher.ResponseData['body'], max: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > max) {
      body.destroy();
      throw new Error(`${what}: response larger than ${max} bytes (--kube-max-response-size)`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export class KubeClient {
  private dispatcher?: Agent;
  /** The client certificate the agent was made with, as text (an exec plugin may hand out a new one). */
  private agentCert?: string;

  constructor(readonly connection: KubeConnection) {}

  get server(): string {
    return this.connection.server;
  }

  private async prepare(): Promise<{ state: KubeAuthState; dispatcher: Agent }> {
    const state = await this.connection.auth.current();
    const cert = state.cert ?? this.connection.tls.cert;
    const certText = cert === undefined ? undefined : cert.toString();
    if (!this.dispatcher || certText !== this.agentCert) {
      const old = this.dispatcher;
      const { tls } = this.connection;
      this.dispatcher = new Agent({
        connect: {
          ...(tls.ca ? { ca: tls.ca } : {}),
          ...(cert ? { cert, key: state.key ?? tls.key } : {}),
          rejectUnauthorized: tls.rejectUnauthorized,
          ...(tls.servername ? { servername: tls.servername } : {}),
        },
        // Watches are long-lived and idle between events; undici's own timers must not end them.
        bodyTimeout: 0,
        headersTimeout: 0,
      });
      this.agentCert = certText;
      void old?.close();
    }
    return { state, dispatcher: this.dispatcher };
  }

  private async call(method: string, apiPath: string, body: unknown, opts: CallOptions = {}): Promise<unknown> {
    const { state, dispatcher } = await this.prepare();
    const timeoutMs = opts.timeoutMs ?? this.connection.requestTimeoutMs;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
    const what = `${method} ${apiPath}`;
    try {
      const res = await request(urlOf(this.server, apiPath, opts.query), {
        method: method,
        dispatcher,
        signal,
        headers: {
          accept: 'application/json',
          ...state.headers,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await readBounded(res.body, this.connection.maxResponseBytes, what);
      if (res.statusCode === 401) this.connection.auth.invalidate();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new KubeApiError(res.statusCode, text, what);
      return JSON.parse(text) as unknown;
    } catch (err) {
      if (deadline.aborted && !(err instanceof KubeApiError))
        throw Object.assign(new Error(`${what}: no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT', cause: err });
      throw err;
    }
  }

  get<T = KubeObject>(apiPath: string, opts?: CallOptions): Promise<T> {
    return this.call('GET', apiPath, undefined, opts) as Promise<T>;
  }

  list<T = KubeObject>(apiPath: string, opts?: CallOptions): Promise<KubeList<T>> {
    return this.call('GET', apiPath, undefined, opts) as Promise<KubeList<T>>;
  }

  create<T = KubeObject>(collectionPath: string, body: unknown, opts?: CallOptions): Promise<T> {
    return this.call('POST', collectionPath, body, opts) as Promise<T>;
  }

  replace<T = KubeObject>(objectPath: string, body: unknown, opts?: CallOptions): Promise<T> {
    return this.call('PUT', objectPath, body, opts) as Promise<T>;
  }

  /**
   * Watches a collection: `onEvent` per event line, `done` once when the watch ends (undefined: the server ended it;
   * an error otherwise, KubeApiError for a non-200 answer). Resolves once the API server accepted the watch (200) or
   * the attempt failed (then `done` has been called). An aborted watch calls neither.
   */
  async watch<T = KubeObject>(
    collectionPath: string,
    query: Query,
    onEvent: (event: WatchEvent<T>) => void,
    done: (err?: Error) => void,
  ): Promise<WatchHandle> {
    const controller = new AbortController();
    let finished = false;
    const finish = (err?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(lifetime);
      if (!controller.signal.aborted) controller.abort();
      done(err);
    };
    const handle: WatchHandle = {
      abort: () => {
        finished = true;
        clearTimeout(lifetime);
        controller.abort();
      },
    };
    const timeoutSeconds = typeof query.timeoutSeconds === 'number' ? query.timeoutSeconds : undefined;
    const lifetimeMs = timeoutSeconds !== undefined ? timeoutSeconds * 1000 + WATCH_GRACE_MS : WATCH_LIFETIME_MS;
    const lifetime = setTimeout(
      () => finish(new Error(`watch ${collectionPath}: not ended by the server within ${lifetimeMs} ms`)),
      lifetimeMs,
    );
    lifetime.unref();
    const what = `watch ${collectionPath}`;
    let res: Dispatcher.ResponseData;
    try {
      const { state, dispatcher } = await this.prepare();
      // The headers' deadline only: the signal stays attached to the body, which must outlive it.
      let headersTimedOut = false;
      const headersTimer = setTimeout(() => {
        headersTimedOut = true;
        controller.abort();
      }, this.connection.requestTimeoutMs);
      try {
        res = await request(urlOf(this.server, collectionPath, { ...query, watch: true }), {
          method: 'GET',
          dispatcher,
          signal: controller.signal,
          headers: { accept: 'application/json', ...state.headers },
        });
      } catch (err) {
        if (headersTimedOut)
          throw Object.assign(new Error(`${what}: no answer within ${this.connection.requestTimeoutMs} ms`), {
            code: 'ETIMEDOUT',
            cause: err,
          });
        throw err;
      } finally {
        clearTimeout(headersTimer);
      }
      if (res.statusCode !== 200) {
        const text = await readBounded(res.body, this.connection.maxResponseBytes, what).catch(() => '');
        if (res.statusCode === 401) this.connection.auth.invalidate();
        throw new KubeApiError(res.statusCode, text, what);
      }
    } catch (err) {
      if (!finished) finish(err instanceof Error ? err : new Error(String(err)));
      return handle;
    }
    // Once the answer is in, only our abort may end it without `done`: the body's own deadline is the lifetime timer.
    const max = this.connection.maxResponseBytes;
    const body = res.body;
    void (async () => {
      let pending: Buffer[] = [];
      let pendingSize = 0;
      const emit = (line: Buffer) => {
        const text = line.toString('utf8').trim();
        if (!text) return;
        let event: WatchEvent<T>;
        try {
          event = JSON.parse(text) as WatchEvent<T>;
        } catch {
          throw new Error(`${what}: an event line is not JSON: ${text.slice(0, 200)}`);
        }
        onEvent(event);
      };
      try {
        for await (const chunk of body) {
          if (finished) break;
          let buf = chunk as Buffer;
          for (let nl = buf.indexOf(10); nl >= 0 && !finished; nl = buf.indexOf(10)) {
            const head = buf.subarray(0, nl);
            if (pendingSize + head.length > max)
              throw new Error(`${what}: an event line is longer than ${max} bytes (--kube-max-response-size)`);
            emit(pending.length ? Buffer.concat([...pending, head]) : head);
            pending = [];
            pendingSize = 0;
            buf = buf.subarray(nl + 1);
          }
          if (buf.length) {
            pendingSize += buf.length;
            if (pendingSize > max)
              throw new Error(`${what}: an event line is longer than ${max} bytes (--kube-max-response-size)`);
            pending.push(buf);
          }
        }
        if (!finished && pendingSize > 0) emit(Buffer.concat(pending));
        finish();
      } catch (err) {
        body.destroy();
        if (!controller.signal.aborted || !finished) finish(err instanceof Error ? err : new Error(String(err)));
      }
    })();
    return handle;
  }

  /** Closes the connections; a later call opens new ones. */
  async close(): Promise<void> {
    const dispatcher = this.dispatcher;
    this.dispatcher = undefined;
    await dispatcher?.close();
  }
}
