/** Kubernetes objects and local "pods" for the interop tests that run against the real API server. */
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import pino from 'pino';
import net from 'node:net';
import type * as k8s from '@kubernetes/client-node';
import type { KubeCluster } from './control-plane.js';
import type { EppHandle } from '../../src/epp/index.js';
import type { CrdChange, InferenceCrdWatcher } from '../../src/epp/datalayer/inference-crds.js';
import { simConfig, startSimulator, type SimConfig, type SimulatorHandle } from '../../src/sim/index.js';

/**
 * The namespaced RBAC Gateway API Inference Extension's inferencepool chart (v1.5.0, config/charts) grants its EPP's
 * ServiceAccount: the pool and its pods, read-only (and the objectives and rewrites of the x-k8s.io group).
 * llm-d-peers.test.ts renders the chart with helm and checks these rules against it.
 */
export const GAIE_EPP_RULES: k8s.V1PolicyRule[] = [
  {
    apiGroups: ['inference.networking.x-k8s.io'],
    resources: ['inferenceobjectives', 'inferencemodelrewrites'],
    verbs: ['get', 'watch', 'list'],
  },
  { apiGroups: ['inference.networking.k8s.io'], resources: ['inferencepools'], verbs: ['get', 'watch', 'list'] },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'watch', 'list'] },
];

/** An InferencePool, GA (inference.networking.k8s.io/v1) or v1alpha2 (inference.networking.x-k8s.io, GAIE <= v1.4). */
export function inferencePool(
  name: string,
  matchLabels: Record<string, string>,
  ports: number[],
  version: 'v1' | 'v1alpha2' = 'v1',
): k8s.KubernetesObject & Record<string, unknown> {
  if (version === 'v1alpha2') {
    return {
      apiVersion: 'inference.networking.x-k8s.io/v1alpha2',
      kind: 'InferencePool',
      metadata: { name },
      spec: { selector: matchLabels, targetPortNumber: ports[0], extensionRef: { name: 'epp' } },
    };
  }
  return {
    apiVersion: 'inference.networking.k8s.io/v1',
    kind: 'InferencePool',
    metadata: { name },
    spec: {
      selector: { matchLabels },
      targetPorts: ports.map((number) => ({ number })),
      endpointPickerRef: { name: 'epp', port: { number: 9002 } },
    },
  };
}

/**
 * The pool `pool` (pods labelled app=vllm-pd, target port `port`) and an `epp` ServiceAccount with GAIE's chart RBAC,
 * in `namespace`: what an EPP needs to watch the pool. Returns that account's kubeconfig.
 */
export async function eppPoolAccess(cluster: KubeCluster, namespace: string, port: number): Promise<string> {
  await cluster.apply(inferencePool('pool', { app: 'vllm-pd' }, [port]), { namespace });
  await cluster.createServiceAccount(namespace, 'epp');
  await cluster.grant(namespace, 'epp', 'epp', GAIE_EPP_RULES);
  return cluster.serviceAccountKubeconfig(namespace, 'epp');
}

/** A port that is free on every one of the loopback addresses right now (pods of a pool share their target port). */
export async function freePortOn(addresses: string[]): Promise<number> {
  const tryBind = (port: number, host: string) =>
    new Promise<net.Server | undefined>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(undefined));
      s.listen(port, host, () => resolve(s));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    const held: net.Server[] = [];
    for (const a of addresses) {
      const s = await tryBind(port, a);
      if (!s) break;
      held.push(s);
    }
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
    if (held.length === addresses.length) return port;
  }
  throw new Error(`no port free on all of ${addresses.join(', ')}`);
}

/** pd-router simulators, one per address, all on `port` (the pool's target port). */
export async function startSimsOn(
  addresses: string[],
  port: number,
  config: Partial<SimConfig> = {},
): Promise<SimulatorHandle[]> {
  const sims: SimulatorHandle[] = [];
  try {
    for (const host of addresses)
      sims.push(
        await startSimulator(simConfig({ host, port, model: ['sim-model'], mode: 'echo', seed: 1, ...config })),
      );
  } catch (e) {
    await Promise.all(sims.map((handle) => handle.close()));
    throw e;
  }
  return sims;
}

/**
 * Resolves once `predicate()` holds: checked now and after each `event` of `emitter` (the component's own state
 * change), failing after `timeoutMs` with `what` and the last state described by `describe()`.
 */
export function until(
  emitter: EventEmitter<any>,
  event: string,
  predicate: () => boolean,
  timeoutMs: number,
  what: string,
  describe: () => string = () => '',
): Promise<void> {
  if (predicate()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      if (!predicate()) return;
      clearTimeout(timer);
      emitter.off(event, onEvent);
      resolve();
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; state: ${describe()}`));
    }, timeoutMs);
    emitter.on(event, onEvent);
  });
}

/**
 * Resolves with the CRD watcher's next event for `object` (`<ns>/<name>`) with `outcome`, or rejects after
 * `timeoutMs`; register before writing the object.
 */
export function nextChange(
  timeoutMs: number,
  watcher: InferenceCrdWatcher,
  object: string,
  outcome: CrdChange['outcome'],
): Promise<CrdChange> {
  return new Promise((resolve, reject) => {
    const on = (crdChange: CrdChange) => {
      if (crdChange.object !== object || crdChange.outcome !== outcome) return;
      clearTimeout(timer);
      watcher.off('change', on);
      resolve(crdChange);
    };
    const timer = setTimeout(() => {
      watcher.off('change', on);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${object} to be ${outcome}`));
    }, timeoutMs);
    watcher.on('change', on);
  });
}

/** A pino logger (level info) whose lines a test can read and wait for, each wait failing after `timeoutMs`. */
export function capturedLogger(timeoutMs: number): {
  logger: pino.Logger;
  lines: string[];
  untilLine: (re: RegExp, what: string) => Promise<void>;
} {
  const lines: string[] = [];
  const events = new EventEmitter();
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(line);
        events.emit('line', line);
      }
      done();
    },
  });
  const untilLine = (re: RegExp, what: string) =>
    until(
      events,
      'line',
      () => lines.some((line) => re.test(line)),
      timeoutMs,
      what,
      () => lines.slice(-5).join('\n'),
    );
  return { logger: pino({ level: 'info' }, stream), lines, untilLine };
}

/** The EPP's endpoints as sorted `<id>@<host:port>`, each followed by `[<llm-d.ai/role>]` when `withRole`. */
export function endpointIds(epp: EppHandle, withRole = false): string[] {
  return epp.store
    .all()
    .map(
      (endpoint) =>
        `${endpoint.id}@${endpoint.hostPort}` + (withRole ? `[${endpoint.labels['llm-d.ai/role'] ?? ''}]` : ''),
    )
    .sort();
}

/** Resolves once the EPP's endpoints (endpointIds) are exactly `expected`, checked on each store change. */
export function untilEndpointIds(
  epp: EppHandle,
  expected: string[],
  what: string,
  timeoutMs: number,
  withRole = false,
): Promise<void> {
  const want = [...expected].sort().join();
  return until(
    epp.store,
    'changed',
    () => endpointIds(epp, withRole).join() === want,
    timeoutMs,
    what,
    () => endpointIds(epp, withRole).join(),
  );
}
