/**
 * The image cannot be built here (no Docker engine), so the Dockerfile is checked statically: multi-stage, a small
 * non-root runtime, the entrypoint the Kustomize manifests rely on (container args start with the component name),
 * and only paths that exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.js';

const lines = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() && !l.trim().startsWith('#'));

describe('Dockerfile', () => {
  it('builds in one stage and runs in a distroless, non-root stage', () => {
    const froms = lines.filter((l) => l.startsWith('FROM'));
    expect(froms).toHaveLength(2);
    expect(froms[0]).toMatch(/^FROM \S+node:20\.\d+\S* AS build$/);
    expect(froms[1]).toMatch(/^FROM gcr\.io\/distroless\/nodejs20-debian12:nonroot$/);
    const runtimeStage = lines.slice(lines.indexOf(froms[1]!));
    expect(runtimeStage).toContain('USER 65532:65532');
  });

  it('the entrypoint is the compiled CLI, so manifests give the component as the first argument', () => {
    expect(lines).toContain('ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]');
    expect(existsSync(path.join(ROOT, 'dist/src/cli.js'))).toBe(true);
    expect(lines).toContain('RUN npm run build && npm prune --omit=dev --ignore-scripts');
  });

  it('copies only paths that exist; the protos the EPP loads at runtime are included', () => {
    for (const l of lines.filter((x) => x.startsWith('COPY') && !x.includes('--from'))) {
      for (const src of l.split(/\s+/).slice(1, -1)) expect(existsSync(path.join(ROOT, src)), `${src} missing`).toBe(true);
    }
    expect(lines).toContain('COPY --from=build /src/proto ./proto');
  });
});
