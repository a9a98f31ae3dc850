/** `pd-router dev --log-level debug --show-logs`: the components' own logs, at the level asked for, tagged by component. */
import { describe, expect, it } from 'vitest';
import { postJson, runCli, startCli, waitFor } from '../helpers.js';

describe('pd-router dev logs', () => {
  it('--log-level reaches the components and --show-logs prints their lines prefixed by the component', async () => {
    const dev = await startCli(['dev', '--base-port', '0', '--port', '0', '--profile', 'zero', '--log-level', 'debug', '--show-logs'], /gateway\s+(http:\S+)[\s\S]*Ctrl-C stops/, {
      timeoutMs: 120_000,
    });
    try {
      const gateway = dev.match[1]!;
      const r = await postJson(`${gateway}/v1/completions`, { model: 'sim-model', prompt: 'Hello', max_tokens: 4 }, { 'x-request-id': 'logs-test-1' }, 60_000);
      expect(r.status).toBe(200);
      // The EPP's scheduling decision and the sidecar's request line are debug logs of child processes.
      await waitFor(() => /^epp +\| .*"reqId":"logs-test-1".*"msg":"request scheduled"/m.test(dev.output()), 30_000, 'the EPP decision log');
      await waitFor(() => /^sidecar-0 +\| .*"msg":"request done"/m.test(dev.output()), 30_000, 'the sidecar request log');
      const scheduled = dev.output().split('\n').find((line) => line.includes('"msg":"request scheduled"'))!;
      expect(JSON.parse(scheduled.slice(scheduled.indexOf('|') + 2))).toMatchObject({ level: 'debug', component: 'epp', reqId: 'logs-test-1', decision: 'decode-only' });
      // Every component's startup line is there, each under its own prefix.
      for (const c of ['prefill-0', 'decode-0', 'sidecar-0', 'epp', 'gateway']) expect(dev.output()).toMatch(new RegExp(`^${c} +\\| .*listening`, 'm'));
    } finally {
      expect(await dev.stop()).toBe(0);
    }
  }, 240_000);

  it('without --show-logs only warnings and errors of the components are printed; the default is in --help', async () => {
    const help = (await runCli(['dev', '--help'], { timeoutMs: 60_000 })).stdout;
    expect(help).toMatch(/--show-logs +Print every component's log lines .*\(default false\)/);
    const dev = await startCli(['dev', '--base-port', '0', '--port', '0', '--profile', 'zero', '--log-level', 'debug'], /gateway\s+(http:\S+)[\s\S]*Ctrl-C stops/, { timeoutMs: 120_000 });
    try {
      const r = await postJson(`${dev.match[1]!}/v1/completions`, { model: 'sim-model', prompt: 'Hello', max_tokens: 4 }, {}, 60_000);
      expect(r.status).toBe(200);
    } finally {
      expect(await dev.stop()).toBe(0);
    }
    expect(dev.output()).not.toMatch(/^(epp|gateway|sidecar-0|prefill-0|decode-0) +\| /m);
    expect(dev.output()).not.toContain('request scheduled');
  }, 240_000);
});
