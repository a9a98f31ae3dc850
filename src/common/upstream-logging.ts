/**
 * Upstream logging flags mapped onto pino's level and format.
 *
 * llm-d's EPP and sidecar log through logr on zap (controller-runtime's zap flags, plus `--v` on the EPP); the
 * simulator through klog. Verbosity is logr's: a message logged at V(n) is written when n <= the verbosity, and GAIE
 * names the levels DEFAULT=2, VERBOSE=3, DEBUG=4, TRACE=5. pd-router has no levels between info and debug, so:
 *
 * | upstream                                   | pino level |
 * |--------------------------------------------|------------|
 * | `--v` 0..3, `--zap-log-level=info`         | info       |
 * | `--v 4`, `--zap-log-level=debug`           | debug      |
 * | `--v` >= 5, `--zap-log-level` N >= 5       | trace      |
 * | `--zap-log-level=error`                    | error      |
 * | `--zap-log-level=panic`                    | fatal      |
 * | simulator (klog) `-v` 1 / <= 0             | warn / error (its WARN is V(1), INFO V(2)) |
 *
 * `--zap-encoder json` is pino's JSON lines, `console` is `--log-format pretty`; `--zap-devel` is console (and, where
 * there is no `--v`, debug). `--zap-log-level` beats `--v`, as upstream (the EPP derives zap's level from `--v` only
 * when `--zap-log-level` is not given). A pd-router `--log-level`/`--log-format` beats both.
 */
import { opt, compat, type CompatEntry } from './config/index.js';
import type { LogLevel } from './logging.js';

/** logr/zap verbosity (`--v`, or a number given to `--zap-log-level`) as a pino level. */
export function verbosityToLevel(value: number): LogLevel {
  if (value >= 5) return 'trace';
  if (value >= 4) return 'debug';
  return 'info';
}

/** llm-d-inference-sim's klog verbosity: WARN=1, INFO=2, DEBUG=4, TRACE=5. */
export function klogVerbosityToLevel(value: number): LogLevel {
  if (value <= 0) return 'error';
  if (value === 1) return 'warn';
  return verbosityToLevel(value);
}

const ZAP_NAMED: Record<string, LogLevel> = { debug: 'debug', info: 'info', error: 'error', panic: 'fatal' };

/** controller-runtime's `--zap-log-level`: debug, info, error, panic, or an integer > 0 (a verbosity). */
export function zapLevelToLogLevel(zap: string): LogLevel {
  const named = ZAP_NAMED[zap.toLowerCase()];
  return named ?? verbosityToLevel(Number(zap));
}

const ZAP_TIME = /^(epoch|millis|nanos|iso8601|rfc3339|rfc3339nano)$/i;

/**
 * controller-runtime's zap flags (zap.Options.BindFlags), plus GAIE's `-v/--v` when `verbosity` is set. Entries are in
 * precedence order: a later one overrides an earlier one on the same pd-router option.
 */
