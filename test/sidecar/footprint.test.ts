/**
 * What the sidecar process loads (issue 20: its peak RSS against llm-d-router's Go sidecar). Each package loaded at
 * start stays in memory for the process's life, so the ones the request path does not need are kept out: undici's
 * index (the sidecar needs its Agent only), fastify (the sidecar serves on node:http; fastify was ~8 MB with what it
 * loads), and @opentelemetry/core (needed only once tracing starts). Runs the
 * compiled command module (npm run build) in a child process, as the sidecar's image does.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { Agent as SidecarAgent } from '../../src/sidecar/undici-agent.js';
import { ROOT } from '../helpers.js';

const run = promisify(execFile);

/**
 * The node_modules files a fresh process has loaded after importing the sidecar's command module and starting a
 * sidecar (one rank, plain HTTP, on loopback) that has served a health check.
 */
async function modulesLoadedBySidecar(): Promise<string[]> {
  const command = path.join(ROOT, 'dist/src/sidecar/command.js');
  const sidecar = path.join(ROOT, 'dist/src/sidecar/index.js');
  const script = `
    import { createRequire } from 'node:module';
    import { get } from 'node:http';
    await import(${JSON.stringify(command)});
    const { startSidecar, sidecarConfig } = await import(${JSON.stringify(sidecar)});
    const handle = await startSidecar(
      sidecarConfig({ host: '127.0.0.1', port: 0, metricsPort: 0, secureProxy: false, modelServerPort: 1 }),
    );
    const health = await new Promise((resolve, reject) =>
      get(handle.url + '/health', (res) => resolve(res.statusCode)).on('error', reject),
    );
    await handle.close();
    if (health !== 200) throw new Error('health: ' + health);
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(JSON.stringify(loaded.filter((f) => f.includes('node_modules'))));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 });
  return (JSON.parse(stdout) as string[]).map((file) =>
    file.slice(file.lastIndexOf('node_modules/') + 'node_modules/'.length),
  );
}

describe('sidecar footprint', () => {
  it("imports undici's Agent by path: the same class as the package index's Agent", () => {
    expect(SidecarAgent).toBe(Agent);
  });

  it("loads undici's Agent without undici's index, no fastify, and not @opentelemetry/core while tracing is off", async () => {
    const loaded = await modulesLoadedBySidecar();
    // The check sees the modules: the Agent and prom-client are there.
    expect(loaded).toContain('undici/lib/dispatcher/agent.js');
    expect(loaded.some((file) => file.startsWith('prom-client/'))).toBe(true);
    expect(loaded).not.toContain('undici/index.js');
    expect(loaded.filter((file) => file.startsWith('@opentelemetry/core/'))).toEqual([]);
    // No web framework: fastify (and what it loads) only for the separate metrics port, off by default.
    expect(
      loaded.filter((file) => /^(fastify|avvio|find-my-way|ajv|fast-uri|fast-json-stringify)\//.test(file)),
    ).toEqual([]);
  });
});
