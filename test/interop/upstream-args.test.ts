/**
 * The per-component binaries run with the exact container args of llm-d's own manifests (upstream-manifests.ts): the
 * EPP of llm-d-inference-scheduler v0.7.1, of the GAIE v1.4.0 and v1.5.0 charts and of llm-d-router ebab687; the
 * routing sidecar and the simulator of both llm-d releases. Only what Kubernetes provides is stood in for: each pod gets
 * its own loopback address, and the Kubernetes API is the shared kube-apiserver holding the pool and a pod in a
 * namespace of this file's own (the address and credentials go through pd-router's environment variables,
 * PD_<COMPONENT>_HOST and PD_EPP_KUBECONFIG, so the args stay exactly upstream's), and a ConfigMap
 * volume is a temporary directory. Each run checks: it starts, the logging flags took effect (JSON lines, the level
 * from --v), and exactly the expected compatibility warnings were logged, once each.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eppUpstream } from '../../src/epp/index.js';
import { sidecarUpstream } from '../../src/sidecar/index.js';
import { simUpstream } from '../../src/sim/index.js';
import {
  ENVSUBST_DEFAULTS,
  UPSTREAM_CONTAINERS,
  envsubst,
  type UpstreamContainer,
} from '../deploy/upstream-manifests.js';
import { componentBinary, getJson, postJson, startCli } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { describeWith, needSharedControlPlane, sharedCluster } from './need.js';

type Obj = Record<string, any>;

const POOL = ENVSUBST_DEFAULTS.POOL_NAME;
const MODEL = ENVSUBST_DEFAULTS.MODEL_NAME;
const TABLES = { epp: eppUpstream, sidecar: sidecarUpstream, sim: simUpstream };
const READY = { epp: /epp listening/, sidecar: /sidecar listening/, sim: /simulator listening/ };

const req = await needSharedControlPlane();
let cluster: KubeCluster;
let ns: string;
let kubeconfig: string;
const stops: Array<() => Promise<number | null>> = [];

beforeAll(async () => {
  if (!req.ok) return;
  cluster = sharedCluster();
  ns = await cluster.createNamespace('upstream-args');
  await cluster.apply(
    {
      apiVersion: 'inference.networking.k8s.io/v1',
      kind: 'InferencePool',
      metadata: { name: POOL },
      spec: {
        selector: { matchLabels: { app: POOL } },
        targetPorts: [{ number: 8000 }],
        endpointPickerRef: { name: ENVSUBST_DEFAULTS.EPP_NAME, port: { number: 9002 } },
      },
    },
    { namespace: ns },
  );
  await cluster.createPod(ns, 'vllm-sim-d-0', { labels: { app: POOL, 'llm-d.ai/role': 'decode' }, ip: '127.0.0.59' });
  kubeconfig = cluster.writeKubeconfig(undefined, ns);
}, 180_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await cluster?.close();
});

/**
 * The container's environment as Kubernetes builds it (literal values with $(VAR) expanded, fieldRefs from the pod),
 * every other upstream variable of the table blanked so the machine's environment cannot add warnings, and the
 * pd-router variables standing in for the cluster.
 */
function containerEnv(container: UpstreamContainer, ip: string, extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of Object.keys(TABLES[container.component].env)) env[name] = '';
  const fields: Record<string, string> = {
    POD_IP: ip,
    POD_NAME: `${container.component}-0`,
    NAMESPACE: ns,
    OTEL_RESOURCE_ATTRIBUTES_NODE_NAME: 'node-1',
    OTEL_RESOURCE_ATTRIBUTES_POD_NAME: `${container.component}-0`,
  };
  for (const name of container.fieldEnv ?? []) env[name] = fields[name]!;
  for (const [name, value] of Object.entries(container.env ?? {}))
    env[name] = value.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (message, value: string) => env[value] ?? message);
  return { ...env, ...extra };
}

async function run(container: UpstreamContainer, ip: string, extraEnv: Record<string, string> = {}) {
  let args = envsubst(container.args);
  if (container.mount) {
    const dir = mkdtempSync(path.join(tmpdir(), 'upstream-mount-'));
    for (const [file, text] of Object.entries(container.mount.files)) writeFileSync(path.join(dir, file), text);
    args = args.map((left) => left.replace(container.mount!.path, dir));
  }
  const prefix = { epp: 'PD_EPP', sidecar: 'PD_SIDECAR', sim: 'PD_SIM' }[container.component];
  const env = containerEnv(container, ip, {
    [`${prefix}_HOST`]: ip,
    ...(container.component === 'epp' ? { PD_EPP_KUBECONFIG: kubeconfig } : {}),
    ...extraEnv,
  });
  const proc = await startCli(args, READY[container.component], {
    script: componentBinary(container.component),
    env,
    timeoutMs: 45_000,
  });
  stops.push(proc.stop);
  return proc;
}

/** Every output line is a JSON object (--zap-encoder json and pd-router's default); returns them. */
function jsonLines(output: string): Obj[] {
  const lines = output.split('\n').filter((line) => line.trim() !== '');
  return lines.map((line) => {
    expect(() => JSON.parse(line), line).not.toThrow();
    return JSON.parse(line) as Obj;
  });
}

function warnedFlags(lines: Obj[]): string[] {
  return lines
    .filter((obj) => obj.level === 'warn' && obj.upstreamFlag !== undefined)
    .map((obj) => obj.upstreamFlag as string);
}

