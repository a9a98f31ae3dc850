/**
 * Runs the pods of rendered manifests on this machine, as a kubelet and the Deployment controller would, against the
 * interop suite's real kube-apiserver:
 * - a Deployment's replicas become Pod objects (its template's labels and spec), each with a 127.0.x.y address of its
 *   own written into its status, so the manifests' fixed ports do not collide;
 * - each container with a pd-router image (`ghcr.io/pd-router/pd-router-<epp|sidecar|sim>:<tag>`) runs as that
 *   image's entrypoint, dist/src/bin/pd-router-<component>.js, with exactly the container's args and env as
 *   Kubernetes builds them ($(VAR) expansion, fieldRef, configMapKeyRef, secretKeyRef, envFrom) and nothing of this
 *   machine's environment but PATH;
 * - what a pod gets from Kubernetes is stood in for: the pod's network namespace by binding to the pod address
 *   (PD_<COMPONENT>_HOST; the sidecar's "localhost" model server is the pod address, PD_SIDECAR_MODEL_SERVER_HOST);
 *   the mounted ServiceAccount token by a kubeconfig with a TokenRequest token of the pod's ServiceAccount
 *   (KUBECONFIG); a ConfigMap, Secret or emptyDir volume by a directory holding its files, the mount path replaced by
 *   that directory in args and env (the one change made to them, recorded in `rewrites`);
 * - a model-server container that is not pd-router's (vLLM images) is stood in for by pd-router's simulator on the
 *   pod address and the container's port; any other container is not run, for a reason the caller states;
 * - the containers' own probes (startup, readiness, liveness; probes.ts) decide when the pod is Ready, which is then
 *   written to its status as a kubelet would.
 */
import { spawn } from 'node:child_process';
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { componentBinary } from '../helpers.js';
import { ManagedProcess, type KubeCluster } from './control-plane.js';
import { probeUntilPass, runProbe, type ProbeResult } from './probes.js';

type Obj = Record<string, any>;
export type Component = 'epp' | 'sidecar' | 'sim';

/** The pd-router component an image is, if it is one of pd-router's per-component images. */
export function pdRouterComponent(image: string): Component | undefined {
  return /^ghcr\.io\/pd-router\/pd-router-(epp|sidecar|sim):[^/]+$/.exec(image)?.[1] as Component | undefined;
}

const READY_LINE: Record<Component, RegExp> = { epp: /"msg":"epp listening"/, sidecar: /"msg":"sidecar listening"/, sim: /"msg":"simulator listening"/ };
const HOST_ENV: Record<Component, string> = { epp: 'PD_EPP_HOST', sidecar: 'PD_SIDECAR_HOST', sim: 'PD_SIM_HOST' };

export interface ContainerRun {
  name: string;
  image: string;
  /** pd-router: its binary ran; simulator: pd-router's simulator stood in; not-run: see `reason`. */
  role: 'pd-router' | 'simulator' | 'not-run';
  component?: Component;
  /** The container's args after Kubernetes' $(VAR) expansion. */
  args: string[];
  /** What ran: `args` with volume mount paths replaced by their local directories. */
  argv: string[];
  /** The container's environment as Kubernetes builds it (before the stand-in variables). */
  env: Record<string, string>;
  rewrites: Array<{ from: string; to: string }>;
  reason?: string;
  proc?: ManagedProcess;
  sim?: SimulatorHandle;
  /** The container's own probes, as last evaluated. */
  probes: { startup?: ProbeResult; readiness?: ProbeResult; liveness?: ProbeResult };
  raw: Obj;
}

export interface PodRun {
  name: string;
  ip: string;
  deployment: string;
  serviceAccount: string;
  labels: Record<string, string>;
  containers: ContainerRun[];
}

export interface KubeletOptions {
  /** Pod addresses to hand out, in order. */
  addresses: string[];
  /** Why a container that is neither pd-router's nor a model server is not run, by container name. */
  notRun?: Record<string, string>;
  /** Start-up and probe deadline per container (default 60 s: a loaded 2-core machine). */
  timeoutMs?: number;
}

/** A container that serves a model (stood in for by the simulator): vLLM images, or a container named vllm. */
const isModelServer = (c: Obj) => c.name === 'vllm' || /(^|\/)vllm[^/]*:|vllm-openai|\/vllm:/.test(String(c.image));

/** Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, undefined references stay as written. */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v?: string) => (m === '$$' ? '$' : v !== undefined && v in env ? env[v]! : m));
}

export class LocalKubelet {
  readonly pods: PodRun[] = [];
  private next = 0;
  private readonly dirs: string[] = [];
  private readonly timeoutMs: number;

