import { describe, expect, it } from 'vitest';
import { postJson, startCli } from '../helpers.js';

describe('pd-router dev (npm start)', () => {
  it('brings the whole stack up as processes; the gateway answers a chat completion; Ctrl-C stops it cleanly', async () => {
    const dev = await startCli(['dev', '--base-port', '0', '--port', '0', '--profile', 'zero', '--log-level', 'warn'], /gateway\s+(http:\S+)/, { timeoutMs: 30_000 });
    try {
      const gateway = dev.match[1]!;
      expect(dev.output()).toContain('pd-router dev: 1P1D on simulators');
      const r = await postJson(`${gateway}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 });
      expect(r.status).toBe(200);
      expect(r.body.choices[0].message.role).toBe('assistant');
    } finally {
      expect(await dev.stop()).toBe(0);
    }
  });
});
