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

/**
 * A repeat of a signal this soon after the first is the same request, not a second one: a terminal's Ctrl-C reaches
 * every process of the foreground group, and npm (which `npm start` runs under) forwards it to its script once more.
 */
export const REPEATED_SIGNAL_WINDOW_MS = 2_000;

export interface ShutdownHandlerSettings {
  logger: Logger;
  deadlineMs: number;
  /** Stops every server; must resolve by the deadline (it is given the deadline to enforce). */
  stop: (deadlineMs: number) => Promise<void>;
  /** What a second signal does before exiting: stop at once (e.g. kill child processes, so none outlives us). */
  kill?: () => Promise<void>;
  exit?: (code: number) => void;
}

export interface ShutdownHandle {
  /** Starts the graceful stop for a reason other than a signal (e.g. the parent process is gone). */
  shutdown(reason: string): void;
  /** Removes the signal handlers. */
  remove(): void;
}

/** Installs signal handlers. */
export function handleShutdownSignals(settings: ShutdownHandlerSettings): ShutdownHandle {
  const exit = settings.exit ?? ((code: number) => process.exit(code));
  let stoppingSince: number | undefined;
  // Once a second signal has taken over, the graceful stop (which ends when the killed parts are gone) must not exit 0.
  let killing = false;
  const begin = (fields: Record<string, unknown>) => {
    stoppingSince = performance.now();
    settings.logger.info({ ...fields, deadlineMs: settings.deadlineMs }, 'shutting down: draining in-flight requests');
    // A stop that overruns its own deadline must not keep the process alive.
    const backstop = setTimeout(() => {
      settings.logger.error('shutdown overran its deadline, exiting');
      void (settings.kill?.() ?? Promise.resolve()).finally(() => exit(0));
    }, settings.deadlineMs + 5_000);
    backstop.unref();
    settings.stop(settings.deadlineMs).then(
      () => {
        if (killing) return;
        settings.logger.info('shutdown complete');
        exit(0);
      },
      (err: unknown) => {
        if (killing) return;
        settings.logger.error({ err }, 'error during shutdown');
        exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppingSince === undefined) return begin({ signal });
    if (performance.now() - stoppingSince < REPEATED_SIGNAL_WINDOW_MS) {
      settings.logger.debug({ signal }, 'signal repeated while shutting down; already stopping');
      return;
    }
    settings.logger.warn({ signal }, 'second signal during shutdown, exiting now');
    killing = true;
    void (settings.kill?.() ?? Promise.resolve()).finally(() => exit(1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    shutdown: (reason) => {
      if (stoppingSince === undefined) begin({ reason });
    },
    remove: () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}