  constructor(
    readonly cluster: KubeCluster,
    readonly namespace: string,
    private readonly opts: KubeletOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** Reads an object as the kubelet would (admin credentials); undefined when missing. */
  private async read(apiPath: string): Promise<Obj | undefined> {
    const r = await this.cluster.request('GET', apiPath);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`GET ${apiPath}: ${r.status} ${r.text.slice(0, 300)}`);
    return r.json;
  }

  private async configMapOrSecret(kind: 'configmaps' | 'secrets', name: string): Promise<Record<string, string> | undefined> {
    const o = await this.read(`/api/v1/namespaces/${this.namespace}/${kind}/${name}`);
    if (!o) return undefined;
    if (kind === 'configmaps') return { ...(o.data ?? {}) };
    return Object.fromEntries(Object.entries((o.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  }

  /** The container's environment as Kubernetes builds it for this pod. */
  private async containerEnv(c: Obj, pod: { name: string; ip: string; serviceAccount: string; labels: Record<string, string>; annotations: Record<string, string> }): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const from of c.envFrom ?? []) {
      const ref = from.configMapRef ?? from.secretRef;
      const data = await this.configMapOrSecret(from.configMapRef ? 'configmaps' : 'secrets', ref.name);
      if (!data && !ref.optional) throw new Error(`container ${c.name}: envFrom ${ref.name} does not exist (the kubelet would not start it)`);
      for (const [k, v] of Object.entries(data ?? {})) env[`${from.prefix ?? ''}${k}`] = v;
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) {
        env[e.name] = expandVars(String(e.value), env);
        continue;
      }
      const vf = e.valueFrom ?? {};
      if (vf.fieldRef) {
        const f = String(vf.fieldRef.fieldPath);
        const label = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(f);
        const fields: Record<string, string> = {
          'metadata.name': pod.name,
          'metadata.namespace': this.namespace,
          'spec.nodeName': 'local-node',
          'spec.serviceAccountName': pod.serviceAccount,
          'status.podIP': pod.ip,
          'status.podIPs': pod.ip,
          'status.hostIP': '127.0.0.1',
          'status.hostIPs': '127.0.0.1',
        };
        const v = label ? (label[1] === 'labels' ? pod.labels : pod.annotations)[label[2]!] : fields[f];
        if (v === undefined && !label) throw new Error(`container ${c.name}: fieldRef ${f} is not supported here`);
        env[e.name] = v ?? '';
      } else if (vf.configMapKeyRef || vf.secretKeyRef) {
        const ref = vf.configMapKeyRef ?? vf.secretKeyRef;
        const data = await this.configMapOrSecret(vf.configMapKeyRef ? 'configmaps' : 'secrets', ref.name);
        const v = data?.[ref.key];
        if (v === undefined && !ref.optional) throw new Error(`container ${c.name}: ${ref.name}/${ref.key} for ${e.name} does not exist (the kubelet would not start it)`);
        if (v !== undefined) env[e.name] = v;
      } else {
        throw new Error(`container ${c.name}: env ${e.name} uses ${Object.keys(vf).join(', ')}, not supported here`);
      }
    }
    return env;
  }

  /** Local directories for the container's volume mounts (ConfigMap and Secret files as the kubelet projects them, emptyDir empty). */
  private async mounts(c: Obj, spec: Obj): Promise<Array<{ from: string; to: string }>> {
    const out: Array<{ from: string; to: string }> = [];
    for (const m of c.volumeMounts ?? []) {
      const vol = (spec.volumes ?? []).find((v: Obj) => v.name === m.name);
      if (!vol) throw new Error(`container ${c.name}: volume ${m.name} is not in the pod spec`);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-volume-'));
      this.dirs.push(dir);
      const src = vol.configMap ?? vol.secret;
      if (src) {
        const data = await this.configMapOrSecret(vol.configMap ? 'configmaps' : 'secrets', vol.configMap ? src.name : src.secretName);
        if (!data && !src.optional) throw new Error(`container ${c.name}: volume ${m.name} needs ${vol.configMap ? 'ConfigMap' : 'Secret'} ${src.name ?? src.secretName}, which does not exist (the pod would not start)`);
        const items: Array<{ key: string; path: string }> = src.items ?? Object.keys(data ?? {}).map((key) => ({ key, path: key }));
        for (const it of items) {
          const file = path.join(dir, it.path);
          mkdirSync(path.dirname(file), { recursive: true });
          writeFileSync(file, data?.[it.key] ?? '');
        }
      } else if (!vol.emptyDir) {
        throw new Error(`container ${c.name}: volume ${m.name} (${Object.keys(vol).filter((k) => k !== 'name').join(', ')}) is not supported here`);
      }
      out.push({ from: String(m.mountPath).replace(/\/$/, ''), to: m.subPath ? path.join(dir, m.subPath) : dir });
    }
    return out;
  }

