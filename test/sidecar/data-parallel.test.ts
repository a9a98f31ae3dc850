import { afterEach, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { sidecarConfig, startSidecar, type SidecarHandle } from '../../src/sidecar/index.js';
import { freePortRange, postJson } from '../helpers.js';

let sims: SimulatorHandle[] = [];
let sidecar: SidecarHandle | undefined;
afterEach(async () => {
  await sidecar?.close();
  await Promise.all(sims.map((handle) => handle.close()));
  sims = [];
  sidecar = undefined;
});

describe('data-parallel ranks', () => {
  it('rank r listens on port+r and forwards to model-server-port+r; x-data-parallel-host-port reroutes on rank 0', async () => {
    const vllmBase = await freePortRange(2);
    const decode = await startSimulator(simConfig({ host: '127.0.0.1', port: vllmBase, dataParallelSize: 2, model: ['m'], engineId: 'dec' }));
    const prefill = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: ['m'] }));
    sims = [decode, prefill];
    const sidecarBase = await freePortRange(2);
    sidecar = await startSidecar(
      sidecarConfig({ host: '127.0.0.1', port: sidecarBase, secureProxy: false, modelServerHost: '127.0.0.1', modelServerPort: vllmBase, dataParallelSize: 2, podIp: '127.0.0.1' }),
    );
    expect(sidecar.ports).toEqual([sidecarBase, sidecarBase + 1]);
    const [rank0, rank1] = decode.ranks;
    const body = { model: 'm', prompt: 'hello' };
    const pd = { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}` };

    expect((await postJson(`http://127.0.0.1:${sidecarBase + 1}/v1/completions`, body, pd)).status).toBe(200);
    expect(rank1!.engine.recentRequests()).toHaveLength(1);
    expect(rank1!.engine.recentRequests()[0]!.kind).toBe('decode');
    expect(rank0!.engine.recentRequests()).toHaveLength(0);

    expect((await postJson(`http://127.0.0.1:${sidecarBase}/v1/completions`, body)).status).toBe(200);
    expect(rank0!.engine.recentRequests()).toHaveLength(1);

    // Deprecated header: rank 0 sends the decode to rank 1's vLLM.
    expect((await postJson(`http://127.0.0.1:${sidecarBase}/v1/completions`, body, { 'x-data-parallel-host-port': `127.0.0.1:${sidecarBase + 1}` })).status).toBe(200);
    expect(rank1!.engine.recentRequests()).toHaveLength(2);
    const unknown = await postJson(`http://127.0.0.1:${sidecarBase}/v1/completions`, body, { 'x-data-parallel-host-port': '10.0.0.1:1' });
    expect(unknown.status).toBe(400);
    expect(unknown.text).toBe('');
  });

  it('rejects a port range past 65535', async () => {
    const { runCli } = await import('../helpers.js');
    const r = await runCli(['sidecar', '--port', '65535', '--data-parallel-size', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--port 65535 + --data-parallel-size 2 exceeds 65535');
  });
});
