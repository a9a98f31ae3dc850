/**
 * The local P/D stack: N prefill simulators, M decode simulators each fronted by its own sidecar, optionally K
 * encoder simulators (E/P/D), the EPP with a P/D config and file discovery of those endpoints, and the gateway in
 * front. It is what `npm start` runs, what the
 * end-to-end tests and the xPyD tuning runs stand on.
 *
 * The stack supervises its endpoints the way Kubernetes would: when a simulator or sidecar exits unexpectedly, its
 * endpoint is removed from the endpoints file, so the EPP stops choosing it (as when a pod disappears).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { hostPort, silentLogger, type Logger } from '../common/index.js';
import { eppConfig, type EppConfig } from '../epp/index.js';
import { gatewayConfig, type GatewayConfig } from '../gateway/index.js';
import { sidecarConfig, type SidecarConfig } from '../sidecar/index.js';
import { simConfig, type SimConfig } from '../sim/index.js';
import { devEppConfig, type DeciderChoice } from './epp-configs.js';
import { Launcher, type ChildLogSettings, type Component, type LaunchMode } from './launcher.js';
import { LATENCY_PROFILES, type ProfileName } from './profiles.js';

export interface DevStackOptions {
  /** Encoder simulators (E in E/P/D, `--mm-encoder-only`); 0: no encode stage. */
  encode: number;
  prefill: number;
  decode: number;
  profile: ProfileName;
  model: string;
  host: string;
  /** Gateway port (8080); 0 for any free port. */
  gatewayPort: number;
  /** First port of the simulators and sidecars (prefill at base+i, decode vLLM at base+100+i, sidecars at base+200+i); 0 for free ports everywhere. */
  basePort: number;
  eppGrpcPort: number;
  eppMetricsPort: number;
  decider: DeciderChoice;
  nonCachedTokens: number;
  /** An EndpointPickerConfig file to use instead of the generated one. */
  eppConfigFile?: string;
  mode: LaunchMode;
  timeScale: number;
  seed: number;
  failureModeAllow: boolean;
  prefillFailurePolicy: SidecarConfig['prefillFailurePolicy'];
  /** Extra simulator settings for every prefill / decode simulator (tuning runs scale latencies by TP). */
  prefillSim?: Partial<SimConfig>;
  decodeSim?: Partial<SimConfig>;
  /** Extra sidecar settings. */
  sidecar?: Partial<SidecarConfig>;
  /** Extra EPP settings. */
  epp?: Partial<EppConfig>;
  /** Extra gateway settings. */
  gateway?: Partial<GatewayConfig>;
  logger?: Logger;
  /** Child processes' log level, and whether their lines are printed (processes mode). */
  childLogs?: ChildLogSettings;
  /** Child processes' drain deadline on SIGTERM. */
  shutdownTimeoutMs?: number;
}

export const DEV_STACK_DEFAULTS: DevStackOptions = {
  encode: 0,
  prefill: 1,
  decode: 1,
  profile: '8b-h100',
  model: 'sim-model',
  host: '127.0.0.1',
  gatewayPort: 8080,
  basePort: 8100,
  eppGrpcPort: 9002,
  eppMetricsPort: 9090,
  decider: 'prefix',
  nonCachedTokens: 256,
  mode: 'processes',
  timeScale: 1,
  seed: 1,
  failureModeAllow: false,
  prefillFailurePolicy: 'fail',
};

export interface DecodeUnit {
  name: string;
  sim: Component;
  sidecar: Component;
}

export interface DevStack {
  options: DevStackOptions;
  /** e.g. "2P2D". */
  shape: string;
  gateway: Component;
  epp: Component;
  /** Encoder simulators (empty without --encode). */
  encoders: Component[];
  prefills: Component[];
  decodes: DecodeUnit[];
  endpointsFile: string;
  eppConfigFile: string;
  /** Endpoint names currently in the endpoints file. */
  liveEndpoints(): string[];
  /** Takes an endpoint out of discovery (as a pod leaving the pool). */
  removeEndpoint(name: string): void;
  /**
   * Resolves when the gateway or the EPP exits on its own (not through close()): without them the stack serves
   * nothing. Simulators and sidecars that exit only leave discovery, as a pod would.
   */
  broken: Promise<string>;
  /** Stops every component, front to back, all within `deadlineMs`. */
  close(deadlineMs?: number): Promise<void>;
  /** Kills every component at once. */
  kill(): Promise<void>;
}

