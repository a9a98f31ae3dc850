/**
 * The least a P/D proxy has to do, as a reference for bench/sidecar-overhead (`--proxy minimal`): read the client's
 * JSON body, send the prefill leg (max tokens 1, do_remote_decode) to the prefiller, append the returned
 * kv_transfer_params to the client's body for the decode leg, and relay the decode answer. Node's HTTP server and undici's
 * dispatch API (and the sidecar's own prefill-body builder), nothing else: no deadlines, header handling, metrics, logging, error mapping or cached-token rewrite,
 * so not usable as a sidecar. It shows how much of the sidecar's overhead is Node's HTTP stack itself.
 *
 * Usage: node dist/bench/sidecar-overhead/minimal-proxy.js --upstream host:port
 * Prints {"url":"http://127.0.0.1:<port>","msg":"minimal proxy listening"} once it listens (port chosen by the OS).
 */
import { createServer } from 'node:http';
import { Agent, type Dispatcher } from 'undici';
import { nixlPrefillBody } from '../../src/sidecar/index.js';

const at = process.argv.indexOf('--upstream');
const upstream = at >= 0 ? process.argv[at + 1] : undefined;
if (!upstream) {
  process.stderr.write('usage: minimal-proxy --upstream host:port\n');
  process.exit(2);
}
const origin = `http://${upstream}`;
const agent = new Agent({ connections: 1024, pipelining: 1, keepAliveTimeout: 4_000 });
const JSON_HEADERS = { 'content-type': 'application/json' };

/** One POST, its whole answer in memory. */
function post(path: string, body: Buffer | string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart() {},
      onResponseStart(_controller, seconds) {
        status = seconds;
      },
      onResponseData(_controller, chunk) {
        chunks.push(chunk);
      },
      onResponseEnd() {
        resolve({ status, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
      },
      onResponseError(_controller, err) {
        reject(err);
      },
    };
    agent.dispatch({ origin, path, method: 'POST', headers: JSON_HEADERS, body }, handler);
  });
}

const server = createServer((req, res) => {
  if (req.method !== 'POST') {
    res.end();
    return;
  }
  const parts: Buffer[] = [];
  req.on('data', (chunk: Buffer) => parts.push(chunk));
  req.on('end', () => {
    void (async () => {
      const raw = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      const client = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      const path = req.url ?? '/';
      // The same prefill body the sidecar builds (chat completions, as the benchmark sends).
      const prefill = await post(path, JSON.stringify(nixlPrefillBody('chat', client)));
      const kv =
        (JSON.parse(prefill.body.toString('utf8')) as { kv_transfer_params?: unknown }).kv_transfer_params ?? null;
      const decode = await post(
        path,
        Buffer.concat([
          raw.subarray(0, raw.lastIndexOf(0x7d)),
          Buffer.from(`,"kv_transfer_params":${JSON.stringify(kv)}}`),
        ]),
      );
      res.writeHead(decode.status, { 'content-type': 'application/json', 'content-length': decode.body.length });
      res.end(decode.body);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(502).end((err as Error).message);
      else res.destroy();
    });
  });
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  const port = addr && typeof addr === 'object' ? addr.port : 0;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}`, msg: 'minimal proxy listening' })}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void agent.close().then(() => process.exit(0));
});
