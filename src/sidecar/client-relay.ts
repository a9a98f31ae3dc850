/**
 * Relays an upstream answer to the client as it arrives: SSE events are written (and flushed) one by one, never
 * buffered, with the cached-tokens rewrite applied line by line; a non-streamed JSON answer that must be rewritten is
 * buffered up to a bound and sent with a correct Content-Length. The response head is written when the first body byte
 * is known, so a decode that never answers still gets a proper 504 instead of a truncated 200.
 */
import type { ServerResponse } from 'node:http';
import { drainOrClose } from '../common/index.js';
import type { Logger } from 'pino';
import { SseCachedTokensRewriter, rewriteJsonBody } from './cached-tokens-rewriter.js';
import { streamFailureEvent } from './failures.js';
import type { SidecarMetrics } from './metrics.js';
import { responseHeaders } from './upstream.js';
import { LegStopped, type UpstreamLeg } from '../common/upstream-leg.js';

export interface RelayOptions {
  res: ServerResponse;
  /** The prefiller's cached_tokens to write into usage; undefined relays the body unchanged. */
  rewriteCached?: number;
  maxRewriteBody: number;
  /** Chunks already read from the leg (a probe looked at them). */
  prefix?: Buffer[];
  metrics: SidecarMetrics;
  /** The request's logger, asked for only when something is logged. */
  logger: () => Logger;
  /** Called once, when the first byte goes to the client. */
  onFirstClientByte?: () => void;
}

export type RelayOutcome =
  | { kind: 'done' }
  /** The leg stopped or failed; `headersSent` tells whether the caller can still answer with its own status. */
  | { kind: 'failed'; error: unknown; headersSent: boolean };

const DATA_PREFIX = Buffer.from('data:');


export async function relayToClient(leg: UpstreamLeg, relayOptions: RelayOptions): Promise<RelayOutcome> {
  const res = relayOptions.res;
  const pending = relayOptions.prefix && relayOptions.prefix.length > 0 ? [...relayOptions.prefix] : undefined;
  const next = (): Promise<Buffer | null> => (pending && pending.length > 0 ? Promise.resolve(pending.shift()!) : leg.read());
  const contentType = String(leg.headers['content-type'] ?? '').toLowerCase();
  let sse = contentType.includes('text/event-stream');
  let rewriter: SseCachedTokensRewriter | undefined;
  let firstWritten = false;

  const writeHead = (dropLength: boolean, length?: number) => {
    const headers = responseHeaders(leg.headers, dropLength);
    if (length !== undefined) headers['content-length'] = String(length);
    res.writeHead(leg.status, headers);
  };
  const write = async (buf: Buffer) => {
    if (buf.length === 0) return;
    if (!firstWritten) {
      firstWritten = true;
      relayOptions.onFirstClientByte?.();
    }
    if (!res.write(buf) && !res.destroyed) await drainOrClose(res);
  };

  try {
    let first = await next();
    if (relayOptions.rewriteCached !== undefined && !sse && first !== null && first.subarray(0, 5).equals(DATA_PREFIX)) sse = true;
    if (relayOptions.rewriteCached !== undefined && sse) {
      rewriter = new SseCachedTokensRewriter(relayOptions.rewriteCached);
      writeHead(true);
      for (let c = first; c !== null; c = await next()) await write(rewriter.push(c));
      await write(rewriter.end());
      if (rewriter.oversizedLines > 0) relayOptions.metrics.rewriteSkipped.inc({ reason: 'sse_line_too_long' }, rewriter.oversizedLines);
    } else if (relayOptions.rewriteCached !== undefined && leg.status >= 200 && leg.status < 300) {
      const parts: Buffer[] = [];
      let size = 0;
      let overflow = false;
      for (let c = first; c !== null; c = await next()) {
        if (overflow) {
          await write(c);
          continue;
        }
        parts.push(c);
        size += c.length;
        if (size > relayOptions.maxRewriteBody) {
          // Too large to hold: send it unchanged rather than fail the request.
          overflow = true;
          relayOptions.metrics.rewriteSkipped.inc({ reason: 'body_too_large' });
          relayOptions.logger().warn({ size, limit: relayOptions.maxRewriteBody }, 'decode answer too large to rewrite cached_tokens; relaying it unchanged');
          writeHead(true);
          for (const p of parts) await write(p);
        }
      }
      if (!overflow) {
        const body = rewriteJsonBody(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size), relayOptions.rewriteCached);
        writeHead(true, body.length);
        if (body.length > 0) relayOptions.onFirstClientByte?.();
        // Head and body in one write.
        res.end(body);
        return { kind: 'done' };
      }
    } else {
      writeHead(false);
      for (let c = first; c !== null; c = await next()) await write(c);
      first = null;
    }
    if (!res.destroyed) res.end();
    return { kind: 'done' };
  } catch (error) {
    // A failure on our side (writing to the client, the rewrite) leaves the leg running: stop it (no-op if it ended).
    leg.stop(error instanceof LegStopped ? error : new LegStopped('peer_failed', `relaying the answer failed: ${(error as Error)?.message ?? String(error)}`));
    const headersSent = res.headersSent;
    if (headersSent && !res.destroyed) {
      if (!(error instanceof LegStopped && error.reason === 'client_gone')) {
        if (sse) {
          res.end(streamFailureEvent(error));
        } else {
          // A JSON body cannot carry an error once it has started: cut the connection so the client sees the failure.
          res.destroy();
        }
      }
    }
    return { kind: 'failed', error, headersSent };
  }
}
