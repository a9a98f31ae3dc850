/**
 * What every request the sidecar serves has, whichever path it takes: the data-parallel rank that received it, a stop
 * signal tied to the client connection, its count in the metrics once it ends, and a logger made on first use.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Cancellation, type Tracing } from '../common/index.js';
import type { Outcome, SidecarMetrics } from './metrics.js';
import type { SidecarConfig } from './options.js';
import type { TargetGuard } from './ssrf-guard.js';
import type { UpstreamAgents } from './upstream.js';

/** One data-parallel rank's server: its decoder and what its requests share with the other ranks. */
export interface SidecarRank {
  rank: number;
  config: SidecarConfig;
  /** The port this rank listens on, once it does. */
  port?: number;
  /** http(s)://host:port of this rank's vLLM. */
  decoderOrigin: string;
  /** Rank 0 only: `POD_IP:port+r` -> rank r's decoder origin (deprecated x-data-parallel-host-port). */
  dataParallelRoutes?: ReadonlyMap<string, string>;
  agents: UpstreamAgents;
  metrics: SidecarMetrics;
  guard: TargetGuard;
  logger: Logger;
  /** OpenTelemetry tracing (--tracing); absent or off: no span is built. */
  tracing?: Tracing;
  /** The deprecation of x-data-parallel-host-port has been logged (once per rank). */
  warnedDataParallelHeader?: boolean;
}

/** A request being served: its answer, its stop signal and the call that counts it once it ends. */
export interface Tracked {
  res: ServerResponse;
  /** Stopped when the client disconnects before its answer is complete. */
  signal: Cancellation;
  start: number;
  done: (path: string, outcome: Outcome) => void;
}

/**
 * The request's logger, a child carrying its id, made on first use: most requests log nothing, and a pino child per
 * request is a cost the hot path does not need.
 */
export class RequestLog {
  private child?: Logger;
  readonly debug: boolean;

  constructor(
    private readonly base: Logger,
    readonly requestId: string,
  ) {
    this.debug = base.isLevelEnabled('debug');
  }

  get logger(): Logger {
    return (this.child ??= this.base.child({ reqId: this.requestId }));
  }
}

/**
 * Ties a stop signal to the client connection and counts the request once it ends. Only inference requests count as
 * requests (in flight, by outcome, and in the latency histograms); passthrough traffic (the EPP scrapes vLLM's
 * /metrics through the sidecar every 50 ms) has its own counter, or it would outnumber the requests it measures.
 */
export function track(
  rank: SidecarRank,
  res: ServerResponse,
  connector: string,
  log: RequestLog,
  kind: 'inference' | 'passthrough',
): Tracked {
  const signal = new Cancellation();
  res.once('close', () => {
    if (!res.writableFinished) signal.abort();
  });
  const inference = kind === 'inference';
  if (inference) rank.metrics.inflightSeries.inc();
  let counted = false;
  const start = performance.now();
  return {
    res,
    signal,
    start,
    done: (path, outcome) => {
      if (counted) return;
      counted = true;
      if (inference) {
        rank.metrics.inflightSeries.dec();
        rank.metrics.requests.inc({ path, connector, outcome });
      } else rank.metrics.passthroughRequests.inc({ outcome });
      if (log.debug) log.logger.debug({ path, outcome, ms: Math.round(performance.now() - start) }, 'request done');
    },
  };
}
