/**
 * Runs a long-lived command: loads its options (flag > file > env > default), creates the logger, starts the
 * component, and drains it on SIGTERM/SIGINT, or when the process that supervises it is gone (see parent-watch.ts).
 * Config errors are printed with the flag and value at fault, exit code 2.
 */
import { ConfigError, HelpRequested, loadOptions, type CommandDefinition, type OptionsSpec, type OptionValues } from './config/index.js';
import { createLogger, type LogLevel, type Logger } from './logging.js';
import { watchParent } from './parent-watch.js';
import { handleShutdownSignals } from './shutdown.js';
import { packageVersion } from './version.js';

export interface RunningComponent {
  stop(deadlineMs: number): Promise<void>;
  /** Stops at once (a second signal): e.g. kills child processes, so that none outlives this one. */
  kill?(): Promise<void>;
  /** Resolves with an exit code when the component ends on its own (e.g. a part it cannot run without exited). */
  ended?: Promise<number>;
}

type BaseValues = { logLevel: LogLevel; logFormat: 'json' | 'pretty'; shutdownTimeout: number; watchParentInterval?: number };

export type CommandStarter<S extends OptionsSpec> = (values: OptionValues<S>, logger: Logger) => Promise<RunningComponent>;

export interface CommandModule {
  definition: CommandDefinition<OptionsSpec>;
  run(argv: readonly string[]): Promise<number>;
}

/** Parses options or prints help/errors; returns undefined when the process should exit with the given code. */
export function parseCommandOptions<S extends OptionsSpec>(
  def: CommandDefinition<S>,
  argv: readonly string[],
): { values: OptionValues<S> } | { exitCode: number } {
  if (argv.includes('--version')) {
    process.stdout.write(`pd-router ${packageVersion()}\n`);
    return { exitCode: 0 };
  }
  try {
    return { values: loadOptions(def, { argv }).values };
  } catch (e) {
    if (e instanceof HelpRequested) {
      process.stdout.write(e.helpText);
      return { exitCode: 0 };
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`pd-router ${def.name}: ${e.message}\n`);
      return { exitCode: 2 };
    }
    throw e;
  }
}

export function defineCommand<S extends OptionsSpec>(def: CommandDefinition<S>, start: CommandStarter<S>): CommandModule {
  return {
    definition: def as unknown as CommandDefinition<OptionsSpec>,
    async run(argv) {
      const parentAtStart = process.ppid;
      const parsed = parseCommandOptions(def, argv);
      if ('exitCode' in parsed) return parsed.exitCode;
      const values = parsed.values as OptionValues<S> & BaseValues;
      const logger = createLogger({ level: values.logLevel, format: values.logFormat, component: def.name });
      let running: RunningComponent;
      try {
        running = await start(values, logger);
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`pd-router ${def.name}: ${e.message}\n`);
          return 2;
        }
        logger.fatal({ err: e }, `pd-router ${def.name} failed to start`);
        return 1;
      }
      const shutdown = handleShutdownSignals({ logger, deadlineMs: values.shutdownTimeout, stop: (d) => running.stop(d), kill: running.kill && (() => running.kill!()) });
      // Started by a supervisor with an IPC channel (pd-router dev): its exit, even by SIGKILL, stops this process.
      // Commands with --watch-parent-interval also stop when their parent pid changes (npm or a shell killed).
      const parent = watchParent(values.watchParentInterval ?? 0, (how) => shutdown.shutdown(how), parentAtStart);
      void running.ended?.then((code) => {
        parent.stop();
        shutdown.remove();
        process.exit(code);
      });
      return -1; // keep running
    },
  };
}
