/**
 * The prefill side of vLLM's MooncakeConnector that a router talks to: its bootstrap server, whose `GET /query` answers
 * each data-parallel rank's engine id (`{"<rank>": {"engine_id": "...", "worker_addr": {...}}}`), which a router puts
 * in the decode leg's remote_engine_id. Served on its own port (--mooncake-bootstrap-port), as vLLM does; it counts the
 * queries so a test can tell a router's cache from a fresh query.
 */
import { createServer, type Server } from 'node:http';
import { hostPort } from '../common/index.js';
import type { SimEngine } from './sim-engine.js';

export interface MooncakeBootstrapServer {
  readonly port: number;
  /** GET /query requests served. */
  readonly queries: number;
  close(): Promise<void>;
}

export async function startMooncakeBootstrap(
  host: string,
  port: number,
  ranks: ReadonlyArray<{ engine: SimEngine; port: number }>,
): Promise<MooncakeBootstrapServer> {
  let queries = 0;
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/query') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    queries++;
    const body: Record<string, unknown> = {};
    ranks.forEach((served, rank) => {
      body[String(rank)] = {
        engine_id: served.engine.engineId,
        worker_addr: { '0': { '0': hostPort(served.engine.advertisedHost, served.port) } },
      };
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    // eslint-disable-next-line no-restricted-syntax -- built once per policy/server, not per request
    get queries() {
      return queries;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
