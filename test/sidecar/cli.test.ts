import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { runCli, startCli } from '../helpers.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('pd-router sidecar CLI', () => {
  it('--help documents every flag with its default', async () => {
    const r = await runCli(['sidecar', '--help']);
    expect(r.code).toBe(0);
    for (const s of [
      '--port <int>',
      '(default 8000)',
      '--model-server-port <int>',
      '(default 8200)',
      '(also accepted: --vllm-port)',
      '--kv-connector <nixlv2|sglang|shared-storage|mooncake|offloading>',
      '--decode-chunk-size <int>',
      'MOONCAKE_BOOTSTRAP_PORT                     Sets --mooncake-bootstrap-port.',
      '--data-parallel-size',
      '--secure-proxy',
      '--cert-path',
      '--enable-tls <list>',
      '--tls-insecure-skip-verify <list>',
      '--enable-ssrf-protection',
      '--inference-pool',
      'INFERENCE_POOL',
      '--enable-prefiller-sampling',
      'ENABLE_PREFILLER_SAMPLING',
      '--prefill-max-retries',
      '--prefill-retry-backoff',
      '(default 200ms)',
      '--prefill-failure-policy <fail|retry|local>',
      '--metrics-port',
      '--log-level',
      '--configuration-file',
      '--configuration <yaml>',
      'Compatibility flags (llm-d)',
      '--connector <nixlv2|sglang|shared-storage>  Sets --kv-connector.',
      '--zap-log-level <string>',
      'INFERENCE_POOL_NAME',
    ]) {
      expect(r.stdout).toContain(s);
    }
  });

  it.each([
    [
      ['--kv-connector', 'lmcache'],
      'invalid value "lmcache" for --kv-connector: expected one of nixlv2, sglang, shared-storage, mooncake, offloading',
    ],
    [
      ['--enable-p2p-pull', '--kv-connector', 'offloading'],
      '--enable-p2p-pull requires --kv-connector=nixlv2 (got "offloading")',
    ],
    [['--port', 'abc'], 'invalid value "abc" for --port: expected an integer between 0 and 65535'],
    [
      ['--enable-tls', 'prefill'],
      'invalid value ["prefill"] for --enable-tls: expected a comma-separated list of prefiller, decoder, encoder',
    ],
    [
      ['--enable-ssrf-protection'],
      '--enable-ssrf-protection needs --inference-pool (or env INFERENCE_POOL), --ssrf-allowlist or --ssrf-allowlist-file',
    ],
    [['--prefill-failure-policy', 'retry'], '--prefill-failure-policy=retry needs --prefill-max-retries >= 1'],
    [['--connectr', 'nixlv2'], 'unknown flag --connectr (did you mean --connector?)'],
    // An upstream flag's value is checked as upstream checks it.
    [
      ['--connector', 'mooncake'],
      'invalid value "mooncake" for --connector: expected one of nixlv2, sglang, shared-storage',
    ],
    // Used to pass the option check and then crash building the allowlist.
    [
      ['--enable-ssrf-protection', '--ssrf-allowlist', 'pod-a:99999'],
      'invalid value "pod-a:99999" for --ssrf-allowlist: expected host:port with a port from 1 to 65535',
    ],
    [['--enable-ssrf-protection', '--ssrf-allowlist', 'pod-a/x:80'], 'invalid value "pod-a/x:80" for --ssrf-allowlist'],
  ])('rejects %j', async (args, message) => {
    const r = await runCli(['sidecar', ...args], { env: { INFERENCE_POOL: '' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('a bad --ssrf-allowlist-file is exit 2 with one line naming the flag and the problem (was exit 1 with a stack trace)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pdr-allowlist-'));
    const bad = path.join(dir, 'bad.txt');
    writeFileSync(bad, 'pod-a:8000\n[127.0.0.1]:8000\n');
    const cases: Array<[string, string]> = [
      [
        path.join(dir, 'missing.yaml'),
        `pd-router sidecar: invalid value "${path.join(dir, 'missing.yaml')}" for --ssrf-allowlist-file: cannot read it (no such file)`,
      ],
      [dir, `pd-router sidecar: invalid value "${dir}" for --ssrf-allowlist-file: cannot read it (it is a directory)`],
      [
        bad,
        `pd-router sidecar: invalid value "${bad}" for --ssrf-allowlist-file: entry "[127.0.0.1]:8000" is not host:port (a DNS name, IPv4 or [IPv6] address and a port from 1 to 65535)`,
      ],
    ];
    for (const [file, line] of cases) {
      const r = await runCli(
        [
          'sidecar',
          '--port=0',
          '--host=127.0.0.1',
          '--secure-proxy=false',
          '--enable-ssrf-protection',
          '--ssrf-allowlist-file',
          file,
        ],
        { timeoutMs: 20_000 },
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`${line}\n`);
    }
  }, 60_000);

  it('serves HTTPS by default (self-signed) and reads --configuration-file with the same keys as the flags', async () => {
    sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: ['m'] }));
    const dir = mkdtempSync(path.join(tmpdir(), 'pdr-sidecar-'));
    const file = path.join(dir, 'sidecar.yaml');
    writeFileSync(file, `model-server-port: ${sim.port}\nmodel-server-host: 127.0.0.1\nkv-connector: nixlv2\n`);
    const proc = await startCli(
      ['sidecar', '--port', '0', '--host', '127.0.0.1', '--configuration-file', file],
      /"url":"(https:[^"]+)".*sidecar listening/,
    );
    try {
      const url = proc.match[1];
      const agent = new Agent({ connect: { rejectUnauthorized: false } });
      const r = await request(`${url}/v1/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', prompt: 'hi' }),
      });
      expect(r.statusCode).toBe(200);
      expect(((await r.body.json()) as { choices: unknown[] }).choices).toHaveLength(1);
      await agent.close();
    } finally {
      expect(await proc.stop()).toBe(0);
    }
  });

  it("accepts upstream's deprecated --vllm-port and --zap-log-level", async () => {
    sim = await startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: ['m'] }));
    const proc = await startCli(
      [
        'sidecar',
        '--port=0',
        '--host=127.0.0.1',
        `--vllm-port=${sim.port}`,
        '--model-server-host=127.0.0.1',
        '--secure-proxy=false',
        '--zap-log-level=1',
      ],
      /"url":"(http:[^"]+)".*sidecar listening/,
    );
    try {
      expect(proc.output()).toContain(`"decoder":"127.0.0.1:${sim.port}"`);
      const r = await fetch(`${proc.match[1]}/ready`);
      expect(r.status).toBe(200);
    } finally {
      expect(await proc.stop()).toBe(0);
    }
  });
});
