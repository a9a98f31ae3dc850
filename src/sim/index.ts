/** GPU-free vLLM simulator: `pd-router sim`. */
import type { FastifyInstance } from 'fastify';
import { closeWithDeadline, dialableHost, hostPort, listen, silentLogger, type Logger } from '../common/index.js';
import { SimEngine } from './sim-engine.js';
import { buildSimServer } from './server.js';
import type { SimConfig } from './options.js';
import { startMooncakeBootstrap, type MooncakeBootstrapServer } from './mooncake-bootstrap.js';

export { simCommand, simOptions, simConfig, type SimConfig } from './options.js';
export { simUpstream } from './upstream-flags.js';
export { SimEngine, type RequestRecord, type Faults } from './sim-engine.js';
export { tokenize, tokenId, renderPrompt } from './tokenizer.js';
export { KVCacheSim, blockHashes } from './kv-cache.js';
export { KvEventPublisher } from './kv-events.js';
export { LatencyModel, type LatencySettings } from './latency.js';
export { SeededRandom } from './random.js';

/** One data-parallel rank of a running simulator: its port and engine. */
export interface SimulatorRank {
  engine: SimEngine;
  app: FastifyInstance;
  port: number;
  url: string;
}

/** A running simulator: its ranks, URL, and close(). */
export interface SimulatorHandle {
  readonly ranks: readonly SimulatorRank[];
  /** Rank 0's base URL, e.g. http://127.0.0.1:8000. */
  readonly url: string;
  readonly port: number;
  readonly engine: SimEngine;
  /** The Mooncake bootstrap server (--mooncake-bootstrap-port), when on. */
  readonly mooncakeBootstrap?: MooncakeBootstrapServer;
  close(deadlineMs?: number): Promise<void>;
}

/** Starts one HTTP server per data-parallel rank (rank r on port+r; with port 0 each rank gets a free port). */
export async function startSimulator(config: SimConfig, logger: Logger = silentLogger()): Promise<SimulatorHandle> {
  const ranks: SimulatorRank[] = [];
  let mooncakeBootstrap: MooncakeBootstrapServer | undefined;
  try {
    for (let r = 0; r < config.dataParallelSize; r++) {
      const engine = new SimEngine(config, r, config.dataParallelSize > 1 ? logger.child({ rank: r }) : logger);
      const app = buildSimServer(engine);
      const port = await listen(app, config.host, config.port === 0 ? 0 : config.port + r);
      engine.port = port;
      const host = dialableHost(config.host);
      ranks.push({ engine, app, port, url: `http://${hostPort(host, port)}` });
      await engine.kvEvents?.start();
    }
    if (config.mooncakeBootstrapPort >= 0)
      mooncakeBootstrap = await startMooncakeBootstrap(config.host, config.mooncakeBootstrapPort, ranks);
  } catch (e) {
    await Promise.all(ranks.map((rank) => rank.app.close()));
    for (const rank of ranks) rank.engine.kvEvents?.close();
    throw e;
  }
  return {
    ranks,
    url: ranks[0].url,
    port: ranks[0].port,
    engine: ranks[0].engine,
    mooncakeBootstrap,
    close: async (deadlineMs = 5_000) => {
      await Promise.all(ranks.map((rank) => closeWithDeadline(rank.app, deadlineMs)));
      await mooncakeBootstrap?.close();
      for (const rank of ranks) rank.engine.kvEvents?.close();
    },
  };
}
