/**
 * The model servers behind an EPP benchmark pool, in one process (bench/peers runs it on CPU 0): on each pod address
 * (127.0.0.x) and the pool's target port, an HTTP server answering GET /metrics with the vLLM metrics text of a
 * pd-router simulator, rendered once at start (an idle server: empty queue, idle KV cache, so every pod looks the
 * same to every EPP and the scores come from the prefix index).
 *
 * The EPPs only scrape; no inference request reaches these pods. They serve a fixed text rather than run a simulator
 * each because every EPP scrapes every pod every 50 ms: 64 pods make 1,280 scrapes a second, which 64 simulators
 * rendering their registries could not answer on a shared core in time (scrapes then time out and the EPP under test
 * measures the pods, not itself).
 *
 *   node dist/bench/peers/pods.js --port 23456 --addresses 127.0.10.1,127.0.10.2 [--model bench-model]
 *
 * Prints `{"msg":"pods ready",...}` once every address listens; SIGTERM closes them and exits.
 */
import http from 'node:http';
import { simConfig, startSimulator } from '../../src/sim/index.js';

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const port = Number(arg('port'));
const addresses = arg('addresses').split(',').filter(Boolean);
const model = process.argv.includes('--model') ? arg('model') : 'bench-model';
if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`--port must be a port number, not ${port}`);
if (addresses.length === 0 || addresses.length > 1024) throw new Error('--addresses must list 1 to 1024 addresses');

/** A pd-router simulator's /metrics, once. */
async function metricsText(): Promise<Buffer> {
  const sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [model], seed: 1 }));
  try {
    const r = await fetch(`${sim.url}/metrics`, { signal: AbortSignal.timeout(30_000) });
    if (r.status !== 200) throw new Error(`the simulator's /metrics answered ${r.status}`);
    return Buffer.from(await r.text());
  } finally {
    await sim.close(2_000);
  }
}

const servers: http.Server[] = [];
const close = () => {
  for (const s of servers) s.closeAllConnections();
  process.exit(0);
};
process.once('SIGTERM', close);
process.once('SIGINT', close);
try {
  const text = await metricsText();
  const headers = { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': String(text.length) };
  const handler: http.RequestListener = (req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      res.writeHead(200, headers).end(text);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  };
  for (const host of addresses) {
    // Idle keep-alive connections stay open (the EPPs reuse them every 50 ms, and a paused EPP resumes on them).
    const server = http.createServer({ keepAliveTimeout: 600_000 }, handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    servers.push(server);
  }
  process.stdout.write(
    JSON.stringify({ msg: 'pods ready', port, pods: servers.length, metricsBytes: text.length }) + '\n',
  );
} catch (e) {
  process.stderr.write(`pods: ${(e as Error).message}\n`);
  process.exit(1);
}