interface EndpointEntry {
  name: string;
  address: string;
  port: string;
  labels: Record<string, string>;
}

/** Like Promise.all, but waits for every start to settle before failing, so none is left unobserved or running. */
async function settle<T>(starts: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(starts);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}

function portOf(component: Component): number {
  return component.ports.port ?? Number(new URL(component.url).port);
}

export async function startDevStack(opts: Partial<DevStackOptions> = {}): Promise<DevStack> {
  const o: DevStackOptions = { ...DEV_STACK_DEFAULTS, ...opts };
  const logger = o.logger ?? silentLogger();
  const launcher = new Launcher({
    mode: o.mode,
    logger,
    childLogs: o.childLogs,
    shutdownTimeoutMs: o.shutdownTimeoutMs,
  });
  const workDir = mkdtempSync(path.join(tmpdir(), 'pd-router-dev-'));
  const endpointsFile = path.join(workDir, 'endpoints.yaml');
  const eppConfigFile = o.eppConfigFile ?? path.join(workDir, 'epp-config.yaml');
  if (!o.eppConfigFile) writeFileSync(eppConfigFile, devEppConfig(o.decider, o.nonCachedTokens, 16, o.encode > 0));
  const profile = LATENCY_PROFILES[o.profile].sim;
  const port = (offset: number) => (o.basePort === 0 ? 0 : o.basePort + offset);
  const started: Component[] = [];
  let closing = false;
  const entries = new Map<string, EndpointEntry>();
  const writeEndpoints = () => {
    // Write-then-rename would be atomic, but the EPP's reload keeps the last good state on a partial read anyway.
    writeFileSync(endpointsFile, toYaml({ endpoints: [...entries.values()] }));
  };
  const supervise = (config: Component, endpoint: string) => {
    void config.exited.then(() => {
      if (closing || !entries.has(endpoint)) return;
      logger.warn({ component: config.name, endpoint }, 'component exited; removing its endpoint from discovery');
      entries.delete(endpoint);
      writeEndpoints();
    });
  };
  const track = <T extends Component>(config: T) => {
    started.push(config);
    return config;
  };
  try {
    const prefillStarts = Array.from({ length: o.prefill }, (_, i) =>
      launcher
        .sim(
          `prefill-${i}`,
          simConfig({
            ...profile,
            ...o.prefillSim,
            host: o.host,
            port: port(i),
            model: [o.model],
            seed: o.seed * 1000 + i,
            timeScale: o.timeScale,
            engineId: `prefill-${i}`,
            advertiseHost: o.host,
          }),
        )
        .then(track),
    );
    const decodeSimStarts = Array.from({ length: o.decode }, (_, i) =>
      launcher
        .sim(
          `decode-${i}`,
          simConfig({
            ...profile,
            ...o.decodeSim,
            host: o.host,
            port: port(100 + i),
            model: [o.model],
            seed: o.seed * 1000 + 500 + i,
            timeScale: o.timeScale,
            engineId: `decode-${i}`,
            advertiseHost: o.host,
          }),
        )
        .then(track),
    );
    // Encoders: encoder-only simulators (E/PD), at base+300+i.
    const encodeStarts = Array.from({ length: o.encode }, (_, i) =>
      launcher
        .sim(
          `encode-${i}`,
          simConfig({
            ...profile,
            host: o.host,
            port: port(300 + i),
            model: [o.model],
            seed: o.seed * 1000 + 300 + i,
            timeScale: o.timeScale,
            engineId: `encode-${i}`,
            advertiseHost: o.host,
            mmEncoderOnly: true,
          }),
        )
        .then(track),
    );
    const [prefills, decodeSims, encoders] = await Promise.all([
      settle(prefillStarts),
      settle(decodeSimStarts),
      settle(encodeStarts),
    ]);
    const sidecars = await settle(
      decodeSims.map((sim, i) =>
        launcher
          .sidecar(
            `sidecar-${i}`,
            sidecarConfig({
              ...o.sidecar,
              host: o.host,
              port: port(200 + i),
              modelServerHost: o.host,
              modelServerPort: portOf(sim),
              secureProxy: false,
              // With encoders, the sidecar runs the encode stage (ec-nixl: the encoders' ec_transfer_params go on).
              ecConnector: o.sidecar?.ecConnector ?? (o.encode > 0 ? 'ec-nixl' : ''),
              prefillFailurePolicy: o.prefillFailurePolicy,
              prefillMaxRetries: o.prefillFailurePolicy === 'retry' ? 2 : (o.sidecar?.prefillMaxRetries ?? 0),
            }),
          )
          .then(track),
      ),
    );
    prefills.forEach((component, i) => {
      const name = `prefill-${i}`;
      entries.set(name, {
        name,
        address: o.host,
        port: String(portOf(component)),
        labels: { 'llm-d.ai/role': 'prefill' },
      });
      supervise(component, name);
    });
    encoders.forEach((component, i) => {
      const name = `encode-${i}`;
      entries.set(name, {
        name,
        address: o.host,
        port: String(portOf(component)),
        labels: { 'llm-d.ai/role': 'encode' },
      });
      supervise(component, name);
    });
    sidecars.forEach((component, i) => {
      const name = `decode-${i}`;
      entries.set(name, {
        name,
        address: o.host,
        port: String(portOf(component)),
        labels: { 'llm-d.ai/role': 'decode' },
      });
      supervise(component, name);
      supervise(decodeSims[i], name);
    });
    writeEndpoints();
    const epp = track(
      await launcher.epp(
        'epp',
        eppConfig({
          // A development stack answers `x-pd-router-debug: decision` with the P/D decision and its reason.
          decisionHeader: 'on-request',
          ...o.epp,
          host: o.host,
          grpcPort: o.basePort === 0 ? 0 : o.eppGrpcPort,
          grpcHealthPort: o.basePort === 0 ? 0 : o.eppGrpcPort + 1,
          metricsPort: o.basePort === 0 ? 0 : o.eppMetricsPort,
          secureServing: false,
          endpointsFile,
          configFile: eppConfigFile,
        }),
      ),
    );
    const gateway = track(
      await launcher.gateway(
        'gateway',
        gatewayConfig({
          ...o.gateway,
          host: o.host,
          port: o.gatewayPort,
          epp: hostPort(o.host, epp.ports.grpcPort),
          eppTls: false,
          failureModeAllow: o.failureModeAllow,
          fallbackEndpoints: sidecars.map((component) => hostPort(o.host, portOf(component))),
        }),
      ),
    );
    const broken = Promise.race(
      [gateway, epp].map((component) =>
        component.exited.then(() => {
          if (closing) return new Promise<string>(() => {});
          return `${component.name} exited`;
        }),
      ),
    );
    return {
      options: o,
      shape: `${o.encode > 0 ? `${o.encode}E` : ''}${o.prefill}P${o.decode}D`,
      gateway,
      epp,
      encoders,
      prefills,
      decodes: decodeSims.map((sim, i) => ({ name: `decode-${i}`, sim, sidecar: sidecars[i] })),
      endpointsFile,
      eppConfigFile,
      liveEndpoints: () => [...entries.keys()],
      removeEndpoint: (name) => {
        if (entries.delete(name)) writeEndpoints();
      },
      broken,
      close: async (deadlineMs = 5_000) => {
        closing = true;
        // Front to back, so no component sees its upstream vanish while it still has traffic; one deadline for all.
        const end = performance.now() + deadlineMs;
        const left = () => Math.max(0, end - performance.now());
        await gateway.stop(left());
        await epp.stop(left());
        await Promise.all(sidecars.map((component) => component.stop(left())));
        await Promise.all([...encoders, ...prefills, ...decodeSims].map((component) => component.stop(left())));
        await rm(workDir, { recursive: true, force: true });
      },
      kill: async () => {
        closing = true;
        await Promise.all(started.map((component) => component.kill()));
        await rm(workDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    closing = true;
    await Promise.all(started.map((component) => component.kill()));
    await rm(workDir, { recursive: true, force: true });
    throw e;
  }
}
