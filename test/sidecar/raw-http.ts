/**
 * A raw HTTP/1.1 connection for tests that must control what goes on the wire: a body sent in parts or never, several
 * requests on one keep-alive connection, interim (1xx) answers seen as they come, and the connection's close.
 */
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export class RawConnection {
  private buffer = Buffer.alloc(0);
  private wake?: () => void;
  private ended = false;
  /** Resolves when the server has closed the connection (or it failed). */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    this.closed = new Promise((resolve) => {
      const done = () => {
        this.ended = true;
        this.wake?.();
        resolve();
      };
      socket.once('close', done);
      socket.once('end', done);
      socket.once('error', done);
    });
  }

  static open(baseUrl: string): Promise<RawConnection> {
    const u = new URL(baseUrl);
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(u.port), u.hostname, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** Writes bytes; resolves once they are handed to the kernel (false when the connection is gone). */
  write(data: string | Buffer): Promise<boolean> {
    if (this.socket.destroyed || !this.socket.writable) return Promise.resolve(false);
    return new Promise((resolve) => this.socket.write(data, (err) => resolve(!err)));
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The next response (interim 1xx answers included), or a failure when none is complete within `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = this.parse();
      if (parsed) return parsed;
      if (this.ended) throw new Error(`connection closed before a complete response; received: ${JSON.stringify(this.buffer.toString('latin1').slice(0, 300))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no complete response within ${timeoutMs}ms; received: ${JSON.stringify(this.buffer.toString('latin1').slice(0, 300))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private parse(): RawResponse | undefined {
    const headEnd = this.buffer.indexOf('\r\n\r\n');
    if (headEnd < 0) return undefined;
    const lines = this.buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let at = headEnd + 4;
    let body: Buffer;
    if (status < 200 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (this.buffer.length < at + n) return undefined;
      body = this.buffer.subarray(at, at + n);
      at += n;
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = this.buffer.indexOf('\r\n', at);
        if (lineEnd < 0) return undefined;
        const size = parseInt(this.buffer.subarray(at, lineEnd).toString('latin1'), 16);
        if (this.buffer.length < lineEnd + 2 + size + 2) return undefined;
        parts.push(this.buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
        if (size === 0) break;
      }
      body = Buffer.concat(parts);
    } else {
      // Delimited by the close.
      if (!this.ended) return undefined;
      body = this.buffer.subarray(at);
      at = this.buffer.length;
    }
    this.buffer = this.buffer.subarray(at);
    return { status, headers, body: body.toString('utf8') };
  }
}

/** A request head for {@link RawConnection.write}. */
export function requestHead(method: string, path: string, headers: Record<string, string | number>): string {
  return `${method} ${path} HTTP/1.1\r\nhost: sidecar\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}
