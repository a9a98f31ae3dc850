/** Shared fixtures for EPP tests: the two llm-d P/D configs verbatim, endpoints, and in-process scheduling. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { ConfigError, Rng, silentLogger } from '../../src/common/index.js';
import { RequestDirector } from '../../src/epp/director.js';
import {
  EndpointStore,
  eppConfig,
  loadEndpointPickerConfig,
  type EndpointSpec,
  type EppConfig,
  type LoadedEndpointPickerConfig,
} from '../../src/epp/index.js';
import type { EndpointMetrics } from '../../src/decider/index.js';

/** llm-d's two published P/D configs, verbatim (src/epp/config/llm-d-configs.ts). */
export {
  LLM_D_PD_EPP_CONFIG as PD_EPP_CONFIG,
  LLM_D_SIM_PD_EPP_CONFIG as SIM_PD_EPP_CONFIG,
} from '../../src/epp/index.js';

export const ROLE = 'llm-d.ai/role';

/** The message of the ConfigError loading `yaml` throws; fails the test when it loads or throws anything else. */
export function loadError(yaml: string): string {
  try {
    loadEndpointPickerConfig(yaml);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

export function spec(
  name: string,
  address: string,
  role?: string,
  extra: Record<string, string> = {},
  port = 8000,
): EndpointSpec {
  return { name, namespace: 'default', address, port, labels: { ...(role ? { [ROLE]: role } : {}), ...extra } };
}

/** A store with the given endpoints, metrics set (fresh) from `metrics` by name. */
export function storeWith(
  specs: EndpointSpec[],
  metrics: Record<string, Partial<EndpointMetrics>> = {},
): EndpointStore {
  const store = new EndpointStore();
  store.replaceAll(specs);
  for (const e of store.all()) Object.assign(e.metrics, { updatedAt: Date.now(), stale: false }, metrics[e.name] ?? {});
  return store;
}

export interface Harness {
  config: LoadedEndpointPickerConfig;
  store: EndpointStore;
  director: RequestDirector;
  /** Parses and schedules a chat request; returns the scheduling outcome. */
  route(
    prompt: string,
    opts?: { model?: string; headers?: Record<string, string>; path?: string; subset?: string[] },
  ): ReturnType<RequestDirector['schedule']>;
}

/** A seeded generator for deterministic pickers (the project's seeded RNG). */
export function seeded(seed = 1): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export function harness(yaml: string, store: EndpointStore, random: () => number = seeded()): Harness {
  const config = loadEndpointPickerConfig(yaml, { random });
  store.on('removed', (endpoint) => config.endpointRemoved.forEach((removed) => removed.endpointRemoved(endpoint.id)));
  const director = new RequestDirector(config, store, config.metrics, silentLogger());
  let n = 0;
  return {
    config,
    store,
    director,
    route(prompt, opts = {}) {
      const headers: Record<string, string> = {
        ':path': opts.path ?? '/v1/completions',
        'x-request-id': `r${++n}`,
        ...opts.headers,
      };
      const body = Buffer.from(JSON.stringify({ model: opts.model ?? 'm', prompt }));
      const parsed = director.parse(headers['x-request-id'], headers, body);
      return director.schedule(parsed.request, opts.subset);
    },
  };
}

/** Writes an endpoints file in a fresh temp dir; returns its path. */
export function endpointsFile(content: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-epp-'));
  const file = path.join(dir, 'endpoints.yaml');
  writeFileSync(file, content);
  return file;
}

export function endpointsYaml(specs: EndpointSpec[]): string {
  return `endpoints:\n${specs
    .map(
      (endpointSpec) =>
        `- name: ${endpointSpec.name}\n  namespace: ${endpointSpec.namespace}\n  address: "${endpointSpec.address}"\n  port: "${endpointSpec.port}"\n  labels: ${JSON.stringify(endpointSpec.labels)}`,
    )
    .join('\n')}\n`;
}

export interface TestEpp {
  epp: import('../../src/epp/index.js').EppHandle;
  client: import('./ext-proc-client.js').ExtProcTestClient;
  file: string;
  close(): Promise<void>;
}

/**
 * The EPP's flags for a test on loopback: plain gRPC, every port 0 (the OS picks), `configText`, and the endpoints of
 * `specs` in an endpoints file; `overrides` win.
 */
export function loopbackEppConfig(
  configText: string,
  specs: EndpointSpec[],
  overrides: Partial<EppConfig> = {},
): EppConfig {
  return eppConfig({
    host: '127.0.0.1',
    grpcPort: 0,
    grpcHealthPort: 0,
    metricsPort: 0,
    secureServing: false,
    endpointsFile: endpointsFile(endpointsYaml(specs)),
    configText,
    // Tracing (on by default, as llm-d's EPP) adds a traceparent to every header mutation; the tests that compare
    // mutations exactly run without it, as the interop harness runs upstream's EPPs (ext-proc.test.ts tests it on).
    tracing: false,
    ...overrides,
  });
}

/** Starts an EPP on loopback (plain gRPC, ports 0) over an endpoints file. */
export async function startTestEpp(
  configText: string,
  specs: EndpointSpec[],
  overrides: Partial<EppConfig> = {},
): Promise<TestEpp> {
  const { startEpp } = await import('../../src/epp/index.js');
  const { ExtProcTestClient } = await import('./ext-proc-client.js');
  const config = loopbackEppConfig(configText, specs, overrides);
  const epp = await startEpp(config, { random: seeded() });
  const client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`);
  return {
    epp,
    client,
    file: config.endpointsFile,
    async close() {
      client.close();
      await epp.close(1000);
    },
  };
}

/** Decoded messages with bytes as UTF-8 strings, for exact comparisons. */
export function decoded(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_key, item) =>
      item && item.type === 'Buffer' && Array.isArray(item.data) ? Buffer.from(item.data).toString('utf8') : item,
    ),
  );
}
