/** `pd-router epp` as users run it: --help, flag errors, config errors, start, serve, SIGTERM. */
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers.js';
import { ExtProcTestClient, body, headers, setHeadersOf } from './ext-proc-client.js';
import { endpointsFile, endpointsYaml, spec } from './fixtures.js';

describe('pd-router epp', () => {
  it('--help lists the flags with their defaults', async () => {
    const r = await runCli(['epp', '--help']);
    expect(r.code).toBe(0);
    for (const s of [
      'Usage: pd-router epp [flags]',
      '--config-file <string>',
      '--config-text <string>',
      '--grpc-port <int>',
      '(default 9002)',
      '(default 9003)',
      '(default 9090)',
      '--secure-serving',
      '--cert-path <string>',
      '--pool-name <string>',
      '--pool-namespace <string>',
      '--endpoint-selector <string>',
      '--endpoint-target-ports <list>',
      '--endpoints-file <string>',
      '--refresh-metrics-interval <duration>',
      '(default 50ms)',
      '--max-request-body-size <bytes>',
      '(default 64MiB)',
      '--metrics-scrape-timeout <duration>',
      '--stream-idle-timeout <duration>',
      'lruCapacityPerServer=31250',
      'Compatibility flags (llm-d)',
      '-v, --v <int>',
      '--ha-enable-leader-election',
    ]) {
      expect(r.stdout).toContain(s);
    }
    expect((await runCli(['--help'])).stdout).toMatch(/\n {2}epp\s+Endpoint Picker/);
  });

  it('bad flags and values exit 2 with a message naming them', async () => {
    const typo = await runCli(['epp', '--grpc-prot', '1']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('unknown flag --grpc-prot (did you mean --grpc-port?)');
    const bad = await runCli(['epp', '--grpc-port', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('invalid value "abc" for --grpc-port: expected an integer between 0 and 65535');
    const both = await runCli([
      'epp',
      '--pool-name',
      'p',
      '--endpoint-selector',
      'app=x',
      '--endpoint-target-ports',
      '8000',
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give only one endpoint source, got --pool-name and --endpoint-selector');
  });

  it('a bad EndpointPickerConfig or no endpoint source fails at start, exit 2, naming the plugin and parameter', async () => {
    const file = endpointsFile(endpointsYaml([spec('a', '10.5.0.1')]));
    const bad = await runCli([
      'epp',
      '--endpoints-file',
      file,
      '--config-text',
      'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins: [{type: prefix-based-pd-decider, parameters: {nonCachedTokens: -1}}]\nschedulingProfiles: [{name: a}]',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'pd-router epp: EndpointPickerConfig: plugin "prefix-based-pd-decider" (type prefix-based-pd-decider): parameter "nonCachedTokens": must be >= 0',
    );
    const none = await runCli(['epp', '--secure-serving=false']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no endpoint source');
  });

  it('an empty --config-file (a ConfigMap that lost its data) exits 2 naming the file, instead of running a non-P/D default', async () => {
    const file = endpointsFile(endpointsYaml([spec('a', '10.5.0.1')]));
    for (const content of ['', '  \n\n']) {
      const config = endpointsFile(content);
      const r = await runCli(['epp', '--endpoints-file', file, '--secure-serving=false', '--config-file', config]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--config-file ${config} is empty`);
    }
  });

  it('starts from flags, routes a request, and exits 0 on SIGTERM', async () => {
    const file = endpointsFile(endpointsYaml([spec('d', '10.5.0.2', 'decode')]));
    const epp = await startCli(
      [
        'epp',
        '--endpoints-file',
        file,
        '--secure-serving=false',
        '--host',
        '127.0.0.1',
        '--grpc-port',
        '0',
        '--grpc-health-port',
        '0',
        '--metrics-port',
        '0',
        '--config-text',
        'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\ndataLayer: {injectDefaults: false}\nschedulingProfiles: [{name: default}]',
      ],
      /"grpcPort":(\d+)/,
    );
    const client = new ExtProcTestClient(`127.0.0.1:${epp.match[1]}`);
    try {
      const call = client.open();
      call.send(headers({ ':path': '/v1/completions' }), body(JSON.stringify({ model: 'm', prompt: 'hi' }), true));
      const [r] = await call.waitFor(1);
      expect(setHeadersOf(r.request_headers!.response.header_mutation)[0]).toEqual([
        'x-gateway-destination-endpoint',
        '10.5.0.2:8000',
        'OVERWRITE_IF_EXISTS_OR_ADD',
      ]);
      call.end();
    } finally {
      client.close();
      expect(await epp.stop()).toBe(0);
    }
  });
});
