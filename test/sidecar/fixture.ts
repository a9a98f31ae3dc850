/** Two simulators (prefill, decode) and a sidecar in front of the decode one, all on loopback. */
import {
  simConfig,
  startSimulator,
  type RequestRecord,
  type SimConfig,
  type SimulatorHandle,
} from '../../src/sim/index.js';
import { sidecarConfig, startSidecar, type SidecarConfig, type SidecarHandle } from '../../src/sidecar/index.js';
import type { Logger } from '../../src/common/index.js';

export const MODEL = 'pd-model';

export interface PdFixture {
  prefill: SimulatorHandle;
  decode: SimulatorHandle;
  sidecar: SidecarHandle;
  /** Value for x-prefiller-host-port. */
  prefillHeader: string;
  close(): Promise<void>;
}

export interface PdOptions {
  /** Sidecar overrides, or a function of the simulators' ports (e.g. for an allowlist naming the prefiller). */
  sidecar?:
    | Partial<SidecarConfig>
    | ((ports: { prefill: number; decode: number; bootstrap?: number }) => Partial<SidecarConfig>);
  prefill?: Partial<SimConfig>;
  decode?: Partial<SimConfig>;
  /** The sidecar's logger (silent by default). */
  logger?: Logger;
}

export async function startPd(pdOptions: PdOptions = {}): Promise<PdFixture> {
  const prefill = await startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      model: [MODEL],
      mode: 'echo',
      engineId: 'prefill-0',
      seed: 1,
      ...pdOptions.prefill,
    }),
  );
  const decode = await startSimulator(
    simConfig({
      host: '127.0.0.1',
      port: 0,
      model: [MODEL],
      mode: 'echo',
      engineId: 'decode-0',
      seed: 2,
      ...pdOptions.decode,
    }),
  );
  const overrides =
    typeof pdOptions.sidecar === 'function'
      ? pdOptions.sidecar({ prefill: prefill.port, decode: decode.port, bootstrap: prefill.mooncakeBootstrap?.port })
      : pdOptions.sidecar;
  const sidecar = await startSidecar(
    sidecarConfig({
      host: '127.0.0.1',
      port: 0,
      secureProxy: false,
      modelServerHost: '127.0.0.1',
      modelServerPort: decode.port,
      ...overrides,
    }),
    pdOptions.logger,
  );
  return {
    prefill,
    decode,
    sidecar,
    prefillHeader: `127.0.0.1:${prefill.port}`,
    close: async () => {
      await sidecar.close();
      await Promise.all([prefill.close(), decode.close()]);
    },
  };
}

export function records(sim: SimulatorHandle): readonly RequestRecord[] {
  return sim.engine.recentRequests();
}

export function lastRecord(sim: SimulatorHandle): RequestRecord {
  const all = sim.engine.recentRequests();
  if (all.length === 0) throw new Error('no request recorded');
  return all[all.length - 1];
}
