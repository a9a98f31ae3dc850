import { describe, expect, it } from 'vitest';
import { postJson, startCli } from '../helpers.js';

describe('pd-router dev (npm start)', () => {
  it('brings the simulated pool up and it answers a chat completion; Ctrl-C stops it cleanly', async () => {
    const dev = await startCli(['dev', '--prefill-port', '0', '--decode-port', '0', '--log-level', 'warn'], /decode\s+simulator: (http:\S+)/);
    try {
      const decodeUrl = dev.match[1]!;
      expect(dev.output()).toMatch(/prefill\s+simulator: http:\/\/127\.0\.0\.1:\d+/);
      const r = await postJson(`${decodeUrl}/v1/chat/completions`, { model: 'sim-model', messages: [{ role: 'user', content: 'Hello' }] });
      expect(r.status).toBe(200);
      expect(r.body.choices[0].message.role).toBe('assistant');
    } finally {
      expect(await dev.stop()).toBe(0);
    }
  });
});
