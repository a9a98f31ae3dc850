import { describe, expect, it } from 'vitest';
import { alive } from '../dev/process-tree.js';
import { CLI, runProcess, startCli, waitFor } from '../helpers.js';

async function startSim(extra: string[]) {
  return startCli(['sim', '--host', '127.0.0.1', '--port', '0', '--log-level', 'info', ...extra], /"url":"(http:[^"]+)".*simulator listening/);
}

describe('graceful shutdown', () => {
  it('SIGTERM lets an in-flight request finish, then exits 0', async () => {
    const sim = await startSim(['--time-to-first-token', '600ms', '--shutdown-timeout', '10s']);
    const url = sim.match[1]!;
    const inflight = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim-model', prompt: 'x', max_tokens: 2 }),
      signal: AbortSignal.timeout(10_000),
    });
    await waitFor(async () => {
      const m = await fetch(`${url}/metrics`).then((response) => response.text());
      return /vllm:num_requests_running\{[^}]*\} 1/.test(m);
    });
    sim.child.kill('SIGTERM');
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: unknown[] }).choices).toHaveLength(1);
    expect(await sim.stop()).toBe(0);
    expect(sim.output()).toContain('shutdown complete');
  });

  it('the drain deadline closes requests that outlive it, and the process still exits 0', async () => {
    const sim = await startSim(['--time-to-first-token', '60s', '--shutdown-timeout', '200ms']);
    const url = sim.match[1]!;
    const inflight = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim-model', prompt: 'x' }),
      signal: AbortSignal.timeout(10_000),
    }).then(
      (response) => response.status,
      (err: Error) => err.message,
    );
    await waitFor(async () => /vllm:num_requests_running\{[^}]*\} 1/.test(await fetch(`${url}/metrics`).then((response) => response.text())));
    sim.child.kill('SIGTERM');
    // Without the deadline the drain would wait for the 60 s prefill, past the test's bound.
    expect(await sim.stop()).toBe(0);
    expect(await inflight).toMatch(/fetch failed|terminated|other side closed/);
    expect(sim.output()).toContain('drain deadline reached');
  });
});

/**
 * Starts `pd-router sim` from a short-lived parent that exits as soon as the simulator listens, leaving the simulator
 * with an unread stdout pipe (and, with `ipc`, a closed IPC channel). Resolves with the simulator's pid.
 */
async function orphanedSim(ipc: boolean): Promise<number> {
  const parent = `
    const { spawn } = require('node:child_process');
    const c = spawn(process.execPath, [${JSON.stringify(CLI)}, 'sim', '--port', '0', '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'${ipc ? ", 'ipc'" : ''}], detached: true });
    let out = '';
    c.stdout.on('data', (d) => { out += d; if (out.includes('simulator listening')) { process.stdout.write(String(c.pid)); process.exit(0); } });
  `;
  const r = await runProcess(process.execPath, ['-e', parent], { timeoutMs: 60_000 });
  expect(r.code).toBe(0);
  return Number(r.stdout);
}

describe('a component outlives neither its supervisor nor its log reader', { timeout: 180_000 }, () => {
  it('SIGTERM still stops a component whose stdout pipe nobody reads any more (its shutdown logs hit EPIPE)', async () => {
    const pid = await orphanedSim(false);
    try {
      process.kill(pid, 'SIGTERM');
      // Before the fix pino's exit flush retried the broken pipe forever and the process never exited.
      await waitFor(() => !alive(pid, 'cli.js sim'), 30_000, 'the simulator to exit');
    } finally {
      if (alive(pid, 'cli.js sim')) process.kill(pid, 'SIGKILL');
    }
  });

  it('a component started with an IPC channel (as pd-router dev starts them) stops when its supervisor exits', async () => {
    const pid = await orphanedSim(true);
    try {
      await waitFor(() => !alive(pid, 'cli.js sim'), 30_000, 'the simulator to exit on its own');
    } finally {
      if (alive(pid, 'cli.js sim')) process.kill(pid, 'SIGKILL');
    }
  });
});
