/**
 * The least a P/D proxy has to do, as a reference for bench/sidecar-overhead (`--proxy minimal`) and bench/sidecar-floor:
 * read the client's JSON body, send the prefill leg (max tokens 1, do_remote_decode) to the prefiller, append the
 * returned kv_transfer_params to the client's body for the decode leg, and relay the decode answer. No deadlines, header
 * handling, metrics, logging, error mapping or cached-token rewrite, so not usable as a sidecar. It shows how much of
 * the sidecar's overhead is the HTTP stack itself, and which part of it:
 *
 *   --server http   Node's HTTP server (default)        --client undici  undici's dispatch API, as the sidecar (default)
 *   --server raw    TCP sockets and a hand-written      --client http    Node's http.request with a keep-alive Agent
 *                   HTTP/1.1 reader                      --client raw     TCP sockets and the same hand-written reader
 *
 * The hand-written reader is the floor, not an HTTP implementation: it takes messages framed by Content-Length only
 * (what the benchmark's non-streamed requests and the simulator's non-streamed answers are) and answers 501 or drops
 * the connection on anything else (chunked bodies, a missing length, a header block over 64 KiB, a body over 16 MiB).
 * Every leg, on every client, fails after 30 s without its whole answer (502 to the client).
 *
 * Usage: node dist/bench/sidecar-overhead/minimal-proxy.js --upstream host:port [--server http|raw] [--client undici|http|raw]
 * Prints {"url":"http://127.0.0.1:<port>","msg":"minimal proxy listening"} once it listens (port chosen by the OS).
 */
import http, { createServer } from 'node:http';
import net from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { nixlPrefillBody } from '../../src/sidecar/index.js';
import { arg, checkArgs } from '../common/args.js';

const USAGE =
  'usage: minimal-proxy --upstream host:port [--server http|raw] [--client undici|http|raw]\n' +
  '  --server  http: Node HTTP server (default); raw: TCP sockets, Content-Length framing only\n' +
  '  --client  undici: undici dispatch (default); http: http.request, keep-alive Agent; raw: TCP sockets\n';

checkArgs(USAGE, ['upstream', 'server', 'client']);

/** `--name`'s value, one of `allowed`; anything else exits 2 with the usage. */
function choice(name: string, fallback: string, allowed: readonly string[]): string {
  const value = arg(name, fallback);
  if (!allowed.includes(value)) {
    process.stderr.write(`minimal-proxy: --${name} must be one of ${allowed.join(', ')}, not ${value}\n${USAGE}`);
    process.exit(2);
  }
  return value;
}

const upstream = arg('upstream', '');
if (!/^[^:]+:\d+$/.test(upstream)) {
  process.stderr.write(`minimal-proxy: --upstream host:port is required\n${USAGE}`);
  process.exit(2);
}
const SERVER = choice('server', 'http', ['http', 'raw']);
const CLIENT = choice('client', 'undici', ['undici', 'http', 'raw']);
/** Longest a leg may wait for its whole answer (every client), and a kept-alive raw connection may sit idle. */
const LEG_TIMEOUT_MS = 30_000;
const [upstreamHost, upstreamPort] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.split(':').pop())];
const origin = `http://${upstream}`;

interface Answer {
  status: number;
  body: Buffer;
}
type Post = (path: string, body: Buffer) => Promise<Answer>;

const JSON_HEADERS = { 'content-type': 'application/json' };

/** A body's chunks as one buffer (without a copy when it came in one). */
function joined(chunks: Buffer[]): Buffer {
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

function undiciPost(): Post {
  const agent = new Agent({
    connections: 1024,
    pipelining: 1,
    keepAliveTimeout: 4_000,
    headersTimeout: LEG_TIMEOUT_MS,
    bodyTimeout: LEG_TIMEOUT_MS,
  });
  return (path, body) =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let status = 0;
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart() {},
        onResponseStart(_controller, statusCode) {
          status = statusCode;
        },
        onResponseData(_controller, chunk) {
          chunks.push(chunk);
        },
        onResponseEnd() {
          resolve({ status, body: joined(chunks) });
        },
        onResponseError(_controller, err) {
          reject(err);
        },
      };
      agent.dispatch({ origin, path, method: 'POST', headers: JSON_HEADERS, body }, handler);
    });
}

