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
    const block =
      /```sh\n(npm start -- --prefill (\d+) --decode (\d+) --decider (\w+) --profile (\S+))\n[\s\S]*?\$\(seq -s ' ' (\d+)\)[\s\S]*?# x-pd-router-decision: ([^\n]*?); \.\.\.\n```/.exec(
        readme,
      );
    expect(block, 'the dev example with a decision line').not.toBeNull();
    const [, , prefill, decode, decider, profile, words, shown] = block!;
    expect(decider).toBe('cost');
    // The reasons cost-based-pd-decider.ts can give.
    const source = readFileSync(path.join(ROOT, 'src/decider/cost-based-pd-decider.ts'), 'utf8');
    const reasons = new Set([...source.matchAll(/reason: '([a-z-]+)'/g)].map((match) => match[1]!));
    expect(reasons.has(/reason=([a-z-]+)/.exec(shown!)![1]!)).toBe(true);

    // Metrics never go stale within the test (the decision under test is the README's, not the stale-metrics fallback a
    // loaded machine would otherwise trigger when a scrape comes late).
    const stack = await startDevStack({
      mode: 'in-process',
      basePort: 0,
      gatewayPort: 0,
      prefill: +prefill!,
      decode: +decode!,
      decider: decider as DeciderChoice,
      profile: profile as ProfileName,
      epp: { metricsStalenessThreshold: 600_000 },
    });
    try {
      // The decision reads the scraped metrics: wait until every endpoint has been scraped (fresh).
      const eppMetrics = `http://127.0.0.1:${stack.epp.ports.metricsPort}`;
      await waitFor(
        async () =>
          metricValue(await metricsText(eppMetrics), 'llm_d_epp_ready_endpoints', { name: 'epp' }) ===
          +prefill! + +decode!,
        60_000,
        'fresh metrics',
      );
      const content = Array.from({ length: +words! }, (_, i) => String(i + 1)).join(' ');
      const r = await postJson(
        `${stack.gateway.url}/v1/chat/completions`,
        { model: 'sim-model', messages: [{ role: 'user', content }], max_tokens: 32 },
        { 'x-pd-router-debug': 'decision' },
      );
      expect(r.status).toBe(200);
      expect(r.headers.get('x-pd-router-decision')!.startsWith(`${shown}; `)).toBe(true);
    } finally {
      await stack.close();
    }
  });

  // Not `npx pd-router`: npx links the checkout into its own cache (~/.npm/_npx) first, and a stale entry there made it
  // exit 127 on a CI machine. The README names the command that needs nothing outside the checkout.
  it('inside the checkout, node dist/src/cli.js runs any command without installing anything', async () => {
    const r = await runProcess(process.execPath, ['dist/src/cli.js', 'sim', '--help'], { cwd: ROOT });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: pd-router sim');
    expect(readme.replace(/\s+/g, ' ')).toContain(
      'inside this checkout, `node dist/src/cli.js <command>` runs it without installing anything',
    );
    expect(readme).not.toContain('npx pd-router');
  });
});
