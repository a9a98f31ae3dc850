/**
 * Running the upstream simulator (llm-d-inference-sim) as a test peer: one process per instance on a free loopback
 * port, ready when /health answers, stopped by its own pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
import { freePortRange, waitFor } from '../helpers.js';
import type { InteropEnv } from './toolchain.js';

/** The model name llm-d's own e2e tests serve; not a Hugging Face id. */
export const MODEL = 'food-review';

export function interopEnv(): InteropEnv {
  return inject('interop');
}

/** True when the suite must be skipped (no Go); the global setup printed why. */
export function skipInterop(): boolean {
  return !interopEnv().available;
}

/** Upstream processes still running; killed if the test worker exits without closing them (a crash, a timeout). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface UpstreamSim {
  readonly port: number;
  readonly url: string;
  readonly hostPort: string;
  readonly child: ChildProcess;
  /** Everything the process printed so far (bounded). */
  output(): string;
  close(): Promise<void>;
}

/**
 * Starts `llm-d-inference-sim --port <free> <args>`. `--force-dummy-tokenizer` is always added: without it v0.10.2
 * asks huggingface.co whether the model exists (network) before falling back to its simulated tokenizer.
 * v0.10.2 listens on all IPv4 interfaces (it has no bind-address flag); the tests only talk to it over 127.0.0.1.
 */
export async function startUpstreamSim(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; name?: string } = {},
): Promise<UpstreamSim> {
  const binary = interopEnv().simBinary;
  if (!binary) throw new Error('the upstream simulator is not installed (interop global setup did not run?)');
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePortRange(1);
    const child = spawn(binary, ['--port', String(port), '--force-dummy-tokenizer', ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const keep = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.length > 2_000_000) out = out.slice(-1_000_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    live.add(child);
    let exited = false;
    const exit = new Promise<void>((resolve) =>
      child.once('exit', () => {
        exited = true;
        live.delete(child);
        resolve();
      }),
    );
    const url = `http://127.0.0.1:${port}`;
    const close = async () => {
      if (exited) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exit;
      clearTimeout(t);
    };
    try {
      await waitFor(
        async () => {
          if (exited) return true;
          const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
          return r?.status === 200;
        },
        20_000,
        `${opts.name ?? 'upstream simulator'} /health on port ${port}`,
      );
      if (exited)
        throw new Error(
          `${opts.name ?? 'upstream simulator'} exited at start (port ${port}); output:\n${out.slice(-4000)}`,
        );
      return { port, url, hostPort: `127.0.0.1:${port}`, child, output: () => out, close };
    } catch (e) {
      lastError = e as Error;
      await close();
    }
  }
  throw lastError!;
}
