/**
 * Runs a long-lived command: loads its options (flag > file > env > default), creates the logger, starts the
 * component, and drains it on SIGTERM/SIGINT, or when the process that supervises it is gone (see parent-watch.ts).
 * Config errors are printed with the flag and value at fault, exit code 2.
 */
import { ConfigError, HelpRequested, loadOptions, programName, type CommandDefinition, type CompatWarning, type OptionsSpec, type OptionValues } from './config/index.js';
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
  /**
   * Runs the command with its flags. `program` is how it was invoked (`pd-router epp`, the default, or the
   * per-component binary `pd-router-epp`), for --help and messages. Resolves to the exit code, or -1 while serving.
   */
  run(argv: readonly string[], program?: string): Promise<number>;
}

/** Parses options or prints help/errors; returns the exit code when the process should stop there. */
export function parseCommandOptions<S extends OptionsSpec>(
  def: CommandDefinition<S>,
  argv: readonly string[],
  program?: string,
): { values: OptionValues<S>; warnings: CompatWarning[]; upstreamApplied: Array<{ name: string; mapsTo: string }> } | { exitCode: number } {
  if (argv.includes('--version')) {
    process.stdout.write(`pd-router ${packageVersion()}\n`);
    return { exitCode: 0 };
  }
  try {
    const loaded = loadOptions(def, { argv, program });
    return { values: loaded.values, warnings: loaded.warnings, upstreamApplied: loaded.upstreamApplied };
  } catch (e) {
    if (e instanceof HelpRequested) {
      process.stdout.write(e.helpText);
      return { exitCode: 0 };
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`${programName(def, program)}: ${e.message}\n`);
      return { exitCode: 2 };
    }
    throw e;
  }
}

/**
 * One warning per upstream flag or variable whose value pd-router cannot honour (its feature is missing), so an
 * operator who swapped the image sees what their manifest asked for and does not get.
 */
export function logCompatWarnings(logger: Logger, warnings: readonly CompatWarning[]): void {
  for (const w of warnings) {
    logger.warn({ upstreamFlag: w.name, value: w.value, source: w.source }, `${w.name} is accepted for llm-d compatibility but ignored: ${w.reason}`);
  }
}

export function defineCommand<S extends OptionsSpec>(def: CommandDefinition<S>, start: CommandStarter<S>): CommandModule {
  return {
    definition: def as unknown as CommandDefinition<OptionsSpec>,
    async run(argv, program) {
      const parsed = parseCommandOptions(def, argv, program);
      const parentAtStart = process.ppid;
      if ('exitCode' in parsed) return parsed.exitCode;
      const values = parsed.values as OptionValues<S> & BaseValues;
      const logger = createLogger({ level: values.logLevel, format: values.logFormat, component: def.name });
      logCompatWarnings(logger, parsed.warnings);
      if (parsed.upstreamApplied.length > 0) logger.debug({ upstreamFlags: parsed.upstreamApplied }, 'upstream flags applied');
      logger.debug({ options: values }, 'effective options');
      let running: RunningComponent;
      try {
        running = await start(values, logger);
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`${programName(def, program)}: ${e.message}\n`);
          return 2;
        }
        logger.fatal({ err: e }, `${programName(def, program)} failed to start`);
        return 1;
      }
      const shutdown = handleShutdownSignals({ logger, deadlineMs: values.shutdownTimeout, stop: (delta) => running.stop(delta), kill: running.kill && (() => running.kill!()) });
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
