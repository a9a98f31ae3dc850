/**
 * Structured logging with pino: JSON lines by default (what log pipelines ingest), a pretty mode for terminals.
 * Request-scoped loggers carry `reqId` (the x-request-id), so one request can be followed across the EPP, the sidecar
 * and the model servers.
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type LoggerOptions } from 'pino';
import { opt } from './config/index.js';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The logging flags every command has. */
export const loggingOptions = {
  logLevel: opt.oneOf(LOG_LEVELS, { default: 'info', description: 'Log level.' }),
  logFormat: opt.oneOf(['json', 'pretty'] as const, {
    default: 'json',
    description: 'Log format: JSON lines, or human-readable lines for a terminal.',
  }),
};

export interface LoggerSettings {
  level: LogLevel;
  format?: 'json' | 'pretty';
  /** Component name, added to every line as `component`. */
  component: string;
  /** Where lines go; stdout by default. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(settings: LoggerSettings): Logger {
  const options: LoggerOptions = {
    level: settings.level,
    base: { component: settings.component },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  if (settings.format === 'pretty') {
    // Loaded only when asked for: the formatter and its dependencies cost memory a JSON-logging server never needs.
    const { PinoPretty } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    const stream = PinoPretty({ sync: true, colorize: process.stdout.isTTY === true, destination: settings.destination ?? 1 });
    return pino(options, stream);
  }
  // Synchronous writes to stdout (as console.log's to a pipe): pino's default asynchronous stream flushes at exit in a
  // loop that never ends once the reader is gone (EPIPE), so a component whose supervisor died could never exit.
  return pino(options, settings.destination ?? pino.destination({ dest: 1, sync: true }));
}

/** A logger that drops everything; the default for servers started from tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
