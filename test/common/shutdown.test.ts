import { describe, expect, it } from 'vitest';
import { startCli, waitFor } from '../helpers.js';

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
      const m = await fetch(`${url}/metrics`).then((r) => r.text());
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
      (r) => r.status,
      (e: Error) => e.message,
    );
    await waitFor(async () => /vllm:num_requests_running\{[^}]*\} 1/.test(await fetch(`${url}/metrics`).then((r) => r.text())));
    const started = Date.now();
    sim.child.kill('SIGTERM');
    expect(await sim.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await inflight).toMatch(/fetch failed|terminated|other side closed/);
    expect(sim.output()).toContain('drain deadline reached');
  });
});