  /** Creates the pods of a Deployment (its replicas, unless given) and runs them; resolves once each is Ready. */
  async runDeployment(deployment: Obj, opts: { replicas?: number; requireReady?: boolean } = {}): Promise<PodRun[]> {
    const replicas = opts.replicas ?? deployment.spec.replicas ?? 1;
    const template = deployment.spec.template;
    const hash = createHash('sha256').update(JSON.stringify(template)).digest('hex').slice(0, 8);
    // Side by side; each pod's address is taken before its first await, so in replica order.
    return Promise.all(Array.from({ length: replicas }, (_, i) => this.runPod(`${deployment.metadata.name}-${hash}-${i}`, deployment.metadata.name, template, hash, opts.requireReady ?? true)));
  }

  private async runPod(name: string, deployment: string, template: Obj, hash: string, requireReady: boolean): Promise<PodRun> {
    const ip = this.opts.addresses[this.next++];
    if (!ip) throw new Error('no pod address left');
    const spec = template.spec as Obj;
    const labels = { ...(template.metadata?.labels ?? {}), 'pod-template-hash': hash };
    const annotations = { ...(template.metadata?.annotations ?? {}) };
    const serviceAccount = (spec.serviceAccountName as string | undefined) ?? 'default';
    // The ServiceAccount controller makes "default" in every namespace; nothing runs it here.
    if (serviceAccount === 'default') await this.cluster.createServiceAccount(this.namespace, 'default');
    else if (!(await this.read(`/api/v1/namespaces/${this.namespace}/serviceaccounts/${serviceAccount}`))) throw new Error(`pod ${name}: ServiceAccount ${serviceAccount} does not exist (the API server would refuse the pod)`);
    await this.cluster.createPod(this.namespace, name, { labels, annotations, spec: spec as k8s.V1PodSpec, ip, ready: false });
    const pod: PodRun = { name, ip, deployment, serviceAccount, labels, containers: [] };
    this.pods.push(pod);
    const kubeconfig = spec.automountServiceAccountToken === false ? undefined : await this.cluster.serviceAccountKubeconfig(this.namespace, serviceAccount);
    // Native sidecars (init containers with restartPolicy Always) start first and keep running, as the kubelet runs them.
    const inits = (spec.initContainers ?? []) as Obj[];
    const plain = inits.filter((c) => c.restartPolicy !== 'Always');
    if (plain.length > 0) throw new Error(`pod ${name}: init containers that run to completion (${plain.map((c) => c.name).join(', ')}) are not supported here`);
    for (const c of [...inits, ...(spec.containers as Obj[])]) await this.startContainer(pod, c, spec, { name, ip, serviceAccount, labels, annotations }, kubeconfig);
    if (requireReady) await this.untilReady(pod);
    return pod;
  }

