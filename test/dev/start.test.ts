/**
 * `npm start` (pd-router dev) under signals, as a terminal, `timeout`, `docker stop` or CI send them: whoever gets the
 * signal, every process of the stack exits and every port it held is free again, within a bound. Only processes
 * this file started are signalled, by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it, type TestContext } from 'vitest';
import { CLI, ROOT, metricValue, metricsText, postJson, waitFor } from '../helpers.js';
import { REPEATED_SIGNAL_WINDOW_MS } from '../../src/common/shutdown.js';
import { alive, descendants, listeningPorts, portFree } from './process-tree.js';

const MARKER = 'dist/src/cli.js';
/** Seven ports for 1P1D: gateway, EPP gRPC, health and metrics, prefill simulator, decode simulator, sidecar. */
const PORTS_1P1D = 7;
const DEV_ARGS = ['--base-port', '0', '--port', '0', '--profile', 'zero'];
/** Starting six Node processes on a loaded 2-core machine can take a while; stopping must take far less. */
const START_MS = 120_000;
const STOP_MS = 20_000;

interface Started {
  root: ChildProcess;
  /** Every process of the tree at the time it served: npm (when used), pd-router dev and its components. */
  tree: Array<{ pid: number; cmd: string }>;
  ports: number[];
  gateway: string;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Kills whatever a failed test left behind (checked by pid and command line, so that a reused pid is never hit). */
function cleanUp(started: Started): void {
  const tree = [...started.tree, ...(started.root.exitCode === null && started.root.signalCode === null ? descendants(started.root.pid!) : [])];
  if (started.root.exitCode === null && started.root.signalCode === null) started.root.kill('SIGKILL');
  for (const p of tree) {
    if (!alive(p.pid, MARKER)) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

/** `npm start -- <args>` (its prestart build is skipped: `npm test` has built), or `pd-router dev` directly. */
async function startStack(ctx: TestContext, via: 'npm' | 'node', extra: string[] = []): Promise<Started> {
  const args = [...DEV_ARGS, ...extra];
  // Its own process group, so that a test can signal the group as a terminal's Ctrl-C does.
  const root =
    via === 'npm'
      ? spawn('npm', ['start', '--ignore-scripts', '--', ...args], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } })
      : spawn(process.execPath, [CLI, 'dev', ...args], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => root.once('exit', (code, signal) => resolve({ code, signal })));
  const s: Started = { root, tree: [], ports: [], gateway: '', output: () => out, exit };
  ctx.onTestFinished(() => cleanUp(s));
  const ready = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /gateway\s+(http:\S+)[\s\S]*Ctrl-C stops everything/.exec(out);
      if (m) resolve(m[1]!);
    };
    root.stdout!.on('data', onData);
    root.stderr!.on('data', onData);
    void exit.then((entry) => reject(new Error(`exited (${entry.code ?? entry.signal}) before serving:\n${out}`)));
    setTimeout(() => reject(new Error(`not serving within ${START_MS}ms:\n${out}`)), START_MS).unref();
  });
  s.gateway = await ready;
  s.tree = [...(via === 'node' ? [{ pid: root.pid!, cmd: `node ${CLI} dev` }] : []), ...descendants(root.pid!)];
  s.ports = listeningPorts(s.tree.map((params) => params.pid));
  return s;
}

/** Every process of the tree has exited, and every port it listened on can be bound again. */
async function expectAllGone(started: Started): Promise<void> {
  await waitFor(() => started.tree.every((params) => !alive(params.pid, MARKER)), STOP_MS, `every process to exit: ${started.tree.filter((params) => alive(params.pid, MARKER)).map((params) => params.cmd.slice(0, 80)).join('; ')}`);
  for (const port of started.ports) expect(await portFree(port), `port ${port} free`).toBe(true);
}

function expectStack(started: Started): void {
  const commands = started.tree.map((params) => /cli\.js (\w+)/.exec(params.cmd)?.[1] ?? params.cmd);
  // `npm start` execs pd-router dev: no shell in between to swallow or drop a signal.
  expect(commands.sort()).toEqual(['dev', 'epp', 'gateway', 'sidecar', 'sim', 'sim']);
  expect(started.ports).toHaveLength(PORTS_1P1D);
}

const devPid = (started: Started) => started.tree.find((params) => /cli\.js dev/.test(params.cmd))!.pid;
const exitOf = async (started: Started) => {
  const e = await Promise.race([started.exit, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`did not exit within ${STOP_MS}ms:\n${started.output()}`)), STOP_MS).unref())]);
  return e;
};

