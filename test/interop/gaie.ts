/** Gateway API Inference Extension's inferencepool Helm chart, rendered with the pinned helm (artifacts.ts). */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { runProcess } from '../helpers.js';
import { makeWritable } from './toolchain.js';

type Obj = Record<string, any>;

export interface ChartValues {
  release: string;
  namespace: string;
  matchLabels: Record<string, string>;
  targetPort: number;
  /** More values, as a values file (`helm template -f`). */
  values?: Obj;
}

/**
 * The chart values that make its EPP image pd-router's (`<registry>/<repository>:<tag>`): v1.5.0 names the parts
 * registry/repository, v1.4.0 hub/name.
 */
export function pdRouterEppImageValues(chartVersion: 'v1.4.0' | 'v1.5.0', image: string): Obj {
  const m = /^([^/]+)\/(.+):([^:]+)$/.exec(image);
  if (!m) throw new Error(`not an image reference with a registry and a tag: ${image}`);
  const [, registry, repository, tag] = m;
  if (chartVersion === 'v1.4.0') {
    const slash = repository.lastIndexOf('/');
    return {
      inferenceExtension: {
        image: { hub: `${registry}/${repository.slice(0, slash)}`, name: repository.slice(slash + 1), tag },
      },
    };
  }
  return { inferenceExtension: { image: { registry, repository, tag } } };
}

/**
 * `helm template` of config/charts/inferencepool from a GAIE module directory (read-only, so copied first; its
 * epplib dependency is a file:// chart that `helm dependency build` packages offline). helm's own directories are
 * temporary, so nothing is written to the user's helm cache or config.
 */
export async function renderInferencePoolChart(
  helm: string,
  gaieDir: string,
  chartValues: ChartValues,
): Promise<Obj[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-helm-'));
  try {
    cpSync(path.join(gaieDir, 'config/charts'), path.join(dir, 'charts'), { recursive: true });
    makeWritable(path.join(dir, 'charts'));
    const env = {
      HELM_CACHE_HOME: path.join(dir, 'cache'),
      HELM_CONFIG_HOME: path.join(dir, 'config'),
      HELM_DATA_HOME: path.join(dir, 'data'),
    };
    const chart = path.join(dir, 'charts/inferencepool');
    const dep = await runProcess(helm, ['dependency', 'build', chart], { env, timeoutMs: 60_000 });
    if (dep.code !== 0) throw new Error(`helm dependency build failed (exit ${dep.code}):\n${dep.output.slice(-3000)}`);
    const sets = [
      ...Object.entries(chartValues.matchLabels).map(
        ([k, val]) => `inferencePool.modelServers.matchLabels.${k.replace(/\./g, '\\.')}=${val}`,
      ),
      `inferencePool.targetPorts[0].number=${chartValues.targetPort}`,
    ];
    const valuesFile = path.join(dir, 'values.yaml');
    writeFileSync(valuesFile, stringify(chartValues.values ?? {}));
    const r = await runProcess(
      helm,
      [
        'template',
        chartValues.release,
        chart,
        '--namespace',
        chartValues.namespace,
        '-f',
        valuesFile,
        ...sets.flatMap((text) => ['--set', text]),
      ],
      { env, timeoutMs: 60_000 },
    );
    if (r.code !== 0) throw new Error(`helm template failed (exit ${r.code}):\n${r.output.slice(-3000)}`);
    return parseAllDocuments(r.stdout)
      .map((def) => def.toJSON() as Obj)
      .filter((obj) => obj && obj.kind);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
