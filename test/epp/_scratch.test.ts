import { it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEpp, eppConfig } from '../../src/epp/index.js';
import { ExtProcTestClient, headers, body, setHeadersOf } from './ext-proc-client.js';
it('smoke', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'epp-'));
  const file = path.join(dir, 'endpoints.yaml');
  writeFileSync(file, `endpoints:\n- {name: p, address: 10.0.0.1, port: "8000", labels: {llm-d.ai/role: prefill}}\n- {name: d, address: 10.0.0.2, port: 8000, labels: {llm-d.ai/role: decode}}\n`);
  const cfg = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: queue-scorer
- type: prefill-filter
- type: decode-filter
- type: always-disagg-pd-decider
- type: disagg-profile-handler
  parameters: {deciders: {prefill: always-disagg-pd-decider}}
dataLayer: {injectDefaults: false}
schedulingProfiles:
- {name: prefill, plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]}
- {name: decode, plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}]}
`;
  const epp = await startEpp(eppConfig({ host: '127.0.0.1', grpcPort: 0, grpcHealthPort: 0, metricsPort: 0, secureServing: false, endpointsFile: file, configText: cfg }));
  const c = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`);
  const call = c.open();
  call.send(headers({ ':path': '/v1/chat/completions', 'x-prefiller-host-port': 'evil:1', hi: 'mom' }), body('{"model":"m","messages":[{"role":"user","content":"hello"}]}', true));
  const r = await call.waitFor(2);
  console.log(JSON.stringify(r[0], null, 1).slice(0, 3000), setHeadersOf(r[0]!.request_headers!.response.header_mutation));
  console.log(Buffer.from((r[1] as any).request_body.response.body_mutation.streamed_response.body).toString());
  call.end();
  console.log(await call.ended);
  c.close();
  await epp.close(1000);
});
