/**
 * grpc-js does not expose its HTTP/2 sessions. The EPP's connection supervisors (the stream guard, the keepalive) see
 * every session the ext_proc server accepts by wrapping the server's private createHttp2Server; the EPP refuses to
 * start if a grpc-js release renames it, rather than running unsupervised.
 */
import type http2 from 'node:http2';
import type net from 'node:net';
import type * as grpc from '@grpc/grpc-js';

export interface SessionWatcher {
  watch(session: http2.ServerHttp2Session): void;
  /** Each accepted TCP connection, before TLS and HTTP/2 (a session's `socket` forbids socket options). */
  connection?(socket: net.Socket): void;
}

/** Calls every watcher for each HTTP/2 session `server` accepts; call before binding. */
export function watchHttp2Sessions(server: grpc.Server, watchers: SessionWatcher[]): void {
  // eslint-disable-next-line no-restricted-syntax -- grpc-js keeps createHttp2Server private; wrapping it is the only way to see every HTTP/2 session
  const internals = server as unknown as {
    createHttp2Server?: (this: unknown, ...args: unknown[]) => http2.Http2Server;
  };
  const create = internals.createHttp2Server;
  if (typeof create !== 'function')
    throw new Error(
      '@grpc/grpc-js no longer has Server.createHttp2Server: the ext_proc connection supervisors cannot attach',
    );
  internals.createHttp2Server = function (this: unknown, ...args: unknown[]) {
    const h2 = create.apply(this, args);
    h2.on('connection', (socket: net.Socket) => {
      for (const watcher of watchers) watcher.connection?.(socket);
    });
    h2.on('session', (session: http2.ServerHttp2Session) => {
      for (const watcher of watchers) watcher.watch(session);
    });
    return h2;
  };
}
