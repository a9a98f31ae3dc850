/**
 * Runs once before the interop suite: installs (or reuses) the pinned upstream simulator and the Envoy ext_proc client,
 * prints what it pinned, and hands the paths to the tests (`inject('interop')`). Without Go it prints what to install
 * and every interop test is skipped.
 */
import type { TestProject } from 'vitest/node';
import { prepareInterop, type InteropEnv } from './toolchain.js';

declare module 'vitest' {
  export interface ProvidedContext {
    interop: InteropEnv;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const log = (line: string) => process.stdout.write(line + '\n');
  const started = Date.now();
  const env = await prepareInterop(log);
  if (!env.available) {
    log(`\n[interop] ${env.reason}\n`);
  } else {
    const how = env.simCached ? 'cached' : `installed in ${env.simInstallSeconds!.toFixed(0)}s`;
    log(`[interop] ${env.goVersion}`);
    log(`[interop] upstream simulator: ${env.simModule} ${env.simVersion} (${how}) at ${env.simBinary}`);
    log(`[interop] Envoy API for the ext_proc client: ${env.goControlPlane} (${env.extProcClientCached ? 'cached' : 'built'})`);
    log(`[interop] upstream metrics reference (GAIE v1.4.0, llm-d-inference-scheduler v0.7.1): ${env.upstreamMetricsCached ? 'cached' : 'built'}`);
    log(`[interop] toolchain ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  }
  project.provide('interop', env);
}
