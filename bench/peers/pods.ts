/**
 * The model servers behind an EPP benchmark pool, in one process (bench/peers runs it on CPU 0): a pd-router
 * simulator on each pod address (127.0.0.x) and the pool's target port, zero latency. The EPPs only scrape their
 * /metrics (vLLM's names); no inference request reaches them, so every pod reports an empty queue and an idle KV
 * cache, the same for every EPP: the scores then come from the prefix index.
 *
 *   node dist/bench/peers/pods.js --port 23456 --addresses 127.0.10.1,127.0.10.2 [--model bench-model]
 *
 * Prints `{"msg":"pods ready",...}` once every simulator listens; SIGTERM closes them and exits.
 */
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';

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

const sims: SimulatorHandle[] = [];
const close = async () => {
  await Promise.all(sims.map((s) => s.close(2_000)));
  process.exit(0);
};
process.once('SIGTERM', () => void close());
process.once('SIGINT', () => void close());
try {
  for (const host of addresses) sims.push(await startSimulator(simConfig({ host, port, model: [model], seed: 1, maxNumSeqs: 256, maxModelLen: 100_000, kvCacheSize: 100_000 })));
  process.stdout.write(JSON.stringify({ msg: 'pods ready', port, pods: sims.length }) + '\n');
} catch (e) {
  process.stderr.write(`pods: ${(e as Error).message}\n`);
  await Promise.all(sims.map((s) => s.close(2_000)));
  process.exit(1);
}
