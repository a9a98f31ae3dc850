/**
 * Missing RBAC and an unreachable API server, as an operator meets them: the per-component binaries (the images'
 * entrypoints) run against the shared kube-apiserver with a ServiceAccount token, or against an address nothing
 * listens on. Each must keep running (no crash, so no crash loop), fail its readiness, keep its liveness, and log each
 * failed attempt on one JSON line naming the permission to grant or the address it could not reach, retried with
 * growing backoff, without a stack trace; and become ready once the Role is bound, without a restart.
 */
import { spawn } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { componentBinary, freePortRange, getJson } from '../helpers.js';
import { ManagedProcess, type KubeCluster } from './control-plane.js';
import { GAIE_EPP_RULES, inferencePool } from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';
import { grpcHealth } from './probes.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let procs: ManagedProcess[] = [];
let sims: SimulatorHandle[] = [];
afterEach(async () => {
  for (const p of procs) await p.stop();
  await Promise.all(sims.map((handle) => handle.close()));
  procs = [];
  sims = [];
});

const T = 30_000;
type Line = Record<string, any>;

/** A per-component binary with only the environment given (as in a container), its logs as JSON lines. */
function run(component: 'epp' | 'sidecar', args: string[], env: Record<string, string>): ManagedProcess {
  const child = spawn(process.execPath, [componentBinary(component), ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = new ManagedProcess(`pd-router-${component}`, child);
  procs.push(p);
  return p;
}

function lines(process: ManagedProcess): Line[] {
  return process
    .output()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      expect(() => JSON.parse(line), `not a JSON log line: ${line}`).not.toThrow();
      return JSON.parse(line) as Line;
    });
}

const failures = (process: ManagedProcess) =>
  lines(process).filter(
    (line) => line.msg === 'kubernetes list/watch failed, retrying' && line.what === 'inferencepools',
  );

/** No line carries a stack trace (pino's err serializer writes one under `stack`; V8 frames read "    at "). */
function expectNoStackTrace(process: ManagedProcess): void {
  expect(process.output()).not.toMatch(/"stack"|\\n\s+at |^\s+at /m);
}

/** Resolves once the output holds `n` failed attempts (each a line of its own). */
// The pool's informer (the EPP's InferenceModelRewrite / InferenceObjective informers fail too, each on its own backoff).
const untilFailures = (process: ManagedProcess, count: number) =>
  process.untilOutput(
    new RegExp(`("what":"inferencepools"[^\\n]*kubernetes list/watch failed[^\\n]*\\n[\\s\\S]*){${count}}`),
    T,
    `${count} failed list/watch attempts logged`,
  );

