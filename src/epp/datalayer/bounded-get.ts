/**
 * One bounded GET of a model server's text endpoint (`/metrics`, `/v1/models`): a deadline for the whole exchange and
 * a byte bound on the body, so a slow or endless server costs at most one timeout and one buffer of `maxBytes`.
 */
import { Agent, request } from 'undici';
import { deadline } from '../../common/deadline.js';

/** The TLS side of a model-server source (MetricsSourceSettings' fields). */
export interface SourceTls {
  readonly insecureSkipVerify: boolean;
  /** PEM contents: the CA bundle (only when verifying) and the mTLS client certificate and key. */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** The connection pool one poller keeps to the model servers: `connections` per server, every wait `timeoutMs`. */
export function sourceAgent(tls: SourceTls, timeoutMs: number, connections: number): Agent {
  return new Agent({
    keepAliveTimeout: 30_000,
    connections,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: {
      rejectUnauthorized: !tls.insecureSkipVerify,
      timeout: timeoutMs,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
    },
  });
}

/** How the GET is bounded, and what it is called in its errors. */
export interface BoundedGet {
  readonly agent: Agent;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** The Accept header. */
  readonly accept: string;
  /** Names the response in the size error (`metrics`, `models`). */
  readonly what: string;
}

/** The body of a 200 answer as UTF-8; throws on another status, past the deadline, or past `maxBytes`. */
export async function boundedGetText(url: string, bounds: BoundedGet): Promise<string> {
  const timeout = deadline(bounds.timeoutMs);
  try {
    const res = await request(url, {
      dispatcher: bounds.agent,
      signal: timeout.signal,
      headers: { accept: bounds.accept },
    });
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => undefined);
      throw new Error(`status ${res.statusCode}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > bounds.maxBytes) {
        res.body.destroy();
        throw new Error(`${bounds.what} response larger than ${bounds.maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    timeout.clear();
  }
}
