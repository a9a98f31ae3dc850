/**
 * models-data-source and models-data-extractor (llm-d v0.7.1's model-server-protocol-models): a real EPP polls the
 * simulators' /v1/models (base model and LoRA adapters with their parent), a misbehaving server is counted and keeps
 * the last list, and the data-layer wiring and parameters are checked at load.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import { loadEndpointPickerConfig, startEpp, type EppHandle } from '../../src/epp/index.js';
import { parseModelList } from '../../src/epp/datalayer/models-poller.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { metricValue, metricsText, waitFor } from '../helpers.js';
import { loopbackEppConfig, spec } from './fixtures.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const WAIT_MS = 30_000;
const CONFIG = (source = '', extractor = 'models-data-extractor') => `${LLMD}plugins:
- type: queue-scorer
- type: models-data-source
  name: vllm-models-source${source ? `\n  parameters: ${source}` : ''}
- type: ${extractor}
  name: vllm-models-extractor
dataLayer:
  sources:
  - pluginRef: vllm-models-source
    extractors:
    - pluginRef: vllm-models-extractor
schedulingProfiles: [{name: d, plugins: [{pluginRef: queue-scorer}]}]
`;

let sims: SimulatorHandle[] = [];
let epp: EppHandle | undefined;
const servers: http.Server[] = [];
afterEach(async () => {
  await epp?.close(500);
  epp = undefined;
  await Promise.all(sims.map((sim) => sim.close(500)));
  sims = [];
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function start(configText: string, ports: number[]): Promise<EppHandle> {
  epp = await startEpp(
    loopbackEppConfig(
      configText,
      ports.map((port, i) => spec(`m${i}`, '127.0.0.1', 'decode', {}, port)),
      { refreshMetricsInterval: 20 },
    ),
  );
  return epp;
}

describe('models-data-source with models-data-extractor', () => {
  it('keeps each endpoint’s /v1/models list: the base model, and LoRA adapters with their parent', async () => {
    sims = await Promise.all([
      startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: ['base-a'] })),
      startSimulator(
        simConfig({
          host: '127.0.0.1',
          port: 0,
          model: ['base-b'],
          loraModules: ['{"name":"sql-lora","path":"/a/sql"}'],
        }),
      ),
    ]);
    const e = await start(
      CONFIG('{interval: 50ms}'),
      sims.map((sim) => sim.port),
    );
    expect(e.config.warnings).toEqual([]);
    await waitFor(
      () => e.store.all().every((candidate) => candidate.metrics.models !== undefined),
      WAIT_MS,
      'both /v1/models polled',
    );
    expect(e.store.get('default/m0')!.metrics.models).toEqual([{ id: 'base-a' }]);
    expect(e.store.get('default/m1')!.metrics.models).toEqual([{ id: 'base-b' }, { id: 'sql-lora', parent: 'base-b' }]);
    // The default metrics source is still injected: queue, running and KV usage are scraped too.
    await waitFor(
      () => e.store.all().every((candidate) => candidate.metrics.updatedAt > 0),
      WAIT_MS,
      'metrics scraped',
    );
  }, 90_000);

  it('a server answering something else is counted and keeps the last list', async () => {
    let body = '{"object":"list","data":[{"id":"m","object":"model","parent":null}]}';
    const s = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': req.url === '/v1/models' ? 'application/json' : 'text/plain' });
      res.end(req.url === '/v1/models' ? body : 'vllm:num_requests_waiting 0\n');
    });
    servers.push(s);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const e = await start(CONFIG(), [(s.address() as AddressInfo).port]);
    const m = e.store.get('default/m0')!.metrics;
    await waitFor(() => m.models !== undefined, WAIT_MS, 'the first poll');
    expect(m.models).toEqual([{ id: 'm' }]);
    body = '{"data": "nope"}';
    const errors = async () =>
      metricValue(await metricsText(`http://127.0.0.1:${e.metricsPort}`), 'llm_d_epp_datalayer_poll_errors_total', {
        source_type: 'models-data-source',
      }) ?? 0;
    await waitFor(async () => (await errors()) >= 1, WAIT_MS, 'a poll error counted');
    expect(m.models).toEqual([{ id: 'm' }]);
  }, 90_000);

  it('parses OpenAI model lists; anything else is an error', () => {
    expect(
      parseModelList('{"object":"list","data":[{"id":"a","owned_by":"vllm"},{"id":"b","parent":"a","root":"/x"}]}'),
    ).toEqual([{ id: 'a' }, { id: 'b', parent: 'a' }]);
    for (const bad of ['[]', '{"data":[{"name":"a"}]}', '{"data":{}}', 'not json'])
      expect(() => parseModelList(bad), bad).toThrow();
  });
});

describe('configuration', () => {
  it("v0.7.1's model-server-protocol-models loads as the extractor, with a deprecation warning", () => {
    expect(loadEndpointPickerConfig(CONFIG('', 'model-server-protocol-models')).warnings).toEqual([
      'plugin "vllm-models-extractor" (type model-server-protocol-models) is deprecated upstream; use models-data-extractor',
    ]);
  });

  it('wiring: a metrics extractor on the models source and a models extractor on the metrics source are errors; no extractor is a warning', () => {
    expect(() => loadEndpointPickerConfig(CONFIG('', 'core-metrics-extractor'))).toThrow(
      /dataLayer.sources\[0\].extractors\[0\]: "vllm-models-extractor" is not a models extractor/,
    );
    const onMetrics = `${LLMD}plugins: [{type: queue-scorer}, {type: metrics-data-source}, {type: models-data-extractor}]\ndataLayer: {sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: models-data-extractor}]}]}\nschedulingProfiles: [{name: d, plugins: [{pluginRef: queue-scorer}]}]`;
    expect(() => loadEndpointPickerConfig(onMetrics)).toThrow(/"models-data-extractor" is not a metrics extractor/);
    const bare = `${LLMD}plugins: [{type: queue-scorer}, {type: models-data-source}]\ndataLayer: {sources: [{pluginRef: models-data-source}]}\nschedulingProfiles: [{name: d, plugins: [{pluginRef: queue-scorer}]}]`;
    const c = loadEndpointPickerConfig(bare);
    expect(c.warnings).toEqual([
      'dataLayer.sources[0]: "models-data-source" has no extractor; /v1/models is not polled',
    ]);
    expect(c.modelsSource).toBeUndefined();
  });

  it('parameters are validated, naming the plugin and the key', () => {
    for (const [params, message] of [
      ['{scheme: ftp}', 'parameter "scheme": must be http or https'],
      ['{path: v1/models}', 'parameter "path": must start with /'],
      ['{interval: soon}', 'parameter "interval"'],
      ['{clientCertPath: /c.pem}', 'parameter "clientCertPath": clientCertPath and clientKeyPath must be set together'],
      ['{port: 9000}', 'unknown parameter "port"'],
    ] as const) {
      expect(() => loadEndpointPickerConfig(CONFIG(params)), params).toThrow(ConfigError);
      expect(() => loadEndpointPickerConfig(CONFIG(params)), params).toThrow(
        `plugin "vllm-models-source" (type models-data-source): ${message}`,
      );
    }
    expect(() =>
      loadEndpointPickerConfig(
        CONFIG().replace('name: vllm-models-extractor', 'name: vllm-models-extractor\n  parameters: {x: 1}'),
      ),
    ).toThrow('plugin "vllm-models-extractor" (type models-data-extractor): unknown parameter "x"');
  });
});