async function untilHealth(host: string, service: string, want: string): Promise<void> {
  const deadline = Date.now() + T;
  let last = '';
  while ((last = await grpcHealth(host, 9003, service)) !== want) {
    if (Date.now() > deadline)
      throw new Error(`health of "${service}" on ${host} is ${last}, not ${want}, after ${T} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describeWith(req, 'missing RBAC and an unreachable API server: the components stay up, unready, and say why', () => {
  it('pd-router-epp denied its InferencePool: alive and unready; each attempt names the permission, backoff grows, no stack; ready once the Role is bound', async () => {
    const ns = await cluster.createNamespace('rbac-epp');
    await cluster.createServiceAccount(ns, 'epp');
    await cluster.apply(inferencePool('pool', { app: 'vllm' }, [8000]), { namespace: ns });
    const host = '127.0.2.250';
    const epp = run('epp', ['--pool-name=pool', `--pool-namespace=${ns}`], {
      PD_EPP_HOST: host,
      KUBECONFIG: await cluster.serviceAccountKubeconfig(ns, 'epp'),
    });
    await untilFailures(epp, 3);
    // The failures may come before the servers listen (the first attempt starts before them).
    await epp.untilOutput(/epp listening/, T, 'listening');
    const f = failures(epp);
    expect(f[0]).toMatchObject({
      level: 'warn',
      what: 'inferencepools',
      status: 403,
      reason: 'Forbidden',
      missingPermission: `list inferencepools.inference.networking.k8s.io in namespace ${ns}`,
      apiServer: cluster.server,
    });
    // The API server's own message names the identity that was refused.
    expect(f[0].error).toContain(`User "system:serviceaccount:${ns}:epp" cannot list resource "inferencepools"`);
    expect(f.slice(0, 3).map((line) => line.retryInMs)).toEqual([500, 1000, 2000]);
    expectNoStackTrace(epp);
    expect(epp.running).toBe(true);
    for (const service of ['readiness', 'envoy.service.ext_proc.v3.ExternalProcessor'])
      expect(await grpcHealth(host, 9003, service)).toBe('NOT_SERVING');
    expect(await grpcHealth(host, 9003, 'liveness')).toBe('SERVING');

    await cluster.grant(ns, 'epp', 'epp', GAIE_EPP_RULES);
    await untilHealth(host, 'readiness', 'SERVING');
    expect(epp.running).toBe(true);
  });

  it('pd-router-epp whose API server cannot be reached: alive and unready; each attempt names the address, no stack', async () => {
    const ns = await cluster.createNamespace('unreachable-epp');
    const kubeconfig = cluster.writeKubeconfig(undefined, ns);
    // A port nothing listens on: the kubeconfig is the admin's, with the server's address replaced.
    const closed = `https://127.0.0.1:${await freePortRange(1)}`;
    const { readFileSync, writeFileSync } = await import('node:fs');
    writeFileSync(kubeconfig, readFileSync(kubeconfig, 'utf8').replace(cluster.server, closed));
    const host = '127.0.2.251';
    const epp = run('epp', ['--pool-name=pool', `--pool-namespace=${ns}`], {
      PD_EPP_HOST: host,
      KUBECONFIG: kubeconfig,
    });
    await untilFailures(epp, 2);
    await epp.untilOutput(/epp listening/, T, 'listening');
    const [first] = failures(epp);
    expect(first).toMatchObject({
      level: 'warn',
      what: 'inferencepools',
      unreachable: closed,
      apiServer: closed,
      retryInMs: 500,
    });
    expect(first.error).toMatch(new RegExp(`^cannot reach the API server at ${closed}: .*ECONNREFUSED`));
    expectNoStackTrace(epp);
    expect(await grpcHealth(host, 9003, 'readiness')).toBe('NOT_SERVING');
    expect(await grpcHealth(host, 9003, 'liveness')).toBe('SERVING');
    expect(epp.running).toBe(true);
  });

  it('pd-router-sidecar with SSRF protection denied the pool: listens at once, /health 200, /ready 503; the log names the permission; ready once the Role is bound', async () => {
    const ns = await cluster.createNamespace('rbac-sidecar');
    await cluster.createServiceAccount(ns, 'sidecar');
    const host = '127.0.2.252';
    sims.push(await startSimulator(simConfig({ host, port: 8200, model: ['sim-model'], mode: 'echo', seed: 1 })));
    const sidecar = run(
      'sidecar',
      [
        '--port=8000',
        '--secure-proxy=false',
        '--enable-ssrf-protection=true',
        `--inference-pool=${ns}/pool`,
        '--ssrf-sync-timeout=2s',
      ],
      {
        PD_SIDECAR_HOST: host,
        PD_SIDECAR_MODEL_SERVER_HOST: host,
        KUBECONFIG: await cluster.serviceAccountKubeconfig(ns, 'sidecar'),
      },
    );
    await sidecar.untilOutput(/sidecar listening/, T, 'listening');
    expect((await getJson(`http://${host}:8000/health`)).status).toBe(200);
    const notReady = await getJson(`http://${host}:8000/ready`);
    expect(notReady.status).toBe(503);
    expect(notReady.body.ssrfAllowlist).toBe('not synced');
    await sidecar.untilOutput(/SSRF allowlist not synced within 2000 ms/, T, 'the sync-timeout error');
    const timeoutLine = lines(sidecar).find((line) => /SSRF allowlist not synced/.test(line.msg))!;
    expect(timeoutLine).toMatchObject({
      level: 'error',
      status: 403,
      missingPermission: `list inferencepools.inference.networking.k8s.io in namespace ${ns}`,
    });
    expect(timeoutLine.msg).toContain(
      `forbidden to list inferencepools.inference.networking.k8s.io in namespace ${ns}`,
    );
    expect(failures(sidecar)[0]).toMatchObject({
      missingPermission: `list inferencepools.inference.networking.k8s.io in namespace ${ns}`,
    });
    expectNoStackTrace(sidecar);

    await cluster.grant(ns, 'sidecar', 'sidecar', [
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
      { apiGroups: ['inference.networking.k8s.io'], resources: ['inferencepools'], verbs: ['list', 'watch'] },
    ]);
    await sidecar.untilOutput(/SSRF allowlist synced/, T, 'synced after the Role was bound');
    const ready = await getJson(`http://${host}:8000/ready`);
    expect(ready.status).toBe(200);
    expect(ready.body.ssrfAllowlist).toBe('synced');
    expect(sidecar.running).toBe(true);
  });
});
