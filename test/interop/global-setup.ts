/**
 * Runs once before the interop suite: installs (or reuses) the pinned upstream simulator and the Envoy ext_proc client,
 * builds (or reuses) every pinned artifact of artifacts.ts (control plane, helm, CRDs, upstream llm-d programs), starts
 * the shared Kubernetes control plane with the CRDs installed, prints what it pinned and how long each piece took, and
 * hands all of it to the tests (`inject`). Without Go it prints what to install and every interop test is skipped; an
 * artifact that cannot be built skips only the tests that need it.
 */
import type { TestProject } from 'vitest/node';
import { ARTIFACT_NAMES, prebuild, type ArtifactName, type ArtifactOutcome } from './artifacts.js';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import type { SharedControlPlane } from './provided.js';
import { prepareInterop } from './toolchain.js';

const SHARED_CRDS = ['gaie-v1.5.0', 'gateway-api-v1.4.0'] as const;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = (line: string) => process.stdout.write(line + '\n');
  const started = Date.now();
  const env = await prepareInterop(log);
  let artifacts: Partial<Record<ArtifactName, ArtifactOutcome>> = {};
  let controlPlane: SharedControlPlane = { state: 'skipped', reason: env.reason ?? 'Go is not available' };
  let plane: ControlPlane | undefined;
  if (!env.available) {
    log(`\n[interop] ${env.reason}\n`);
  } else {
    const how = env.simCached ? 'cached' : `installed in ${env.simInstallSeconds!.toFixed(0)}s`;
    log(`[interop] ${env.goVersion}`);
    log(`[interop] upstream simulator: ${env.simModule} ${env.simVersion} (${how}) at ${env.simBinary}`);
    log(
      `[interop] Envoy API for the ext_proc client: ${env.goControlPlane} (${env.extProcClientCached ? 'cached' : 'built'})`,
    );
    log(
      `[interop] upstream metrics reference (GAIE v1.4.0, llm-d-inference-scheduler v0.7.1): ${env.upstreamMetricsCached ? 'cached' : 'built'}`,
    );
    const buildStart = Date.now();
    // PD_INTEROP_PREBUILD=0 builds only the control plane here; test files then build what they need themselves.
    artifacts =
      process.env.PD_INTEROP_PREBUILD === '0'
        ? await prebuild(['etcd', 'kube-apiserver'], log)
        : await prebuild(ARTIFACT_NAMES, log);
    for (const o of Object.values(artifacts)) {
      if (!o.ok) {
        log(
          `[interop] UNAVAILABLE ${o.description}; the tests that need it are skipped:\n           ${o.reason.split('\n').slice(0, 8).join('\n           ')}`,
        );
        continue;
      }
      const how = o.cached
        ? `cached${o.lastBuildSeconds ? `; built in ${o.lastBuildSeconds.toFixed(0)}s on first run` : ''}`
        : `built in ${o.seconds.toFixed(0)}s`;
      log(`[interop] ${o.description} (${how})${o.note ? `\n           note: ${o.note}` : ''}`);
    }
    log(`[interop] artifacts ready in ${((Date.now() - buildStart) / 1000).toFixed(1)}s`);
    const missing = (['etcd', 'kube-apiserver'] as const)
      .map((count) => artifacts[count])
      .filter((options) => options && !options.ok);
    if (missing.length > 0) {
      controlPlane = {
        state: 'skipped',
        reason: missing.map((options) => (options && !options.ok ? options.reason.split('\n')[0] : '')).join('; '),
      };
    } else {
      const cpStart = Date.now();
      try {
        plane = await startControlPlane({ crds: [...SHARED_CRDS] });
        controlPlane = { state: 'ready', info: plane.info, crds: [...SHARED_CRDS] };
        log(
          `[interop] shared control plane at ${plane.server} (CRDs: ${SHARED_CRDS.join(', ')}) ready in ${((Date.now() - cpStart) / 1000).toFixed(1)}s`,
        );
      } catch (e) {
        controlPlane = { state: 'failed', error: (e as Error).message };
        log(`[interop] the shared control plane did not start; the tests that need it fail:\n${(e as Error).message}`);
      }
    }
    log(`[interop] toolchain ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  }
  project.provide('interop', env);
  project.provide('artifacts', artifacts);
  project.provide('controlPlane', controlPlane);
  return async () => {
    await plane?.stop();
  };
}
