/**
 * Shared fastify setup: request ids taken from x-request-id (or generated), no per-request info logging on the hot
 * path, and closing with a drain deadline.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP, type Socket } from 'node:net';
import type { FastifyHttpOptions } from 'fastify';
import type { Logger } from 'pino';
import { REQUEST_ID_HEADER } from './pd-contract.js';

/** A server's logger and body limit. */
export interface ServerBaseSettings {
  logger: Logger;
  /** Largest accepted request body in bytes. */
  bodyLimit: number;
}

/** The request id: the client's x-request-id, or a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const h = req.headers[REQUEST_ID_HEADER];
  const v = Array.isArray(h) ? h[0] : h;
  return v && v.length <= 256 ? v : randomUUID();
}

/** Fastify options every server shares: the logger, request ids, body limit, no per-request info logging. */
export function fastifyBaseOptions(settings: ServerBaseSettings): FastifyHttpOptions<Server> {
  // Loaded here, not imported: a process that serves no fastify instance (the sidecar) does not load fastify.
  const { LogController } = createRequire(import.meta.url)('fastify') as typeof import('fastify');
  return {
    loggerInstance: settings.logger,
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    genReqId: requestIdOf,
    bodyLimit: settings.bodyLimit,
    // LLM requests can stream for minutes; timeouts are per stage inside the handlers, not per socket.
    requestTimeout: 0,
    keepAliveTimeout: 300_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  };
}

/**
 * Connections with no request in flight. Node's closeIdleConnections() skips sockets that never carried a request,
 * and HTTP clients (undici among them) open spare sockets ahead of need, so a drain would otherwise wait for the
 * client's keep-alive timeout.
 */
class ConnectionTracker {
  private readonly inFlight = new Map<Socket, number>();
  private closing = false;

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.inFlight.set(socket, 0);
      socket.once('close', () => this.inFlight.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      this.inFlight.set(socket, (this.inFlight.get(socket) ?? 0) + 1);
      // A handler may have answered synchronously (fastify's 503 while closing) before this listener runs.
      if (this.closing && !res.headersSent) res.setHeader('connection', 'close');
      res.once('close', () => {
        if (!this.inFlight.has(socket)) return;
        const left = Math.max(0, this.inFlight.get(socket)! - 1);
        this.inFlight.set(socket, left);
        // While draining, a keep-alive socket must not outlive its last request.
        if (this.closing && left === 0) socket.destroySoon();
      });
    });
  }

  /** Starts draining: idle sockets close now, busy ones after their last response. */
  drain(): void {
    this.closing = true;
    for (const [socket, n] of this.inFlight) if (n === 0) socket.destroy();
  }
}

/** A server to listen with and drain: a fastify instance, or one of ours on node:http (the sidecar's). */
export interface ListeningApp {
  readonly server: Server;
  readonly log: { warn(details: object, message: string): void };
  listen(options: { host: string; port: number }): PromiseLike<unknown>;
  close(): PromiseLike<unknown>;
}

const trackers = new WeakMap<ListeningApp, ConnectionTracker>();

/** Listens and returns the bound port (useful with port 0 in tests). */
export async function listen(app: ListeningApp, host: string, port: number): Promise<number> {
  if (!trackers.has(app)) trackers.set(app, new ConnectionTracker(app.server));
  await app.listen({ host, port });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address');
  return addr.port;
}

/** Stops accepting, waits for in-flight requests up to the deadline, then closes what is left. */
export async function closeWithDeadline(app: ListeningApp, deadlineMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), deadlineMs);
  });
  const closing = app.close().then(() => 'closed' as const);
  trackers.get(app)?.drain();
  const first = await Promise.race([closing, deadline]);
  clearTimeout(timer);
  if (first === 'deadline') {
    app.log.warn({ deadlineMs }, 'drain deadline reached, closing remaining connections');
    app.server.closeAllConnections();
    await closing;
  }
}

/** Headers a proxy must not forward (RFC 9110 §7.6.1), plus the ones HTTP clients compute themselves. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** A host a local client can dial for a listen address: wildcard addresses (0.0.0.0, ::, empty) become 127.0.0.1. */
export function dialableHost(listenHost: string): string {
  return listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '' ? '127.0.0.1' : listenHost;
}

/** Host formatting for URLs: IPv6 literals in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Waits after a `res.write()` that returned false: resolves when the client takes more data ('drain') or goes away
 * ('close'). Both listeners are removed either way, so a long stream to a slow client does not collect them.
 */
export function drainOrClose(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** A parsed host:port target; shared between callers (parseTarget caches them), so never changed. */
export interface Target {
  readonly host: string;
  readonly port: number;
  /** host:port as written in URLs (IPv6 bracketed). */
  readonly hostPort: string;
}

/**
 * Parses a host:port target (an x-prefiller-host-port value, an allowlist entry, a --fallback-endpoints item):
 * `host:port`, `[v6]:port`, or with an `http://`/`https://` prefix (accepted for backward compatibility; the sidecar
 * takes the scheme from --enable-tls).
 */
export function parseTarget(value: string): Target | undefined {
  const cached = parsedTargets.get(value);
  if (cached !== undefined) return cached;
  const target = parseTargetUncached(value);
  // Routing headers name the same few prefill pods over and over; the bound keeps arbitrary client values from growing it.
  if (target && parsedTargets.size < PARSED_TARGETS_MAX) parsedTargets.set(value, Object.freeze(target));
  return target;
}

const PARSED_TARGETS_MAX = 4096;
const parsedTargets = new Map<string, Target>();

function parseTargetUncached(value: string): Target | undefined {
  const v = value
    .trim()
    .replace(/^https?:\/\//i, '')
    .replace(/\/+$/, '');
  // A host is a DNS name or an IPv4 address, or an IPv6 address in brackets: nothing a URL parser would read
  // differently from the SSRF allowlist (user info, percent escapes, a bracketed IPv4 that passed the allowlist and
  // then failed as an invalid URL).
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(v);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  if (m[1].startsWith('[') && isIP(host) !== 6) return undefined;
  return {
    host: host.toLowerCase(),
    port,
    hostPort: m[1].startsWith('[') ? `${m[1]}:${port}` : `${host.toLowerCase()}:${port}`,
  };
}