  /** Starts one container of `into` (recorded there before anything can fail, so close() stops it). */
  private async startContainer(into: PodRun, c: Obj, spec: Obj, pod: { name: string; ip: string; serviceAccount: string; labels: Record<string, string>; annotations: Record<string, string> }, kubeconfig: string | undefined): Promise<ContainerRun> {
    const component = pdRouterComponent(String(c.image));
    const env = await this.containerEnv(c, pod);
    const args = ((c.args ?? []) as unknown[]).map((a) => expandVars(String(a), env));
    const run: ContainerRun = { name: c.name, image: c.image, role: 'not-run', component, args, argv: args, env, rewrites: [], probes: {}, raw: c };
    into.containers.push(run);
    if (component) {
      if (c.command) throw new Error(`container ${c.name}: command ${JSON.stringify(c.command)} replaces the image's entrypoint; pd-router's images take flags only`);
      const mounts = await this.mounts(c, spec);
      const rewrite = (s: string) => {
        let out = s;
        for (const m of mounts) {
          const re = new RegExp(`(^|[=,:\\s])${m.from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=/|$|[,\\s])`, 'g');
          if (re.test(out)) {
            out = out.replace(re, (_all, pre: string) => `${pre}${m.to}`);
            if (!run.rewrites.some((r) => r.from === m.from)) run.rewrites.push({ from: m.from, to: m.to });
          }
        }
        return out;
      };
      run.argv = args.map(rewrite);
      const procEnv: Record<string, string> = { PATH: process.env.PATH ?? '', ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, rewrite(v)])) };
      procEnv[HOST_ENV[component]] = pod.ip;
      if (component === 'sidecar') procEnv.PD_SIDECAR_MODEL_SERVER_HOST = pod.ip;
      if (kubeconfig && procEnv.KUBECONFIG === undefined) procEnv.KUBECONFIG = kubeconfig;
      run.role = 'pd-router';
      run.proc = new ManagedProcess(`${pod.name}/${c.name} (pd-router-${component})`, spawn(process.execPath, [componentBinary(component), ...run.argv], { env: procEnv, stdio: ['ignore', 'pipe', 'pipe'] }));
      await run.proc.untilOutput(READY_LINE[component], this.timeoutMs, `${component} listening`);
      return run;
    }
    if (isModelServer(c)) {
      const port = Number(/^--port[= ](\d+)$/.exec(args.find((a) => /^--port[= ]\d+$/.test(a)) ?? '')?.[1] ?? c.ports?.[0]?.containerPort ?? 8000);
      const served = args[0] === 'serve' ? args[1] : /^--model[= ](.+)$/.exec(args.find((a) => /^--model[= ]/.test(a)) ?? '')?.[1];
      const maxModelLen = Number(/^--max-model-len[= ](\d+)$/.exec(args.find((a) => /^--max-model-len[= ]\d+$/.test(a)) ?? '')?.[1] ?? 32768);
      run.role = 'simulator';
      run.reason = `${c.image} is not pd-router's: pd-router's simulator serves ${served ?? 'sim-model'} on ${pod.ip}:${port}`;
      run.sim = await startSimulator(simConfig({ host: pod.ip, port, model: [served ?? 'sim-model'], mode: 'echo', engineId: pod.name, seed: 1, maxModelLen }));
      return run;
    }
    const reason = this.opts.notRun?.[c.name];
    if (!reason) throw new Error(`container ${c.name} (${c.image}) is neither pd-router's nor a model server; say why it is not run`);
    run.reason = reason;
    return run;
  }

  /** Evaluates every probe of the pod's running containers once (no waiting). */
  async probeOnce(pod: PodRun): Promise<void> {
    for (const c of pod.containers) {
      if (c.role === 'not-run') continue;
      for (const kind of ['startup', 'readiness', 'liveness'] as const) {
        const probe = c.raw[`${kind}Probe`];
        if (probe) c.probes[kind] = await runProbe(probe, c.raw, pod.ip);
      }
    }
  }

  /**
   * Waits for each running container's startup probe, then readiness probe, to pass (a container without a readiness
   * probe is ready once started), checks its liveness probe once, and writes the pod Ready. Fails, with the
   * container's log, when a probe does not pass in time or the process exits.
   */
  async untilReady(pod: PodRun): Promise<void> {
    for (const c of pod.containers) {
      if (c.role === 'not-run') continue;
      const alive = () => c.proc?.running ?? true;
      for (const kind of ['startup', 'readiness', 'liveness'] as const) {
        const probe = c.raw[`${kind}Probe`];
        if (!probe) continue;
        const r = kind === 'liveness' ? await runProbe(probe, c.raw, pod.ip) : await probeUntilPass(probe, c.raw, pod.ip, this.timeoutMs, alive);
        c.probes[kind] = r;
        if (!r.ok) throw new Error(`pod ${pod.name}, container ${c.name}: ${kind} probe failed: ${r.detail}${c.proc ? `\nits log:\n${c.proc.tail()}` : ''}`);
      }
      if (c.proc && !c.proc.running) throw new Error(`pod ${pod.name}, container ${c.name} exited; its log:\n${c.proc.tail()}`);
    }
    await this.cluster.setPodStatus(this.namespace, pod.name, { ready: true, phase: 'Running' });
  }

  /** The one running container of a component across the pods (or of a deployment's pods). */
  containers(filter: { deployment?: string; component?: Component; role?: ContainerRun['role'] } = {}): Array<ContainerRun & { pod: PodRun }> {
    return this.pods
      .filter((p) => !filter.deployment || p.deployment === filter.deployment)
      .flatMap((p) => p.containers.map((c) => ({ ...c, pod: p })))
      .filter((c) => (!filter.component || c.component === filter.component) && (!filter.role || c.role === filter.role));
  }

  /** Stops every process and simulator (by pid, ours only) and removes the volume directories. */
  async close(): Promise<void> {
    for (const pod of [...this.pods].reverse()) {
      for (const c of [...pod.containers].reverse()) {
        await c.proc?.stop();
        await c.sim?.close();
      }
    }
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }

  /** Deletes the pods it created (grace period 0, as a kubelet confirms), for tests that must leave a shared namespace clean. */
  async deletePods(): Promise<void> {
    for (const p of this.pods) await this.cluster.deletePod(this.namespace, p.name).catch(() => undefined);
  }
}
