/**
 * What an interop test file needs, and skipping when it cannot be had. A test file asks for artifacts at its top
 * level (`const req = await need('etcd', 'kube-apiserver')`) and declares its tests with describeWith(req, ...):
 * when an artifact could not be built (the global setup recorded why, or building it here failed) those tests are
 * skipped with the reason in their name; the rest of the suite runs. Without Go every interop test is skipped.
 */
import { setMetricsBearerToken } from '../helpers.js';
import { afterAll, beforeAll, describe, inject } from 'vitest';
import { artifact, describeArtifact, ArtifactError, type Artifact, type ArtifactName } from './artifacts.js';
import { KubeCluster } from './control-plane.js';
import './provided.js';

export type Requirement = { ok: true; artifacts: Record<string, Artifact> } | { ok: false; reason: string };

const warned = new Set<string>();

/** The artifacts, from the global setup's outcomes or built here (lazily, cached); or the reason they are missing. */
export async function need(...names: ArtifactName[]): Promise<Requirement> {
  const env = inject('interop');
  if (!env.available) return { ok: false, reason: env.reason ?? 'Go is not available' };
  const outcomes = inject('artifacts') ?? {};
  const got: Record<string, Artifact> = {};
  const missing: string[] = [];
  for (const name of names) {
    const o = outcomes[name];
    if (o && !o.ok) {
      missing.push(o.reason);
      continue;
    }
    if (o?.ok) {
      got[name] = o;
      continue;
    }
    try {
      got[name] = await artifact(name);
    } catch (e) {
      missing.push(e instanceof ArtifactError ? e.message : `${describeArtifact(name)}: ${(e as Error).message}`);
    }
  }
  if (missing.length === 0) return { ok: true, artifacts: got };
  // An artifact built from another fails with that one's error: name each cause once.
  const reason = `missing ${[...new Set(missing.map((message) => message.split('\n')[0]))].join('; ')}`;
  if (!warned.has(reason)) {
    warned.add(reason);
    process.stderr.write(`[interop] skipping tests: ${reason}\n`);
  }
  return { ok: false, reason };
}

/** Both requirements must hold. */
export function both(requirement: Requirement, right: Requirement): Requirement {
  if (requirement.ok && right.ok) return { ok: true, artifacts: { ...requirement.artifacts, ...right.artifacts } };
  return {
    ok: false,
    reason: [requirement, right]
      .filter((result): result is { ok: false; reason: string } => !result.ok)
      .map((result) => result.reason)
      .join('; '),
  };
}

/** The path of an artifact a satisfied requirement holds. */
export function pathOf(req: Requirement, name: ArtifactName): string {
  if (!req.ok || !req.artifacts[name]) throw new Error(`${name} was not required`);
  return req.artifacts[name].path;
}

/** describe() when the requirement holds, else describe.skip() with the reason in the title. */
export function describeWith(req: Requirement, title: string, fn: () => void): void {
  if (req.ok) describe(title, fn);
  else describe.skip(`${title} [skipped: ${req.reason}]`, fn);
}

/** The shared control plane's requirement: its binaries (skip when they are missing). */
export async function needSharedControlPlane(): Promise<Requirement> {
  const shared = inject('controlPlane');
  if (shared?.state === 'skipped') return { ok: false, reason: shared.reason };
  return need('etcd', 'kube-apiserver');
}

/**
 * A client of the control plane the global setup started (GAIE v1.5.0 and Gateway API v1.4.0 CRDs installed).
 * Throws, failing the test, when it could not be started although its binaries were built.
 */
export function sharedCluster(): KubeCluster {
  const shared = inject('controlPlane');
  if (shared.state === 'failed') throw new Error(`the shared control plane did not start: ${shared.error}`);
  if (shared.state === 'skipped') throw new Error(`the shared control plane was not started: ${shared.reason}`);
  // EPPs started against this API server authenticate /metrics (as upstream's): the tests read them as its admin.
  setMetricsBearerToken(shared.info.adminToken);
  return new KubeCluster(shared.info);
}

/**
 * Opens a client of the shared control plane before a file's tests, when `req` is met, hands it to `set`, and closes
 * it after them.
 */
export function openSharedCluster(req: Requirement, set: (cluster: KubeCluster) => void): void {
  let opened: KubeCluster | undefined;
  beforeAll(() => {
    if (req.ok) set((opened = sharedCluster()));
  });
  afterAll(async () => {
    await opened?.close();
  });
}
