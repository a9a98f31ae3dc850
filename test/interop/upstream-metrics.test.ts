/**
 * The GAIE metric family against upstream's own code: test/interop/upstream-metrics registers GAIE v1.4.0's EPP
 * metrics and llm-d-inference-scheduler v0.7.1's, records through every recorder, gathers them with client_golang
 * and prints each family's name, type, help, label names and buckets. That output must equal the reference the unit
 * tests compare pd-router with (test/epp/upstream-metrics/gaie-v1.4.0.json), so the reference cannot drift from
 * upstream. The vendored GAIE dashboards are checked against the released module files the same way.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runProcess } from '../helpers.js';
import { upstreamReference } from '../epp/upstream-metrics/exposition.js';
import { interopEnv, skipInterop } from './upstream.js';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe.skipIf(skipInterop())("GAIE v1.4.0 / llm-d-inference-scheduler v0.7.1 metrics, from upstream's code", () => {
  it('the reference pd-router is tested against is exactly what upstream registers', async () => {
    const r = await runProcess(interopEnv().upstreamMetrics!, [], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(upstreamReference('gaie-v1.4.0.json'));
  });

  it('the vendored GAIE dashboards are the released files', async () => {
    for (const version of ['v1.4.0', 'v1.5.0']) {
      const d = await runProcess(
        'go',
        ['mod', 'download', '-json', `sigs.k8s.io/gateway-api-inference-extension@${version}`],
        {
          cwd: path.join(ROOT, 'test/interop/upstream-metrics'),
          timeoutMs: 5 * 60_000,
        },
      );
      expect(d.code, d.output).toBe(0);
      const dir = (JSON.parse(d.stdout) as { Dir: string }).Dir;
      expect(sha256(path.join(ROOT, `test/interop/gaie-dashboards/inference_gateway-${version}.json`)), version).toBe(
        sha256(path.join(dir, 'tools/dashboards/inference_gateway.json')),
      );
    }
  }, 600_000);
});
