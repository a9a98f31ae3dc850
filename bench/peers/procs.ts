/**
 * The processes bench/peers starts: each pinned to a CPU list with taskset (when present), its output kept (bounded)
 * for failure messages, paused and resumed between rounds (SIGSTOP / SIGCONT, so a component that is not under test
 * uses no CPU), measured from /proc (peak RSS from VmHWM, CPU time from stat), and always stopped.
 *
 * Cleanup: every process is registered on start. stopAll() stops them (SIGCONT, SIGTERM, SIGKILL after a grace);
 * SIGINT, SIGTERM and SIGHUP run it before exiting, and a synchronous SIGKILL of whatever is left runs on 'exit'. The
 * children stay in the bench's own process group, so killing that group (`kill -- -<pgid>`, as the smoke test does
 * when it times out) ends them all even if the bench itself is killed with SIGKILL. Only processes started here are
 * ever signalled, by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { hasTaskset } from '../common/processes.js';

const live = new Set<Proc>();
/** Every process started, for writeLogs(). */
const started: Proc[] = [];
let cleanupInstalled = false;
const extraCleanups: Array<() => Promise<void>> = [];

export interface SpawnOptions {
  /** CPU list for taskset, e.g. "1"; ignored without taskset. */
  cpus?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Output kept for failure messages (default 256 KiB). */
  maxOutput?: number;
}

export class Proc {
  readonly child: ChildProcess;
  private out = '';
  private stdoutText = '';
  private exitInfo: string | undefined;
  private paused = false;
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: SpawnOptions = {},
  ) {
    const [cmd, ...cmdArgs] =
      opts.cpus && hasTaskset() ? ['taskset', '-c', opts.cpus, command, ...args] : [command, ...args];
    this.child = spawn(cmd, cmdArgs, {
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this);
    const max = opts.maxOutput ?? 256 * 1024;
    const keep = (chunk: Buffer) => {
      this.out += chunk.toString();
      if (this.out.length > max * 2) this.out = this.out.slice(-max);
    };
    this.child.stdout!.on('data', (chunk: Buffer) => {
      keep(chunk);
      this.stdoutText += chunk.toString();
      if (this.stdoutText.length > max * 2) this.stdoutText = this.stdoutText.slice(-max);
    });
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error) => {
        this.exitInfo ??= `failed to start: ${error.message}`;
        live.delete(this);
        resolve();
      });
      this.child.once('exit', (code, signal) => {
        this.exitInfo = signal ? `killed by ${signal}` : `exited with ${code}`;
        live.delete(this);
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  output(): string {
    return this.out;
  }

  /** Standard output alone (bounded as output()). */
  stdout(): string {
    return this.stdoutText;
  }

  tail(chars = 4000): string {
    return this.out.slice(-chars);
  }

  /** Why it is not running, with its log tail. */
  describeExit(): string {
    return `${this.name} ${this.exitInfo ?? 'is running'}; its log:\n${this.tail()}`;
  }

  /** Resolves with the first match of `re` in the output; rejects on exit or after `timeoutMs`. */
  async waitForOutput(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.out.match(re);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} ended before printing ${re}: ${this.describeExit()}`);
      if (Date.now() > deadline)
        throw new Error(`${this.name}: ${re} not printed within ${timeoutMs} ms; its log:\n${this.tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Polls `check` (a readiness probe of our own process) until it passes; rejects on exit or after `timeoutMs`. */
  async waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`${this.name} ended before ${what}: ${this.describeExit()}`);
      if (await check().catch(() => false)) return;
      if (Date.now() > deadline)
        throw new Error(`${this.name}: ${what} not reached within ${timeoutMs} ms; its log:\n${this.tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** SIGSTOP: the process keeps its memory and sockets but uses no CPU until resume(). */
  pause(): void {
    if (!this.running || this.paused) return;
    this.child.kill('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.running || !this.paused) return;
    this.child.kill('SIGCONT');
    this.paused = false;
  }

  /** Peak resident set size in bytes (VmHWM), or undefined where /proc is missing. */
  peakRssBytes(): number | undefined {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  /** User + system CPU seconds so far (all threads), or undefined where /proc is missing. */
  cpuSeconds(): number | undefined {
    try {
      // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second on Linux).
      const fields = readFileSync(`/proc/${this.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return undefined;
    }
  }

  /** SIGCONT and SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGCONT');
    this.paused = false;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (a program that logs nothing when it listens). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function startProc(name: string, command: string, args: string[], opts: SpawnOptions = {}): Proc {
  installCleanup();
  const p = new Proc(name, command, args, opts);
  started.push(p);
  return p;
}

/** Writes the kept output of every long-running process started (load clients excepted) into `dir`, one file each. */
export function writeLogs(dir: string, skip: RegExp): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (const [i, p] of started.entries()) {
    if (skip.test(p.name)) continue;
    const file = path.join(dir, `${String(i).padStart(2, '0')}-${p.name.replace(/[^\w.-]+/g, '-')}.log`);
    writeFileSync(file, p.output());
    files.push(file);
  }
  return files;
}

/** Registers work to run on cleanup before the processes are stopped (e.g. stopping a control plane). */
export function onCleanup(fn: () => Promise<void>): void {
  installCleanup();
  extraCleanups.push(fn);
}

/** Stops every process still running (in parallel, each bounded by its grace), after the registered cleanups. */
export async function stopAll(graceMs = 10_000): Promise<void> {
  for (const fn of extraCleanups.splice(0).reverse()) await fn().catch(() => undefined);
  await Promise.all([...live].map((proc) => proc.stop(graceMs)));
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.once('exit', () => {
    for (const p of live) {
      p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench/peers: ${sig}, stopping every process it started\n`);
      // Bounded: a child that ignores SIGTERM is killed after 5 s, and the exit handler kills whatever is left.
      const hard = setTimeout(() => process.exit(130), 15_000);
      void stopAll(5_000).finally(() => {
        clearTimeout(hard);
        process.exit(130);
      });
    });
  }
}
