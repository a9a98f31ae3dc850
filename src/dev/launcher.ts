/**
 * Starts pd-router components for the local stack, as child processes (the default: each component has its own event
 * loop and both cores are used, as in a real deployment) or in this process (quicker, for tests). Either way the
 * caller gets the same handle: URL, ports, and a way to stop or kill it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toArgs, type Logger } from '../common/index.js';
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

const READY = /"msg":"(?:simulator|sidecar|epp|gateway) listening"/;

function childComponent(name: string, command: string, args: string[], logger: Logger, timeoutMs = 30_000): Promise<Component> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, command, ...args, '--log-level=info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '';
    let ready = false;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} (pd-router ${command}) did not start within ${timeoutMs}ms:\n${buffered}`));
    }, timeoutMs);
    const onLine = (line: string) => {
      if (!line.trim()) return;
      if (!ready && READY.test(line)) {
        ready = true;
        clearTimeout(timer);
        const info = JSON.parse(line) as Record<string, unknown>;
        const ports: Record<string, number> = {};
        for (const [k, v] of Object.entries(info)) if (/port$/i.test(k) && typeof v === 'number') ports[k] = v;
        resolve({
          name,
          url: String(info.url ?? `127.0.0.1:${ports.grpcPort}`),
          ports,
          pid: child.pid,
          exited,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
          },
          kill: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
            await exited;
          },
        });
        return;
      }
      // Children log JSON lines; pass on warnings and errors, tagged with the component.
      try {
        const rec = JSON.parse(line) as { level?: string; msg?: string };
        if (rec.level === 'warn' || rec.level === 'error' || rec.level === 'fatal') logger[rec.level === 'warn' ? 'warn' : 'error']({ component: name, ...rec }, rec.msg ?? '');
      } catch {
        logger.info({ component: name }, line);
      }
    };
    const splitter = () => {
      let rest = '';
      return (d: Buffer) => {
        const text = rest + d.toString();
        const lines = text.split('\n');
        rest = lines.pop() ?? '';
        if (!ready) buffered = (buffered + text).slice(-20_000);
        for (const l of lines) onLine(l);
      };
    };
    child.stdout!.on('data', splitter());
    child.stderr!.on('data', splitter());
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`${name} (pd-router ${command}) exited with ${code ?? signal} before it was ready:\n${buffered}`));
    });
  });
}

function inProcess(name: string, url: string, ports: Record<string, number>, close: (d: number) => Promise<void>): Component {
  let done!: () => void;
  const exited = new Promise<void>((r) => (done = r));
  let closing: Promise<void> | undefined;
  const stop = (d: number) => (closing ??= close(d).finally(done));
  return { name, url, ports, exited, stop: (d = 5_000) => stop(d), kill: () => stop(0) };
}

export class Launcher {
  constructor(
    readonly mode: LaunchMode,
    private readonly logger: Logger,
  ) {}

  async sim(name: string, c: SimConfig): Promise<Component> {
    if (this.mode === 'processes') return childComponent(name, 'sim', toArgs(simOptions, c), this.logger);
    const h = await startSimulator(c, this.logger.child({ component: name }));
    return inProcess(name, h.url, { port: h.port }, (d) => h.close(d));
  }

  async sidecar(name: string, c: SidecarConfig): Promise<Component> {
    if (this.mode === 'processes') return childComponent(name, 'sidecar', toArgs(sidecarOptions, c), this.logger);
    const h = await startSidecar(c, this.logger.child({ component: name }));
    return inProcess(name, h.url, { port: h.ports[0]! }, (d) => h.close(d));
  }

  async epp(name: string, c: EppConfig): Promise<Component> {
    if (this.mode === 'processes') return childComponent(name, 'epp', toArgs(eppOptions, c), this.logger);
    const h = await startEpp(c, { logger: this.logger.child({ component: name }) });
    return inProcess(name, `127.0.0.1:${h.grpcPort}`, { grpcPort: h.grpcPort, healthPort: h.healthPort, metricsPort: h.metricsPort }, (d) => h.close(d));
  }

  async gateway(name: string, c: GatewayConfig): Promise<Component> {
    if (this.mode === 'processes') return childComponent(name, 'gateway', toArgs(gatewayOptions, c), this.logger);
    const h = await startGateway(c, this.logger.child({ component: name }));
    return inProcess(name, h.url, { port: h.port }, (d) => h.close(d));
  }
}
