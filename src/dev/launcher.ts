/**
 * Starts pd-router components for the local stack, as child processes (the default: each component has its own event
 * loop and both cores are used, as in a real deployment) or in this process (quicker, for tests). Either way the
 * caller gets the same handle: URL, ports, and a way to stop or kill it.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toArgs, type Logger, type LogLevel } from '../common/index.js';
import { simOptions, startSimulator, type SimConfig } from '../sim/index.js';
import { sidecarOptions, startSidecar, type SidecarConfig } from '../sidecar/index.js';
import { eppOptions, startEpp, type EppConfig } from '../epp/index.js';
import { gatewayOptions, startGateway, type GatewayConfig } from '../gateway/index.js';

/** The compiled CLI: next to this file in dist/, or dist/src/cli.js when running from TypeScript sources (tests). */
function cliPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const sibling = path.resolve(here, '../cli.js');
  return existsSync(sibling) ? sibling : path.resolve(here, '../../dist/src/cli.js');
}

const CLI = cliPath();

export interface Component {
  name: string;
  /** Base URL (HTTP components) or host:port (the EPP's gRPC port). */
  url: string;
  ports: Record<string, number>;
  pid?: number;
  /** Graceful stop (SIGTERM / close with a drain deadline). */
  stop(deadlineMs?: number): Promise<void>;
  /** Abrupt stop, as a crash or an OOM kill would (SIGKILL / close without draining). */
  kill(): Promise<void>;
  /** Resolves when the component has stopped, for whatever reason. */
  exited: Promise<void>;
}

export type LaunchMode = 'processes' | 'in-process';

/** What child processes log, and where their lines go. */
export interface ChildLogSettings {
  /** Level the user asked for; children log at it (at least at info: their "listening" line says they are ready). */
  level: LogLevel;
  /** Print every child line at or above `level`, prefixed by the component; otherwise only warnings and errors. */
  show: boolean;
  format: 'json' | 'pretty';
  /** Where shown lines go (stdout). */
  out?: NodeJS.WritableStream;
}

export const DEFAULT_CHILD_LOGS: ChildLogSettings = { level: 'info', show: false, format: 'json' };

/** A child that ignores SIGTERM for this long past its drain deadline is killed. */
const KILL_GRACE_MS = 2_000;

const READY = /"msg":"(?:simulator|sidecar|epp|gateway) listening"/;

const LEVEL_VALUES: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

type LineFormatter = (line: string) => string;

function lineFormatter(format: 'json' | 'pretty'): LineFormatter {
  if (format === 'json') return (line) => line + '\n';
  // Loaded only when asked for, as in createLogger.
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  return prettyFactory({ colorize: process.stdout.isTTY === true, ignore: 'component' }) as LineFormatter;
}

interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  logger: Logger;
  logs: ChildLogSettings;
  shutdownTimeoutMs: number;
  timeoutMs?: number;
}