export function zapLoggingFlags(releases: readonly string[], options: { verbosity: readonly string[] | false }): Record<string, CompatEntry> {
  const flags: Record<string, CompatEntry> = {
    'zap-devel': compat.mapsTo(
      releases,
      opt.bool({ default: false, description: 'zap development mode: console encoder' + (options.verbosity ? ' (the level still follows --v, as upstream).' : ', debug level.') }),
      options.verbosity ? '--log-format' : '--log-format, --log-level',
      (flag: boolean, set) => {
        set.set('logFormat', flag ? 'pretty' : 'json');
        if (!options.verbosity) set.set('logLevel', flag ? 'debug' : 'info');
      },
    ),
  };
  if (options.verbosity) {
    flags.v = compat.mapsTo(
      options.verbosity,
      opt.int({ default: 2, description: 'logr verbosity: 0-3 info, 4 debug, 5 and more trace.' }),
      '--log-level',
      (value: number, set) => set.set('logLevel', verbosityToLevel(value)),
      { shorthand: 'v' },
    );
  }
  flags['zap-log-level'] = compat.mapsTo(
    releases,
    opt.string({
      default: 'info',
      pattern: /^(debug|info|error|panic|[1-9]\d*)$/i,
      patternHint: 'one of debug, info, error, panic or an integer > 0',
      description: 'zap level: debug, info, error, panic (fatal), or a verbosity > 0 as --v.',
    }),
    '--log-level',
    (value: string, set) => set.set('logLevel', zapLevelToLogLevel(value)),
  );
  flags['zap-encoder'] = compat.mapsTo(
    releases,
    opt.string({ default: 'json', pattern: /^(json|console)$/i, patternHint: 'json or console', description: 'json: JSON lines; console: human-readable lines.' }),
    '--log-format',
    (value: string, set) => set.set('logFormat', value.toLowerCase() === 'console' ? 'pretty' : 'json'),
  );
  flags['zap-stacktrace-level'] = compat.ignored(
    releases,
    opt.string({ default: 'error', pattern: /^(info|error|panic)$/i, patternHint: 'one of info, error, panic', description: 'zap level at which stack traces are added.' }),
    'pino writes the stack of every error it logs, at any level; there is no separate stack-trace threshold.',
  );
  flags['zap-time-encoding'] = compat.ignored(
    releases,
    opt.string({ default: 'iso8601', pattern: ZAP_TIME, patternHint: 'one of epoch, millis, nanos, iso8601, rfc3339, rfc3339nano', description: 'zap time format.' }),
    'pd-router writes "time" as ISO-8601/RFC 3339 UTC with milliseconds; epoch, millis and nanos are not offered.',
    { harmless: (value: string) => /^(iso8601|rfc3339|rfc3339nano)$/i.test(value) },
  );
  return flags;
}

/** klog's flags (klog.InitFlags), which llm-d-inference-sim adds to its own; `-v` maps onto the level. */
export function klogFlags(releases: readonly string[]): Record<string, CompatEntry> {
  const toStdout = 'pd-router logs JSON lines (or --log-format pretty) to stdout, never to files.';
  const ignoredBool = (description: string, reason: string, harmless: (flag: boolean) => boolean) =>
    compat.ignored(releases, opt.bool({ default: false, description }), reason, { harmless });
  const ignoredString = (description: string, reason: string) => compat.ignored(releases, opt.string({ default: '', description }), reason, { harmless: (value: string) => value === '' });
  return {
    v: compat.mapsTo(
      releases,
      opt.int({ default: 2, description: 'klog verbosity: <=0 error, 1 warn, 2-3 info, 4 debug, 5 and more trace.' }),
      '--log-level',
      (value: number, set) => set.set('logLevel', klogVerbosityToLevel(value)),
      { shorthand: 'v' },
    ),
    vmodule: ignoredString('Per-file verbosity (pattern=N,...).', 'pd-router has one level per process (--log-level).'),
    logtostderr: ignoredBool('Log to standard error instead of files (default true).', toStdout, () => true),
    alsologtostderr: ignoredBool('Log to standard error as well as files.', toStdout, (flag) => !flag),
    log_dir: ignoredString('Directory for log files.', toStdout),
    log_file: ignoredString('Log file.', toStdout),
    log_file_max_size: compat.ignored(releases, opt.int({ default: 1800, min: 0, description: 'Log file size limit in MB.' }), toStdout, { harmless: () => true }),
    legacy_stderr_threshold_behavior: ignoredBool('klog stderr threshold compatibility switch.', toStdout, () => true),
    add_dir_header: ignoredBool('Add the file directory to log headers.', 'pd-router lines are JSON without source locations.', (flag) => !flag),
    skip_headers: ignoredBool('Leave out log headers.', 'pd-router lines are JSON; they have no text header.', () => true),
    skip_log_headers: ignoredBool('Leave out headers in log files.', toStdout, () => true),
    one_output: ignoredBool('Write each message to its own severity file only.', toStdout, () => true),
    stderrthreshold: compat.ignored(releases, opt.string({ default: '', description: 'Severity written to stderr as well as files.' }), toStdout, { harmless: () => true }),
    alsologtostderrthreshold: compat.ignored(releases, opt.string({ default: '', description: 'Severity written to stderr with -alsologtostderr.' }), toStdout, { harmless: () => true }),
    log_backtrace_at: ignoredString('Emit a stack trace when logging hits file:N.', 'pd-router writes the stack of every error it logs; there are no source-line triggers.'),
  };
}
