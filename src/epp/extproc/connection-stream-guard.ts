/**
 * Keeps one client's stream resets from failing everybody's streams on the same HTTP/2 connection.
 *
 * Envoy multiplexes every request's ext_proc stream over a few connections, and resets a stream (RST_STREAM) when its
 * downstream client goes away, and, unless graceful_grpc_close is on, when any request ends. Node's HTTP/2 server is
 * nghttp2, whose rapid-reset defence (CVE-2023-44487) is a per-connection token bucket of received RST_STREAMs: a burst
 * of 1000 refilled at 33 per second, not configurable from Node 20. When it runs dry, nghttp2 sends GOAWAY with
 * INTERNAL_ERROR; a Node client then destroys the connection at once, failing every stream on it, and Envoy fails the
 * streams it had sent past the GOAWAY. So a few thousand aborting clients failed innocent concurrent requests.
 *
 * nghttp2 counts every RST_STREAM it receives, also one for a stream it has already closed (a gRPC client's cancel is
 * END_STREAM then RST_STREAM; if the EPP answers in between, the stream is closed when the reset arrives), and
 * JavaScript never sees those. So the guard counts what bounds them instead: streams. A conforming client (Envoy,
 * grpc-js) resets a stream at most once, so a connection that opens at most --connection-stream-burst streams at once,
 * refilled at --connection-stream-rate per second (at most 990 and 33, below nghttp2's 1000 and 33), can never empty
 * nghttp2's bucket. Before it would, the guard closes the connection gracefully:
 *
 * 1. GOAWAY NO_ERROR with the largest stream id (a shutdown notice): the client opens no new streams here, and
 *    nghttp2 stops its own count for this connection (it counts only until a GOAWAY is submitted);
 * 2. after a PING round trip (at most 1 s), the final GOAWAY naming the last stream the EPP took: streams the client
 *    sent before it saw the notice are served, later ones are refused (a client may retry a refused stream);
 * 3. the connection closes when its streams have finished, each within its own bounds (body timeout, idle timeout).
 *
 * The defence stays, and covers stream floods that do not reset too: a connection gets at most burst + rate x seconds
 * of streams before it must reconnect (a TLS handshake each time); a client that opens a further burst during the
 * round trip of step 2 gets the final GOAWAY at once. What changes: the other streams on that connection finish. The
 * cost: a client sending more than --connection-stream-rate requests per second on one connection for long reconnects
 * every burst / (its rate - the refill rate) seconds, which a connection carrying Envoy's per-request resets needs
 * anyway. A client that resets one stream several times only closes its own connection (nghttp2's GOAWAY remains).
 *
 * The guard sees each session through http2-sessions.ts. Node refuses to ping a closing session, and grpc-js's own
 * keepalive destroyed a session on that refusal, failing the very streams step 3 lets finish: the EPP's keepalive
 * (connection-keepalive.ts) replaces it.
 */
import http2 from 'node:http2';
import type { Logger } from 'pino';
import type { EppMetrics } from '../metrics.js';
import type { SessionWatcher } from './http2-sessions.js';

/** nghttp2's own stream-reset bucket (NGHTTP2_DEFAULT_STREAM_RESET_BURST / _RATE), which the guard stays under. */
export const NGHTTP2_RESET_BURST = 1000;
export const NGHTTP2_RESET_RATE = 33;

export interface StreamGuardSettings {
  /** Streams a connection may open at once. */
  burst: number;
  /** Streams per second added back, up to `burst`. */
  ratePerSecond: number;
  /** Longest wait for the PING ack between the shutdown notice and the final GOAWAY. */
  noticeMs?: number;
}

class StreamBucket {
  private tokens: number;
  private at = performance.now();

  constructor(private readonly settings: StreamGuardSettings) {
    this.tokens = settings.burst;
  }

  /** Takes one token; returns the tokens left (negative once the bucket is dry). */
  take(): number {
    const now = performance.now();
    this.tokens = Math.min(this.settings.burst, this.tokens + ((now - this.at) / 1000) * this.settings.ratePerSecond);
    this.at = now;
    return --this.tokens;
  }
}

export class ConnectionStreamGuard implements SessionWatcher {
  constructor(
    private readonly settings: StreamGuardSettings,
    private readonly metrics: EppMetrics,
    private readonly logger: Logger,
  ) {}

  /** Called for every HTTP/2 session the ext_proc server accepts (see http2-sessions.ts). */
  watch(session: http2.ServerHttp2Session): void {
    const bucket = new StreamBucket(this.settings);
    let streams = 0;
    let draining = false;
    let finalSent = false;
    const peer = `${session.socket?.remoteAddress}:${session.socket?.remotePort}`;
    const sendFinal = () => {
      if (finalSent) return;
      finalSent = true;
      if (!session.closed && !session.destroyed) session.close();
    };
    session.on('stream', () => {
      streams++;
      const left = bucket.take();
      if (left >= 0) return;
      if (!draining) {
        draining = true;
        this.metrics.connectionsDrained.inc({ reason: 'stream_burst' });
        this.logger.warn(
          { peer, streams, burst: this.settings.burst, ratePerSecond: this.settings.ratePerSecond },
          'ext_proc connection opens streams faster than they may be reset; closing it gracefully (GOAWAY NO_ERROR)',
        );
        if (session.closed || session.destroyed) return;
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1);
        const timer = setTimeout(sendFinal, this.settings.noticeMs ?? 1_000);
        timer.unref();
        try {
          session.ping(() => {
            clearTimeout(timer);
            sendFinal();
          });
        } catch {
          clearTimeout(timer);
          sendFinal();
        }
      } else if (left < -this.settings.burst) {
        // Another burst after the notice: no more waiting for the round trip.
        sendFinal();
      }
    });
  }
}