// Concurrent: each test waits mostly for six Node processes to start, and they are independent (ports picked freely).
describe.concurrent('npm start under signals: the whole stack stops, every port is freed', { timeout: START_MS + 2 * STOP_MS }, () => {
  it('SIGTERM to npm (timeout, docker stop, CI): the gateway answered; then everything exits 0', async (ctx) => {
    const s = await startStack(ctx, 'npm');
    expectStack(s);
    const r = await postJson(`${s.gateway}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 }, {}, STOP_MS);
    expect(r.status).toBe(200);
    expect(r.body.choices[0].message.role).toBe('assistant');
    process.kill(s.root.pid!, 'SIGTERM');
    expect(await exitOf(s)).toEqual({ code: 0, signal: null });
    await expectAllGone(s);
    expect(s.output()).toContain('"msg":"shutdown complete"');
  });

  it('SIGINT to npm alone: everything exits 0', async (ctx) => {
    const s = await startStack(ctx, 'npm');
    process.kill(s.root.pid!, 'SIGINT');
    expect(await exitOf(s)).toEqual({ code: 0, signal: null });
    await expectAllGone(s);
  });

  it("Ctrl-C in a terminal (SIGINT to the foreground group): npm's forwarded copy is the same Ctrl-C, the stop is clean", async (ctx) => {
    const s = await startStack(ctx, 'npm');
    process.kill(-s.root.pid!, 'SIGINT');
    expect(await exitOf(s)).toEqual({ code: 0, signal: null });
    await expectAllGone(s);
    expect(s.output()).toContain('"msg":"shutdown complete"');
    expect(s.output()).not.toContain('second signal');
  });

  it('npm killed (SIGKILL): pd-router dev sees its parent gone and stops the stack', async (ctx) => {
    const s = await startStack(ctx, 'npm', ['--watch-parent-interval', '100ms']);
    process.kill(s.root.pid!, 'SIGKILL');
    await exitOf(s);
    await expectAllGone(s);
  });

  it('pd-router dev killed (SIGKILL): every component sees its supervisor gone and exits', async (ctx) => {
    const s = await startStack(ctx, 'node');
    expectStack(s);
    process.kill(devPid(s), 'SIGKILL');
    expect(await exitOf(s)).toEqual({ code: null, signal: 'SIGKILL' });
    // The components' stdout is a pipe nobody reads any more: logging their shutdown must not stop them exiting.
    await expectAllGone(s);
  });

  it('a signal to the gateway: without it the stack serves nothing, so everything stops and dev exits 1', async (ctx) => {
    const s = await startStack(ctx, 'node');
    const gateway = s.tree.find((params) => /cli\.js gateway/.test(params.cmd))!.pid;
    process.kill(gateway, 'SIGTERM');
    expect(await exitOf(s)).toEqual({ code: 1, signal: null });
    await expectAllGone(s);
    expect(s.output()).toContain('gateway exited');
  });

  it('a second signal, later, stops at once: the components are killed, none outlives dev', async (ctx) => {
    const s = await startStack(ctx, 'node', ['--shutdown-timeout', '60s']);
    // Both simulators hold requests until the client leaves, so the gateway drains (up to 60 s) on the first signal.
    for (const sim of s.output().matchAll(/(?:prefill-0\s+|vLLM sim )(http:\S+)/g)) expect((await postJson(`${sim[1]}/admin/config`, { hang: true })).status).toBe(200);
    void postJson(`${s.gateway}/v1/completions`, { model: 'sim-model', prompt: 'x', max_tokens: 2 }, {}, START_MS).catch(() => undefined);
    const sidecar = /sidecar (http:\S+)/.exec(s.output())![1]!;
    await waitFor(async () => metricValue(await metricsText(sidecar, '/sidecar/metrics'), 'pd_router_sidecar_inflight_requests') === 1, STOP_MS, 'the request held');
    process.kill(devPid(s), 'SIGTERM');
    await waitFor(() => s.output().includes('shutting down'), STOP_MS, 'the first signal to be handled');
    // Past the window in which a repeat counts as the same signal (a lower bound: timers never fire early).
    await new Promise((resolve) => setTimeout(resolve, REPEATED_SIGNAL_WINDOW_MS + 100));
    expect(s.output()).not.toContain('shutdown complete');
    process.kill(devPid(s), 'SIGTERM');
    expect(await exitOf(s)).toEqual({ code: 1, signal: null });
    await expectAllGone(s);
    expect(s.output()).toContain('second signal during shutdown, exiting now');
  });
});
