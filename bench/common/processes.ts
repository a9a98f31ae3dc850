/**
 * Benchmark plumbing: starting pd-router commands as child processes (so the component under test has its own event
 * loop, as in production), waiting until they listen, reading their peak memory, and stopping them.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/src/cli.js, found from dist/bench/common/. */
export const CLI = path.resolve(here, '../../src/cli.js');

export interface ChildComponent {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
  /** Peak resident set size in bytes (Linux VmHWM), or undefined where /proc is missing. */
  peakRssBytes(): number | undefined;
  /** CPU time used so far (user + system), in seconds. */
  cpuSeconds(): number | undefined;
}

/** Pins the current process to the given CPU list (taskset), if available. */
export function pinSelf(cpus: string): boolean {
  if (!hasTaskset()) return false;
  // -a: every thread of this process (libuv's pool, V8's workers), not only the main one.
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
  return r.status === 0;
}

/** Starts `pd-router <args>` and resolves with the first URL matching `ready` in its output (JSON logs). */
export interface StartOptions {
  timeoutMs?: number;
  /** Node flags, e.g. a heap cap. */
  nodeArgs?: string[];
  /** CPU list for taskset (e.g. "1"), to give a component a core of its own; ignored where taskset is missing. */
  cpus?: string;
  /** A script to run instead of pd-router's CLI (e.g. a benchmark's reference program); `args` are its arguments. */
  script?: string;
}

export function hasTaskset(): boolean {
  try {
    return existsSync('/usr/bin/taskset') || existsSync('/bin/taskset');
  } catch {
    return false;
  }
}

export function startComponent(args: string[], ready: RegExp, opts: StartOptions = {}): Promise<ChildComponent> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const nodeCmd = [process.execPath, ...(opts.nodeArgs ?? []), opts.script ?? CLI, ...args];
    const [cmd, ...cmdArgs] = opts.cpus && hasTaskset() ? ['taskset', '-c', opts.cpus, ...nodeCmd] : nodeCmd;
    const child = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pd-router ${args[0]} not ready in ${timeoutMs}ms:\n${out}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        child.stderr.off('data', onData);
        child.stdout.resume();
        child.stderr.resume();
        resolve({
          child,
          url: m[1],
          stop: () =>
            new Promise<void>((res) => {
              if (child.exitCode !== null) {
                res();
                return;
              }
              const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
              child.once('exit', () => {
                clearTimeout(kill);
                res();
              });
              child.kill('SIGTERM');
            }),
          cpuSeconds: () => {
            try {
              // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second on Linux).
              const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
              return (Number(fields[11]) + Number(fields[12])) / 100;
            } catch {
              return undefined;
            }
          },
          peakRssBytes: () => {
            try {
              const m2 = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
              return m2 ? Number(m2[1]) * 1024 : undefined;
            } catch {
              return undefined;
            }
          },
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`pd-router ${args[0]} exited with ${code}:\n${out}`));
    });
  });
}

export function percentile(sorted: readonly number[], quantile: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((quantile / 100) * sorted.length) - 1));
  return sorted[i];
}

export function fmt(count: number, digits = 2): string {
  return Number.isFinite(count) ? count.toFixed(digits) : 'n/a';
}

/** A Markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}
