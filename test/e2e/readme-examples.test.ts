/** README examples that show output: the output is what the same command gives. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDevStack } from '../../src/dev/stack.js';
import type { ProfileName } from '../../src/dev/profiles.js';
import type { DeciderChoice } from '../../src/dev/epp-configs.js';
import { ROOT, metricValue, metricsText, postJson, runProcess, waitFor } from '../helpers.js';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('README examples', () => {
  it('the cost decider example: its x-pd-router-decision line is what the stack answers, with a reason that decider gives', async () => {
    const block = /```sh\n(npm start -- --prefill (\d+) --decode (\d+) --decider (\w+) --profile (\S+))\n[\s\S]*?\$\(seq -s ' ' (\d+)\)[\s\S]*?# x-pd-router-decision: ([^\n]*?); \.\.\.\n```/.exec(readme);
    expect(block, 'the dev example with a decision line').not.toBeNull();
    const [, , prefill, decode, decider, profile, words, shown] = block!;
    expect(decider).toBe('cost');
    // The reasons cost-based-pd-decider.ts can give.
    const source = readFileSync(path.join(ROOT, 'src/decider/cost-based-pd-decider.ts'), 'utf8');
    const reasons = new Set([...source.matchAll(/reason: '([a-z-]+)'/g)].map((match) => match[1]));
    expect(reasons.has(/reason=([a-z-]+)/.exec(shown)![1])).toBe(true);

    const stack = await startDevStack({ mode: 'in-process', basePort: 0, gatewayPort: 0, prefill: +prefill, decode: +decode, decider: decider as DeciderChoice, profile: profile as ProfileName });
    try {
      // The decision reads the scraped metrics: wait until every endpoint has been scraped (fresh).
      const eppMetrics = `http://127.0.0.1:${stack.epp.ports.metricsPort}`;
      await waitFor(async () => metricValue(await metricsText(eppMetrics), 'llm_d_epp_ready_endpoints', { name: 'epp' }) === +prefill + +decode, 60_000, 'fresh metrics');
      const content = Array.from({ length: +words }, (_, i) => String(i + 1)).join(' ');
      const r = await postJson(`${stack.gateway.url}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content }], max_tokens: 32 }, { 'x-pd-router-debug': 'decision' });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-pd-router-decision')!.startsWith(`${shown}; `)).toBe(true);
    } finally {
      await stack.close();
    }
  });

  it('npx pd-router runs the binary inside the checkout (it does not put it on the PATH)', async () => {
    const r = await runProcess('npx', ['--no', 'pd-router', 'sim', '--help'], { cwd: ROOT, env: { npm_config_update_notifier: 'false' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: pd-router sim');
    expect(readme).toContain('inside this checkout, `npx pd-router <command>`');
  });
});
