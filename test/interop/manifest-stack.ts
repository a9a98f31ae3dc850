/**
 * What the manifest tests do with a rendered stack once its pods run (local-kubelet.ts): find the pool, wait until an
 * EPP sees every endpoint, send requests through pd-router's gateway (the Envoy stand-in) to an EPP pod, and read what
 * each model server received.
 */
import { expect } from 'vitest';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import { getJson, metricsText, metricValue, postJson, waitFor } from '../helpers.js';
import type { ContainerRun, LocalKubelet, PodRun } from './local-kubelet.js';

type Obj = Record<string, any>;

/** Longer than every decider threshold of the configs run here (16 to 256 estimated tokens), within 1024 simulated tokens. */
export const LONG_PROMPT = Array.from({ length: 300 }, (_, i) => `manifest${i}`).join(' ');

export const byKind = (objects: Obj[], kind: string) => objects.filter((o) => o.kind === kind);
export const named = (objects: Obj[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in the rendered objects: ${objects.map((x) => `${x.kind}/${x.metadata?.name}`).join(', ')}`);
  return o;
};

/** The Deployments whose pods the pool selects (the model servers), and the rest (the EPPs). */
export function splitDeployments(objects: Obj[], pool: Obj): { modelServers: Obj[]; others: Obj[] } {
  const sel = (pool.spec.selector.matchLabels ?? pool.spec.selector) as Record<string, string>;
  const selects = (d: Obj) => Object.entries(sel).every(([k, v]) => d.spec.template.metadata.labels?.[k] === v);
  const deployments = byKind(objects, 'Deployment');
  return { modelServers: deployments.filter(selects), others: deployments.filter((d) => !selects(d)) };
}

/** The container's args as rendered (before $(VAR) expansion, which these manifests do not use for args). */
export const renderedArgs = (c: ContainerRun) => ((c.raw.args ?? []) as unknown[]).map(String);

/** The flag value in an argv (`--flag=value` or `--flag value`). */
export function flagValue(argv: string[], flag: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag) return argv[i + 1];
    if (argv[i]!.startsWith(`${flag}=`)) return argv[i]!.slice(flag.length + 1);
  }
  return undefined;
}

/** The EPP container of a pod. */
export function eppOf(pod: PodRun): ContainerRun {
  const c = pod.containers.find((x) => x.component === 'epp');
  if (!c) throw new Error(`pod ${pod.name} has no pd-router EPP container`);
  return c;
}

/** Waits until the EPP in `pod` counts `n` ready endpoints of its pool (its metrics port from its args, default 9090). */
export async function untilEppSees(pod: PodRun, pool: string, n: number): Promise<void> {
  const epp = eppOf(pod);
  const url = `http://${pod.ip}:${flagValue(epp.argv, '--metrics-port') ?? '9090'}`;
  await waitFor(async () => metricValue(await metricsText(url).catch(() => ''), 'llm_d_epp_ready_endpoints', { name: pool }) === n, 30_000, `${pod.name} sees ${n} endpoints of ${pool}`);
}

/** pd-router's gateway in front of the EPP in `pod` (TLS unless its args turn secure serving off, as pd-router's default is). */
export async function gatewayTo(pod: PodRun): Promise<GatewayHandle> {
  const epp = eppOf(pod);
  const port = flagValue(epp.argv, '--grpc-port') ?? '9002';
  const tls = flagValue(epp.argv, '--secure-serving') !== 'false';
  return startGateway(gatewayConfig({ host: '127.0.0.1', port: 0, epp: `${pod.ip}:${port}`, eppTls: tls }));
}

export interface ModelServer {
  pod: PodRun;
  role: string;
  url: string;
}

/** Every simulator serving a pod of the kubelet (pd-router-sim processes and stand-ins), with the pod's llm-d.ai/role. */
export function modelServers(kubelet: LocalKubelet): ModelServer[] {
  return kubelet.pods.flatMap((pod) =>
    pod.containers
      .filter((c) => c.component === 'sim' || c.role === 'simulator')
      .map((c) => ({ pod, role: pod.labels['llm-d.ai/role'] ?? '', url: `http://${pod.ip}:${c.sim ? c.sim.port : (flagValue(c.argv, '--port') ?? '8000')}` })),
  );
}

/** The requests each model server recorded since the last clear. */
export async function records(servers: ModelServer[]): Promise<Array<ModelServer & { requests: Obj[] }>> {
  return Promise.all(servers.map(async (s) => ({ ...s, requests: ((await getJson(`${s.url}/admin/requests`)).body?.requests ?? []) as Obj[] })));
}

export async function clearRecords(servers: ModelServer[]): Promise<void> {
  await Promise.all(servers.map((s) => fetch(`${s.url}/admin/requests`, { method: 'DELETE', signal: AbortSignal.timeout(10_000) })));
}

/**
 * Sends a long completion request through the gateway and checks it went P/D: exactly one prefill (kv_transfer_params
 * do_remote_decode) on a prefill pod, and exactly one decode on a decode pod carrying that prefill pod's
 * kv_transfer_params (remote_host is the prefill pod's address). Returns the pods and the decode leg's record.
 */
export async function expectDisaggregated(gateway: GatewayHandle, model: string, servers: ModelServer[]): Promise<{ decodePod: PodRun; prefillPod: PodRun; decode: Obj }> {
  await clearRecords(servers);
  const r = await postJson(`${gateway.url}/v1/completions`, { model, prompt: LONG_PROMPT, max_tokens: 4 });
  expect(r.status, r.text).toBe(200);
  expect(typeof r.body.choices[0].text).toBe('string');
  const seen = await records(servers);
  const prefills = seen.flatMap((s) => s.requests.filter((x) => x.kind === 'prefill').map((x) => ({ s, x })));
  const decodes = seen.flatMap((s) => s.requests.filter((x) => x.kind === 'decode').map((x) => ({ s, x })));
  expect(prefills.map((p) => p.s.role)).toEqual(['prefill']);
  expect(decodes.map((d) => d.s.role)).toEqual(['decode']);
  expect(seen.flatMap((s) => s.requests).length).toBe(2);
  expect((decodes[0]!.x.kvTransferParams as Obj).remote_host).toBe(prefills[0]!.s.pod.ip);
  return { decodePod: decodes[0]!.s.pod, prefillPod: prefills[0]!.s.pod, decode: decodes[0]!.x };
}

/** Sends a short request through the gateway; it must be answered by exactly one model server, without a prefill leg. */
export async function expectServedLocally(gateway: GatewayHandle, model: string, servers: ModelServer[]): Promise<ModelServer> {
  await clearRecords(servers);
  const r = await postJson(`${gateway.url}/v1/completions`, { model, prompt: 'hello', max_tokens: 2 });
  expect(r.status, r.text).toBe(200);
  const seen = (await records(servers)).filter((s) => s.requests.length > 0);
  expect(seen.length).toBe(1);
  expect(seen[0]!.requests.map((x) => x.kind)).toEqual(['aggregated']);
  return seen[0]!;
}