function childComponent(childSpec: ChildSpec): Promise<Component> {
  const { name, command, logger, logs } = childSpec;
  const timeoutMs = childSpec.timeoutMs ?? 30_000;
  const childLevel = LEVEL_VALUES[logs.level]! < LEVEL_VALUES.info! ? logs.level : 'info';
  const shownFrom = LEVEL_VALUES[logs.level]!;
  const format = logs.show ? lineFormatter(logs.format) : undefined;
  const out = logs.out ?? process.stdout;
  const prefix = `${name.padEnd(10)} | `;
  return new Promise((resolve, reject) => {
    // Its own process group, so a terminal's Ctrl-C reaches only the supervisor, which stops the stack front to back;
    // the IPC channel is how the child knows its supervisor is gone (even after a SIGKILL): it then stops itself.
    const child = spawn(process.execPath, [CLI, command, ...childSpec.args, `--log-level=${childLevel}`, `--shutdown-timeout=${childSpec.shutdownTimeoutMs}ms`], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      detached: true,
    });
    child.channel?.unref();
    let buffered = '';
    let ready = false;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const running = () => child.exitCode === null && child.signalCode === null;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} (pd-router ${command}) did not start within ${timeoutMs}ms:\n${buffered}`));
    }, timeoutMs);
    const show = (line: string, rec: { level?: string } | undefined) => {
      if (!format) return false;
      if (rec && (LEVEL_VALUES[rec.level ?? 'info'] ?? 0) < shownFrom) return true;
      const text = rec ? format(line) : line + '\n';
      out.write(text.replace(/\n(?=.)/g, `\n${' '.repeat(prefix.length)}`).replace(/^/, prefix));
      return true;
    };
    const onLine = (line: string) => {
      if (!line.trim()) return;
      let rec: { level?: string; msg?: string } | undefined;
      try {
        rec = JSON.parse(line) as { level?: string; msg?: string };
      } catch {
        rec = undefined;
      }
      if (!ready && READY.test(line)) {
        ready = true;
        clearTimeout(timer);
        const info = rec as Record<string, unknown>;
        const ports: Record<string, number> = {};
        for (const [k, v] of Object.entries(info)) if (/port$/i.test(k) && typeof v === 'number') ports[k] = v;
        resolve({
          name,
          url: String(info.url ?? `127.0.0.1:${ports.grpcPort}`),
          ports,
          pid: child.pid,
          exited,
          stop: async (deadlineMs = childSpec.shutdownTimeoutMs) => {
            if (!running()) return exited;
            child.kill('SIGTERM');
            const backstop = setTimeout(() => child.kill('SIGKILL'), Math.min(deadlineMs, childSpec.shutdownTimeoutMs) + KILL_GRACE_MS);
            await exited;
            clearTimeout(backstop);
          },
          kill: async () => {
            if (running()) child.kill('SIGKILL');
            await exited;
          },
        });
      }
      if (show(line, rec)) return;
      // Not shown in full: pass on warnings, errors and anything that is not a log line (a crash), tagged.
      if (!rec) logger.warn({ component: name }, line);
      else if (rec.level === 'warn' || rec.level === 'error' || rec.level === 'fatal') {
        const { level, time: _time, msg, component: _component, ...fields } = rec as Record<string, unknown>;
        logger[level === 'warn' ? 'warn' : 'error']({ ...fields, component: name }, String(msg ?? ''));
      }
    };
    const splitter = () => {
      let rest = '';
      return (chunk: Buffer) => {
        const text = rest + chunk.toString();
        const lines = text.split('\n');
        rest = lines.pop() ?? '';
        if (!ready) buffered = (buffered + text).slice(-20_000);
        for (const l of lines) onLine(l);
      };
    };
    child.stdout!.on('data', splitter());
    child.stderr!.on('data', splitter());
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${name} (pd-router ${command}) could not be started: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`${name} (pd-router ${command}) exited with ${code ?? signal} before it was ready:\n${buffered}`));
    });
  });
}

function inProcess(name: string, url: string, ports: Record<string, number>, close: (delta: number) => Promise<void>): Component {
  let done!: () => void;
  const exited = new Promise<void>((resolve) => (done = resolve));
  let closing: Promise<void> | undefined;
  const stop = (delta: number) => (closing ??= close(delta).finally(done));
  return { name, url, ports, exited, stop: (delta = 5_000) => stop(delta), kill: () => stop(0) };
}

export interface LauncherSettings {
  mode: LaunchMode;
  logger: Logger;
  /** Child processes only. */
  childLogs?: ChildLogSettings;
  /** Child processes' --shutdown-timeout (their drain deadline on SIGTERM). */
  shutdownTimeoutMs?: number;
}

export class Launcher {
  readonly mode: LaunchMode;
  private readonly logger: Logger;

  constructor(private readonly settings: LauncherSettings) {
    this.mode = settings.mode;
    this.logger = settings.logger;
  }

  private child(name: string, command: string, args: string[]): Promise<Component> {
    return childComponent({ name, command, args, logger: this.logger, logs: this.settings.childLogs ?? DEFAULT_CHILD_LOGS, shutdownTimeoutMs: this.settings.shutdownTimeoutMs ?? 5_000 });
  }

  async sim(name: string, optionValues: SimConfig): Promise<Component> {
    if (this.mode === 'processes') return this.child(name, 'sim', toArgs(simOptions, optionValues));
    const h = await startSimulator(optionValues, this.logger.child({ component: name }));
    return inProcess(name, h.url, { port: h.port }, (delta) => h.close(delta));
  }

  async sidecar(name: string, optionValues: SidecarConfig): Promise<Component> {
    if (this.mode === 'processes') return this.child(name, 'sidecar', toArgs(sidecarOptions, optionValues));
    const h = await startSidecar(optionValues, this.logger.child({ component: name }));
    return inProcess(name, h.url, { port: h.ports[0]! }, (delta) => h.close(delta));
  }

  async epp(name: string, optionValues: EppConfig): Promise<Component> {
    if (this.mode === 'processes') return this.child(name, 'epp', toArgs(eppOptions, optionValues));
    const h = await startEpp(optionValues, { logger: this.logger.child({ component: name }) });
    return inProcess(name, `127.0.0.1:${h.grpcPort}`, { grpcPort: h.grpcPort, healthPort: h.healthPort, metricsPort: h.metricsPort }, (delta) => h.close(delta));
  }

  async gateway(name: string, optionValues: GatewayConfig): Promise<Component> {
    if (this.mode === 'processes') return this.child(name, 'gateway', toArgs(gatewayOptions, optionValues));
    const h = await startGateway(optionValues, this.logger.child({ component: name }));
    return inProcess(name, h.url, { port: h.port }, (delta) => h.close(delta));
  }
}
