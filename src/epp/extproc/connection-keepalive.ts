/**
 * Finds dead ext_proc peers: every --grpc-keepalive-time an open HTTP/2 session is pinged, and destroyed if the ack
 * does not come within --grpc-keepalive-timeout (its streams fail: nobody is there to answer them).
 *
 * It replaces grpc-js's server keepalive, which destroys a session as soon as a ping cannot be sent. Node refuses to
 * ping a session once it is closing: after the EPP's connection stream guard or the client (Envoy draining a
 * connection) sent GOAWAY NO_ERROR. grpc-js then destroyed the session at its next keepalive tick, failing every
 * stream still running on it, the streams a graceful close exists to let finish (the gateway answered them 500
 * "endpoint picker failed on the response"). A closing session is therefore never pinged; it ends when its streams
 * end, each within its own bounds (--stream-idle-timeout, the request body timeout), and TCP keepalive on its socket
 * (probes after --grpc-keepalive-time of silence) still notices a peer that vanished.
 */
import type http2 from 'node:http2';
import type net from 'node:net';
import type { Logger } from 'pino';
import type { EppMetrics } from '../metrics.js';
import type { SessionWatcher } from './http2-sessions.js';

export interface KeepaliveSettings {
  /** Between the previous ack (or the session's start) and the next ping; 0 disables the keepalive. */
  timeMs: number;
  /** Longest wait for a ping's ack. */
  timeoutMs: number;
}

export class ConnectionKeepalive implements SessionWatcher {
  constructor(
    private readonly settings: KeepaliveSettings,
    private readonly metrics: EppMetrics,
    private readonly logger: Logger,
  ) {}

  connection(socket: net.Socket): void {
    if (this.settings.timeMs > 0) socket.setKeepAlive(true, this.settings.timeMs);
  }

  watch(session: http2.ServerHttp2Session): void {
    const { timeMs, timeoutMs } = this.settings;
    if (timeMs <= 0) return;
    let next: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const ping = () => {
      if (session.destroyed) return;
      if (session.closed) {
        // Node refuses the ping; the session ends with its streams (TCP keepalive watches the socket meanwhile).
        this.metrics.keepalivePings.inc({ result: 'closing' });
        return;
      }
      deadline = setTimeout(() => {
        if (session.destroyed) return;
        this.metrics.keepalivePings.inc({ result: 'timeout' });
        this.logger.warn(
          { peer: `${session.socket?.remoteAddress}:${session.socket?.remotePort}`, timeoutMs },
          'ext_proc connection did not answer a keepalive ping; closing it',
        );
        session.destroy();
      }, timeoutMs);
      deadline.unref();
      const sent = session.ping((err) => {
        clearTimeout(deadline);
        // An error: the session was destroyed meanwhile (Node cancels its pings); nothing to do.
        if (err) return;
        this.metrics.keepalivePings.inc({ result: 'ack' });
        schedule();
      });
      if (!sent) {
        // Too many pings outstanding (the stream guard's among them): try again next period.
        clearTimeout(deadline);
        schedule();
      }
    };
    const schedule = () => {
      next = setTimeout(ping, timeMs);
      next.unref();
    };
    schedule();
    session.once('close', () => {
      clearTimeout(next);
      clearTimeout(deadline);
    });
  }
}
