/**
 * The simulator playing the engine side of the mooncake and offloading connectors: the Mooncake bootstrap server's
 * /query, and OffloadingConnector legs recorded as prefill and decode with the parameters they carried.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { getJson, postJson } from '../helpers.js';

const MODEL = 'pd-model';
let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const start = (overrides: object) =>
  startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [MODEL], mode: 'echo', engineId: 'p', ...overrides }));

describe('simulator: other KV connectors', () => {
  it("--mooncake-bootstrap-port serves each rank's engine id at GET /query and counts the queries; off by default", async () => {
    sim = await start({ mooncakeBootstrapPort: 0, dataParallelSize: 2, advertiseHost: '10.1.2.3' });
    const bootstrap = sim.mooncakeBootstrap!;
    const r = await getJson(`http://127.0.0.1:${bootstrap.port}/query`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      '0': { engine_id: 'p-dp0', worker_addr: { '0': { '0': `10.1.2.3:${sim.ranks[0].port}` } } },
      '1': { engine_id: 'p-dp1', worker_addr: { '0': { '0': `10.1.2.3:${sim.ranks[1].port}` } } },
    });
    expect((await getJson(`http://127.0.0.1:${bootstrap.port}/other`)).status).toBe(404);
    expect(bootstrap.queries).toBe(1);
    await sim.close();
    sim = await start({});
    expect(sim.mooncakeBootstrap).toBeUndefined();
  });

  it('records OffloadingConnector legs: remote_decoder as a prefill (its token computed), remote_prefiller as a decode', async () => {
    sim = await start({});
    const messages = [{ role: 'user', content: 'one two three four' }];
    const prefillKv = { remote_decoder: { kv_request_id: 'k1' } };
    const p = await postJson(`${sim.url}/v1/chat/completions`, {
      model: MODEL,
      messages,
      max_tokens: 1,
      kv_transfer_params: prefillKv,
    });
    expect(p.status).toBe(200);
    expect(p.body.choices[0].finish_reason).toBe('length');
    expect(p.body).not.toHaveProperty('kv_transfer_params');
    const decodeKv = { remote_prefiller: { kv_request_id: 'k1', remote_host: '10.0.0.1', remote_port: 7777 } };
    const d = await postJson(`${sim.url}/v1/chat/completions`, {
      model: MODEL,
      messages,
      kv_transfer_params: decodeKv,
    });
    expect(d.status).toBe(200);
    expect(sim.engine.recentRequests().map((record) => [record.kind, record.kvTransferParams])).toEqual([
      ['prefill', prefillKv],
      ['decode', decodeKv],
    ]);
  });
});