function httpPost(): Post {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
  return (path, body) =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: upstreamHost,
          port: upstreamPort,
          path,
          method: 'POST',
          agent,
          headers: { ...JSON_HEADERS, 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: joined(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.setTimeout(LEG_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${LEG_TIMEOUT_MS} ms`)));
      req.end(body);
    });
}

const MAX_HEAD = 64 * 1024;
const MAX_BODY = 16 * 1024 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Calls `onMessage` with each Content-Length-framed HTTP/1.1 message the socket brings (head as latin1 text without the
 * blank line, body). On anything it cannot frame that way it calls `onUnframed` with the reason and reads no more (the
 * caller answers and ends the socket, or fails its leg).
 */
function readMessages(
  socket: net.Socket,
  onMessage: (head: string, body: Buffer) => void,
  onUnframed: (why: string) => void,
): void {
  let pending: Buffer | undefined;
  let stopped = false;
  const refuse = (why: string): void => {
    stopped = true;
    pending = undefined;
    onUnframed(why);
  };
  socket.on('data', (chunk: Buffer) => {
    if (stopped) return;
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = undefined;
    for (;;) {
      const end = buf.indexOf(CRLFCRLF);
      if (end < 0) {
        if (buf.length > MAX_HEAD) refuse('header block over 64 KiB');
        else if (buf.length > 0) pending = buf;
        return;
      }
      if (end > MAX_HEAD) {
        refuse('header block over 64 KiB');
        return;
      }
      const head = buf.toString('latin1', 0, end);
      if (/\r\ntransfer-encoding:/i.test(head)) {
        refuse('a chunked body (Content-Length framing only)');
        return;
      }
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
      // Without a length only a GET request or a 204/304 answer has no body; anything else is framed another way.
      if (!length && !head.startsWith('GET ') && !/^HTTP\/1\.[01] (204|304) /.test(head)) {
        refuse('no Content-Length');
        return;
      }
      const size = length ? Number(length[1]) : 0;
      if (size > MAX_BODY) {
        refuse('a body over 16 MiB');
        return;
      }
      if (buf.length < end + 4 + size) {
        pending = buf;
        return;
      }
      const body = buf.subarray(end + 4, end + 4 + size);
      buf = buf.subarray(end + 4 + size);
      onMessage(head, body);
    }
  });
}

function rawPost(): Post {
  interface Conn {
    socket: net.Socket;
    waiting?: { resolve: (answer: Answer) => void; reject: (err: Error) => void };
  }
  const idle: Conn[] = [];
  const connect = (): Conn => {
    const conn: Conn = { socket: net.connect(upstreamPort, upstreamHost) };
    conn.socket.setNoDelay(true);
    const fail = (err: Error) => {
      const at = idle.indexOf(conn);
      if (at >= 0) idle.splice(at, 1);
      conn.waiting?.reject(err);
      conn.waiting = undefined;
      conn.socket.destroy();
    };
    readMessages(
      conn.socket,
      (head, body) => {
        const waiting = conn.waiting;
        if (!waiting) {
          fail(new Error('upstream sent an answer nobody asked for'));
          return;
        }
        conn.waiting = undefined;
        idle.push(conn);
        waiting.resolve({ status: Number(head.slice(9, 12)), body });
      },
      (why) => fail(new Error(`upstream answer not readable by the raw client: ${why}`)),
    );
    // A leg whose answer stalls fails; a kept-alive connection idle that long is closed.
    conn.socket.setTimeout(LEG_TIMEOUT_MS, () => fail(new Error(`no answer within ${LEG_TIMEOUT_MS} ms`)));
    conn.socket.on('error', fail);
    conn.socket.on('close', () => fail(new Error('upstream closed the connection')));
    return conn;
  };
  return (path, body) =>
    new Promise((resolve, reject) => {
      const conn = idle.pop() ?? connect();
      conn.waiting = { resolve, reject };
      conn.socket.write(
        `POST ${path} HTTP/1.1\r\nhost: ${upstream}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
      );
      conn.socket.write(body);
    });
}

const post: Post = CLIENT === 'raw' ? rawPost() : CLIENT === 'http' ? httpPost() : undiciPost();

/** The P/D operation on a client's body: the prefill leg, then the decode leg with the returned kv_transfer_params. */
async function pd(path: string, raw: Buffer): Promise<Answer> {
  const client = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  // The same prefill body the sidecar builds (chat completions, as the benchmarks send).
  const prefill = await post(path, Buffer.from(JSON.stringify(nixlPrefillBody('chat', client))));
  const kv = (JSON.parse(prefill.body.toString('utf8')) as { kv_transfer_params?: unknown }).kv_transfer_params ?? null;
  return post(
    path,
    Buffer.concat([
      raw.subarray(0, raw.lastIndexOf(0x7d)),
      Buffer.from(`,"kv_transfer_params":${JSON.stringify(kv)}}`),
    ]),
  );
}

function rawServer(): net.Server {
  return net.createServer((socket) => {
    socket.setNoDelay(true);
    const answer = (status: number, body: Buffer): void => {
      socket.write(
        Buffer.concat([
          Buffer.from(
            `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
          ),
          body,
        ]),
      );
    };
    // One request at a time per connection, as HTTP/1.1 clients without pipelining send them: the socket is not read
    // while one is in flight (what one chunk already held waits its turn), and answers go out in order.
    let chain = Promise.resolve();
    let queued = 0;
    const enqueue = (work: () => Promise<void> | void) => {
      queued++;
      socket.pause();
      chain = chain.then(work).finally(() => {
        if (--queued === 0) socket.resume();
      });
    };
    readMessages(
      socket,
      (head, body) => {
        const path = head.split(' ', 2)[1] ?? '/';
        enqueue(() =>
          head.startsWith('POST ')
            ? pd(path, body).then(
                (decode) => answer(decode.status, decode.body),
                (err: unknown) => answer(502, Buffer.from((err as Error).message)),
              )
            : answer(200, Buffer.alloc(0)),
        );
      },
      (why) =>
        enqueue(() => {
          answer(501, Buffer.from(`minimal proxy (--server raw): ${why}`));
          socket.end();
        }),
    );
    socket.on('error', () => socket.destroy());
  });
}

function httpServer(): http.Server {
  return createServer((req, res) => {
    if (req.method !== 'POST') {
      res.end();
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (chunk: Buffer) => parts.push(chunk));
    req.on('end', () => {
      pd(req.url ?? '/', joined(parts)).then(
        (decode) => {
          res.writeHead(decode.status, { 'content-type': 'application/json', 'content-length': decode.body.length });
          res.end(decode.body);
        },
        (err: unknown) => {
          if (!res.headersSent) res.writeHead(502).end((err as Error).message);
          else res.destroy();
        },
      );
    });
  });
}

const server: net.Server = SERVER === 'raw' ? rawServer() : httpServer();
const sockets = new Set<net.Socket>();
server.on('connection', (socket: net.Socket) => {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  const port = addr && typeof addr === 'object' ? addr.port : 0;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}`, msg: 'minimal proxy listening' })}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  for (const socket of sockets) socket.destroy();
  process.exit(0);
});