describeWith(
  req,
  "the per-component binaries with the container args of llm-d's manifests, against kube-apiserver",
  () => {
    describe.each([
      ['v0.7.1 EPP', '127.0.0.41', 'debug', []],
      ['v0.7.1 EPP, kind environment', '127.0.0.42', 'debug', []],
      ['GAIE v1.4.0 chart, default values', '127.0.0.43', 'info', []],
      [
        'GAIE v1.4.0 chart, 3 replicas, tracing on, metrics auth off',
        '127.0.0.44',
        'info',
        // --tracing and the OTEL_* variables are implemented: tracing starts (its collector is absent; nothing waits).
        [],
      ],
      ['GAIE v1.5.0 chart, default values', '127.0.0.45', 'info', []],
      ['llm-d-router ebab687 EPP', '127.0.0.46', 'debug', []],
    ] as const)('pd-router-epp with the args of %s', (name, ip, level, warnings) => {
      const c = UPSTREAM_CONTAINERS[name];

      it(`starts, serves, logs JSON at ${level} and warns about exactly ${warnings.length} ignored flag(s), once each`, async () => {
        expect(c.component).toBe('epp');
        const epp = await run(c, ip);
        // The pool from --pool-name was found through the (fake) API server, and the servers listen on upstream's ports.
        const listening = jsonLines(epp.output()).find((obj) => obj.msg === 'epp listening')!;
        expect(listening).toMatchObject({ grpcPort: 9002, healthPort: 9003, metricsPort: 9090 });
        // With or without --metrics-endpoint-auth (upstream's default: on) an admin's token may read /metrics.
        expect(
          (
            await fetch(`http://${ip}:9090/metrics`, {
              headers: { authorization: `Bearer ${cluster.info.adminToken}` },
              signal: AbortSignal.timeout(20_000),
            })
          ).status,
        ).toBe(200);
        expect(await epp.stop()).toBe(0);
        const lines = jsonLines(epp.output());
        const debug = lines.filter((obj) => obj.level === 'debug');
        if (level === 'debug') expect(debug.map((obj) => obj.msg)).toContain('effective options');
        else expect(debug).toEqual([]);
        expect(lines.find((obj) => obj.msg === 'effective options')?.options.logLevel ?? 'info').toBe(level);
        expect(warnedFlags(lines).sort()).toEqual([...warnings].sort());
      }, 90_000);
    });

    describe('the P/D decode pod of llm-d-inference-scheduler v0.7.1 (vllm-sim-pd): simulator and sidecar with their args', () => {
      it('both start; a request through the sidecar is answered by the simulator; nothing is warned', async () => {
        const ip = '127.0.0.47';
        const sim = await run(UPSTREAM_CONTAINERS['v0.7.1 simulator (decode)'], ip);
        const sidecar = await run(UPSTREAM_CONTAINERS['v0.7.1 sidecar'], ip, { PD_SIDECAR_MODEL_SERVER_HOST: ip });
        const r = await postJson(`http://${ip}:8000/v1/completions`, { model: MODEL, prompt: 'hello', max_tokens: 2 });
        expect(r.status).toBe(200);
        expect(r.body.model).toBe(MODEL);
        expect(await sidecar.stop()).toBe(0);
        expect(await sim.stop()).toBe(0);
        expect(warnedFlags(jsonLines(sidecar.output()))).toEqual([]);
        expect(warnedFlags(jsonLines(sim.output()))).toEqual([]);
      }, 90_000);
    });

    describe('v0.7.1 simulator with KV events', () => {
      // --zmq-endpoint was ignored with a warning until the simulator published KV events (issue 18); now it is used.
      it('starts with these args, publishes KV events to the manifest endpoint and warns about nothing', async () => {
        const ip = '127.0.0.49';
        const proc = await run(UPSTREAM_CONTAINERS['v0.7.1 simulator with KV events'], ip);
        const models = await getJson(`http://${ip}:8200/v1/models`);
        expect(models.body.data.map((obj: Obj) => obj.id)).toEqual([MODEL]);
        expect(await proc.stop()).toBe(0);
        expect(warnedFlags(jsonLines(proc.output()))).toEqual([]);
      }, 90_000);
    });

    describe('llm-d-router ebab687 sidecar, P/D environment', () => {
      // --mooncake-bootstrap-port was ignored with a warning until the mooncake connector was implemented (issue 19).
      it('starts with these args, serves and warns about nothing', async () => {
        const ip = '127.0.0.48';
        const proc = await run(UPSTREAM_CONTAINERS['llm-d-router ebab687 sidecar, P/D environment'], ip, {
          PD_SIDECAR_MODEL_SERVER_HOST: ip,
        });
        expect((await getJson(`http://${ip}:8000/health`)).status).toBe(200);
        expect(await proc.stop()).toBe(0);
        expect(warnedFlags(jsonLines(proc.output()))).toEqual([]);
      }, 90_000);
    });

    describe.each([['llm-d-router ebab687 simulator (decode)', '127.0.0.50', ['--render-url']]] as const)(
      '%s',
      (name, ip, warnings) => {
        it(`starts with these args and warns exactly about ${warnings.join(', ')}, once`, async () => {
          const c = UPSTREAM_CONTAINERS[name];
          const proc = await run(c, ip, c.component === 'sidecar' ? { PD_SIDECAR_MODEL_SERVER_HOST: ip } : {});
          if (c.component === 'sim') {
            const models = await getJson(`http://${ip}:8200/v1/models`);
            expect(models.body.data.map((obj: Obj) => obj.id)).toEqual([MODEL]);
          } else {
            expect((await getJson(`http://${ip}:8000/health`)).status).toBe(200);
          }
          expect(await proc.stop()).toBe(0);
          const lines = jsonLines(proc.output());
          expect(warnedFlags(lines)).toEqual(warnings);
          expect(lines.find((obj) => obj.level === 'warn' && obj.upstreamFlag === warnings[0])!.msg).toMatch(
            /is accepted for llm-d compatibility but ignored: /,
          );
        }, 90_000);
      },
    );
  },
);
