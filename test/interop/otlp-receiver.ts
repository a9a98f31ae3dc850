/**
 * A real OTLP/gRPC trace receiver for the tracing tests: test/interop/otlp-receiver/receiver.py (Python's
 * opentelemetry-proto and grpcio, pinned in requirements.txt), installed once into a venv under .cache/otlp-receiver
 * and started per test file. Without python3 (or when the install fails) the tests skip with the reason.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { runProcess } from '../helpers.js';
import type { Requirement } from './need.js';

const DIR = path.join(import.meta.dirname, 'otlp-receiver');
const ROOT = path.resolve(import.meta.dirname, '../..');
const VENV = path.join(ROOT, '.cache/otlp-receiver/venv');
const PYTHON = path.join(VENV, 'bin/python');
const INSTALL_TIMEOUT_MS = 300_000;

/** One span as the receiver printed it. */
export interface ReceivedSpan {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: number;
  endNs: number;
  status: number;
  attributes: Record<string, unknown>;
}

let installed: Promise<Requirement> | undefined;

/** The receiver's venv, installed (or confirmed, by the requirements' hash) once per process. */
export function needOtlpReceiver(): Promise<Requirement> {
  return (installed ??= install());
}

async function install(): Promise<Requirement> {
  const requirements = path.join(DIR, 'requirements.txt');
  const hash = createHash('sha256').update(readFileSync(requirements)).digest('hex');
  const marker = path.join(VENV, '.pd-router-requirements');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === hash) return { ok: true, artifacts: {} };
  const skip = (reason: string): Requirement => {
    process.stderr.write(`[interop] skipping tracing tests: ${reason}\n`);
    return { ok: false, reason };
  };
  const python = await runProcess('python3', ['--version'], { timeoutMs: 30_000 }).catch(() => undefined);
  if (!python || python.code !== 0) return skip('python3 is not installed (the OTLP receiver needs it)');
  mkdirSync(path.dirname(VENV), { recursive: true });
  const venv = await runProcess('python3', ['-m', 'venv', '--clear', VENV], { timeoutMs: 120_000 });
  if (venv.code !== 0) return skip(`python3 -m venv failed: ${venv.stderr.trim().split('\n').pop()}`);
  const pip = await runProcess(
    PYTHON,
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements],
    { timeoutMs: INSTALL_TIMEOUT_MS },
  );
  if (pip.code !== 0) return skip(`pip install of the OTLP receiver failed: ${pip.stderr.trim().split('\n').pop()}`);
  writeFileSync(marker, hash);
  return { ok: true, artifacts: {} };
}

/** A running receiver: its port and every span received so far. */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, Readable>,
    readonly port: number,
  ) {}

  static start(): Promise<OtlpReceiver> {
    const child = spawn(PYTHON, [path.join(DIR, 'receiver.py')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    return new Promise((resolve, reject) => {
      let receiver: OtlpReceiver | undefined;
      let buffered = '';
      const timer = setTimeout(() => reject(new Error(`OTLP receiver did not start in 30s: ${stderr}`)), 30_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (!receiver) reject(new Error(`OTLP receiver exited (${code}): ${stderr}`));
      });
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = JSON.parse(buffered.slice(0, nl)) as ReceivedSpan | { listening: number };
          buffered = buffered.slice(nl + 1);
          if ('listening' in line) {
            clearTimeout(timer);
            receiver = new OtlpReceiver(child, line.listening);
            resolve(receiver);
          } else if (receiver) {
            receiver.spans.push(line);
            for (const w of receiver.waiters.splice(0)) w();
          }
        }
      });
    });
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Resolves with the spans once `select` returns a non-empty list, or rejects after `timeoutMs`. */
  async waitFor(select: (spans: ReceivedSpan[]) => ReceivedSpan[], timeoutMs = 20_000): Promise<ReceivedSpan[]> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = select(this.spans);
      if (found.length > 0) return found;
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(
          `no matching span within ${timeoutMs}ms; received: ${this.spans.map((span) => span.name).join(', ')}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
