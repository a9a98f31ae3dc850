/** What the interop global setup hands to the test files (`provide`/`inject`). */
import type { ArtifactName, ArtifactOutcome } from './artifacts.js';
import type { ClusterInfo } from './control-plane.js';
import type { InteropEnv } from './toolchain.js';

/** The shared control plane: started, not started (its binaries are missing), or failed to start. */
export type SharedControlPlane =
  | { state: 'ready'; info: ClusterInfo; crds: string[] }
  | { state: 'skipped'; reason: string }
  | { state: 'failed'; error: string };

declare module 'vitest' {
  export interface ProvidedContext {
    interop: InteropEnv;
    artifacts: Partial<Record<ArtifactName, ArtifactOutcome>>;
    controlPlane: SharedControlPlane;
  }
}
