import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { deadline } from '../../src/common/deadline.js';

describe('deadline', () => {
  it('aborts its signal with a TimeoutError once the time is up, as AbortSignal.timeout does', async () => {
    const d = deadline(1);
    await once(d.signal, 'abort');
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as DOMException).name).toBe('TimeoutError');
    expect((d.signal.reason as DOMException).message).toMatch(/timed out after 1 ms/);
  });

  it('once cleared, never aborts (a later deadline fires, the cleared one did not)', async () => {
    const cleared = deadline(1);
    cleared.clear();
    const later = deadline(5);
    await once(later.signal, 'abort');
    expect(cleared.signal.aborted).toBe(false);
  });
});
