/** Test helpers: bounded polling, HTTP calls over loopback, SSE parsing, spawning the compiled CLI. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/**
 * The repository root: the nearest directory above this file with a package.json. Found rather than fixed because this
 * file also runs compiled, as dist/test/helpers.js, when a benchmark (bench/peers) imports the interop harness.
 */
export const ROOT = (() => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = path.dirname(here); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(here, '..');
  }
})();
export const CLI = path.join(ROOT, 'dist/src/cli.js');

/** The shortest any wait of a test may be: CI is a shared 2-core machine under load, where starting Node takes seconds. */
export const WAIT_FLOOR_MS = 30_000;

/** The compiled per-component binary (`pd-router-epp` ...), the entrypoint of that component's image. */
export function componentBinary(component: string): string {
  return path.join(ROOT, `dist/src/bin/pd-router-${component}.js`);
}

/** Polls a condition until it holds, or fails after `timeoutMs` (at least WAIT_FLOOR_MS). Used instead of sleeps. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<void> {
  // Bounds are upper bounds for a loaded 2-core machine, not expectations: never less than 30 s.
  timeoutMs = Math.max(timeoutMs, WAIT_FLOOR_MS);
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export async function postJson<T = any>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<JsonResponse<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

export async function getJson<T = any>(url: string, timeoutMs = 60_000): Promise<JsonResponse<T>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

export interface SseFrame {
  event?: string;
  data: string;
}

/** Splits an SSE body into frames (blank-line separated), keeping event names. */
export function parseSse(text: string): SseFrame[] {
  return text
    .split('\n\n')
    .filter((field) => field.trim().length > 0)
    .map((frame) => {
      const out: SseFrame = { data: '' };
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) out.event = line.slice(7);
        else if (line.startsWith('data: ')) out.data += line.slice(6);
      }
      return out;
    });
}

/** JSON objects of the data frames, skipping [DONE]. */
export function sseJson(text: string): any[] {
  return parseSse(text)
    .filter((sseFrame) => sseFrame.data !== '[DONE]')
    .map((sseFrame) => JSON.parse(sseFrame.data));
}

/** Reads one metric sample from Prometheus text; labels must all match. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([^\s{]+)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[pair[1]] = pair[2]!;
    if (Object.entries(labels).every(([k, value]) => got[k] === value)) return Number(m[4]);
  }
  return undefined;
}

let metricsBearerToken: string | undefined;
/**
 * A bearer token metricsText sends from now on (the interop suite's API server admin: an EPP that talks to Kubernetes
 * authenticates /metrics, as upstream's does). Other metrics endpoints ignore it.
 */
export function setMetricsBearerToken(token: string | undefined): void {
  metricsBearerToken = token;
}

export async function metricsText(baseUrl: string, path = '/metrics'): Promise<string> {
  const headers: Record<string, string> = metricsBearerToken ? { authorization: `Bearer ${metricsBearerToken}` } : {};
  const res = await fetch(baseUrl + path, { headers, signal: AbortSignal.timeout(60_000) });
  return res.text();
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr as they arrived, the last `maxOutput` characters. */
  output: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to stdin, which is then closed (stdin is ignored without it). */
  input?: string;
  timeoutMs?: number;
  /** Characters of output kept (default 1 MB); older ones are dropped. */
  maxOutput?: number;
}

/** Runs a program to completion, bounded by `timeoutMs` (default and least 60 s): killed and rejected beyond it. */
export function runProcess(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = Math.max(opts.timeoutMs ?? 0, 60_000);
  const max = opts.maxOutput ?? 1_000_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let output = '';
    const keep = (text: string, chunk: Buffer) => {
      const t = chunk.toString();
      output = (output + t).slice(-max);
      return (text + t).slice(-max);
    };
    child.stdout!.on('data', (chunk: Buffer) => (stdout = keep(stdout, chunk)));
    child.stderr!.on('data', (chunk: Buffer) => (stderr = keep(stderr, chunk)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${path.basename(command)} ${args.join(' ')} did not exit within ${timeoutMs}ms; output:\n${output.slice(-4000)}`,
        ),
      );
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close', not 'exit': the output streams may still hold data when the process exits.
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, output });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Runs the compiled CLI to completion (bounded). */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return runProcess(process.execPath, [CLI, ...args], opts);
}

/** Starts a long-running CLI command (or `opts.script`, e.g. a per-component binary) and waits until its output matches `ready`. */
export async function startCli(
  args: string[],
  ready: RegExp,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; script?: string } = {},
): Promise<{
  child: ChildProcess;
  output: () => string;
  match: RegExpMatchArray;
  exited: Promise<number | null>;
  stop: () => Promise<number | null>;
}> {
  const child = spawn(process.execPath, [opts.script ?? CLI, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const readyMs = Math.max(opts.timeoutMs ?? 0, 60_000);
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** Sends SIGTERM once (unless the process was already signalled) and waits for the exit, SIGKILL after 60s. */
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && !child.killed) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pd-router ${args.join(' ')} not ready within ${readyMs}ms; output:\n${out}`));
    }, readyMs);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`pd-router ${args.join(' ')} exited with ${code} before ready; output:\n${out}`));
    });
  });
  return { child, output: () => out, match, exited, stop };
}

/** A base port p such that p..p+n-1 are free on 127.0.0.1 right now (for components that listen on port+rank). */
export async function freePortRange(count: number): Promise<number> {
  const net = await import('node:net');
  const tryBind = (port: number) =>
    new Promise<import('node:net').Server | undefined>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(undefined));
      s.listen(port, '127.0.0.1', () => resolve(s));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const held: import('node:net').Server[] = [];
    for (let i = 0; i < count; i++) {
      const s = await tryBind(base + i);
      if (!s) break;
      held.push(s);
    }
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
    if (held.length === count) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/** The requests a pd-router simulator at `url` recorded (GET /admin/requests), oldest first. */
export async function recordedRequests(url: string): Promise<Array<Record<string, any>>> {
  return ((await getJson(`${url}/admin/requests`)).body.requests ?? []) as Array<Record<string, any>>;
}

/**
 * Sends `count` completions for `model` straight to a simulator at `url` and leaves them in flight (running or waiting
 * in its queue) until the returned controller aborts them: how the interop tests give the EPPs a queue to scrape.
 */
export function holdCompletions(url: string, model: string, count: number): AbortController {
  const controller = new AbortController();
  for (let i = 0; i < count; i++)
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: `load ${i}`, max_tokens: 1 }),
      signal: controller.signal,
    }).catch(() => undefined);
  return controller;
}
