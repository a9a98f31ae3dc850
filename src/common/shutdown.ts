/**
 * Graceful shutdown: on SIGTERM or SIGINT stop accepting, let in-flight requests finish up to a deadline, then exit 0.
 * Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds; a second signal exits at once.
 */
import type { Logger } from 'pino';
import { opt } from './config/index.js';

export const shutdownOptions = {
  shutdownTimeout: opt.duration({
    default: 30_000,
    description: 'On SIGTERM/SIGINT, how long in-flight requests may take to finish before their connections are closed.',
  }),
};

export interface ShutdownHandlerSettings {
  logger: Logger;
  deadlineMs: number;
  /** Stops every server; must resolve by the deadline (it is given the deadline to enforce). */
  stop: (deadlineMs: number) => Promise<void>;
  exit?: (code: number) => void;
}

/** Installs signal handlers; returns a function that removes them. */
export function handleShutdownSignals(s: ShutdownHandlerSettings): () => void {
  const exit = s.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      s.logger.warn({ signal }, 'second signal during shutdown, exiting now');
      exit(1);
      return;
    }
    stopping = true;
    s.logger.info({ signal, deadlineMs: s.deadlineMs }, 'shutting down: draining in-flight requests');
    // A stop that overruns its own deadline must not keep the process alive.
    const backstop = setTimeout(() => {
      s.logger.error('shutdown overran its deadline, exiting');
      exit(0);
    }, s.deadlineMs + 5_000);
    backstop.unref();
    s.stop(s.deadlineMs).then(
      () => {
        s.logger.info('shutdown complete');
        exit(0);
      },
      (err: unknown) => {
        s.logger.error({ err }, 'error during shutdown');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}
