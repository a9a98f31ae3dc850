/** gRPC health states, TLS on the ext_proc port (self-signed and a reloaded certificate directory), drain. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { selfSignedCertificate } from '../../src/common/index.js';
import { EXT_PROC_SERVICE_NAME } from '../../src/common/envoy/ext-proc.js';
import { eppConfig, healthClientConstructor, startEpp, type EppHandle } from '../../src/epp/index.js';
import { waitFor } from '../helpers.js';
import { ExtProcTestClient, body, headers } from './ext-proc-client.js';
import { endpointsFile, endpointsYaml, spec } from './fixtures.js';

const CONFIG = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\ndataLayer: {injectDefaults: false}\nschedulingProfiles: [{name: default}]\n';
const base = { host: '127.0.0.1', grpcPort: 0, grpcHealthPort: 0, metricsPort: 0, configText: CONFIG };

let epp: EppHandle | undefined;
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await epp?.close(500);
  epp = undefined;
});

function healthClient(port: number): any {
  const Ctor = healthClientConstructor();
  const c = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

const check = (config: any, service: string) =>
  new Promise<string>((resolve, reject) => config.Check({ service }, { deadline: Date.now() + 3000 }, (err: Error | null, result: { status: string }) => (err ? reject(err) : resolve(result.status))));

const SERVICES = ['', 'liveness', 'readiness', EXT_PROC_SERVICE_NAME];

describe('gRPC health', () => {
  // NOT_SERVING until Kubernetes discovery has synced: test/interop/kube-discovery.test.ts (a real API server's 403).
  it('SERVING for every service name once discovery has synced; List and Watch as upstream', async () => {
    epp = await startEpp(eppConfig({ ...base, secureServing: false, endpointsFile: endpointsFile(endpointsYaml([spec('d0', '10.4.0.1')])) }));
    const h = healthClient(epp.healthPort);
    for (const s of SERVICES) expect(await check(h, s)).toBe('SERVING');
    const list = await new Promise<any>((resolve, reject) => h.List({}, (err: Error | null, reason: unknown) => (err ? reject(err) : resolve(reason))));
    expect(list.statuses).toEqual({ [EXT_PROC_SERVICE_NAME]: { status: 'SERVING' } });
    const watch = h.Watch({ service: '' });
    const code = await new Promise<number>((resolve) => watch.on('error', (err: grpc.ServiceError) => resolve(err.code)));
    expect(code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it('draining: NOT_SERVING at once, in-flight streams may finish, then the servers close', async () => {
    epp = await startEpp(eppConfig({ ...base, secureServing: false, endpointsFile: endpointsFile(endpointsYaml([spec('a', '10.4.0.2')])) }));
    const port = epp.healthPort;
    const h = healthClient(port);
    expect(await check(h, 'liveness')).toBe('SERVING');
    const client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`);
    const call = client.open();
    call.send(headers({ ':path': '/v1/completions' }));
    await waitFor(() => epp!.metrics.llmd!.streamsInflight.get().then((match) => match.values[0]?.value === 1), 5000, 'stream open');
    const closing = epp.close(5000);
    // While a stream is in flight the health server stays up and says NOT_SERVING.
    await waitFor(async () => (await check(h, 'liveness').catch(() => 'gone')) === 'NOT_SERVING', 5000, 'NOT_SERVING while draining');
    call.send(body(JSON.stringify({ model: 'm', prompt: 'hi' }), true));
    await call.waitFor(2); // the in-flight request still gets its answer
    call.end();
    await closing;
    epp = undefined;
    client.close();
    // Then the servers are gone: a new connection is refused.
    await expect(check(healthClient(port), 'liveness')).rejects.toThrow(/UNAVAILABLE/);
  });
});

describe('TLS on the ext_proc port', () => {
  const request = async (address: string, creds: grpc.ChannelCredentials) => {
    const client = new ExtProcTestClient(address, creds);
    try {
      const call = client.open();
      call.send(headers({ ':path': '/v1/completions' }), body(JSON.stringify({ model: 'm', prompt: 'hi' }), true));
      return (await call.waitFor(1, 3000))[0];
    } finally {
      client.close();
    }
  };

  it('--secure-serving (the default) serves a self-signed certificate; plain-text clients are refused', async () => {
    epp = await startEpp(eppConfig({ ...base, endpointsFile: endpointsFile(endpointsYaml([spec('a', '10.4.0.3')])) }));
    expect(epp.certificate).toMatch(/BEGIN CERTIFICATE/);
    const ok = await request(`127.0.0.1:${epp.grpcPort}`, grpc.credentials.createSsl(Buffer.from(epp.certificate!)));
    expect(ok!.request_headers).toBeTruthy();
    await expect(request(`127.0.0.1:${epp.grpcPort}`, grpc.credentials.createInsecure())).rejects.toThrow();
  });

  it('--cert-path: tls.crt/tls.key are used and reloaded when they change', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-epp-tls-'));
    const first = await selfSignedCertificate('first');
    writeFileSync(path.join(dir, 'tls.crt'), first.cert);
    writeFileSync(path.join(dir, 'tls.key'), first.key);
    epp = await startEpp(eppConfig({ ...base, certPath: dir, endpointsFile: endpointsFile(endpointsYaml([spec('a', '10.4.0.4')])) }));
    const address = `127.0.0.1:${epp.grpcPort}`;
    expect((await request(address, grpc.credentials.createSsl(Buffer.from(first.cert))))!.request_headers).toBeTruthy();
    const second = await selfSignedCertificate('second');
    writeFileSync(path.join(dir, 'tls.key'), second.key);
    writeFileSync(path.join(dir, 'tls.crt'), second.cert);
    await waitFor(async () => (await request(address, grpc.credentials.createSsl(Buffer.from(second.cert))).catch(() => undefined)) !== undefined, 10_000, 'new certificate served');
  });
});
