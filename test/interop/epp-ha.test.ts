/**
 * EPP high availability against the real kube-apiserver: three pd-router-epp processes with
 * --ha-enable-leader-election on one Lease (upstream's name), each test in its own namespace. The Lease is watched as
 * admin, so handover times are measured from the signal to the watch event naming the new holder (no polling); the
 * replicas' readiness and ext_proc answers are then read from the replicas themselves.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import { upstreamLeaseName } from '../../src/epp/ha/index.js';
import { gatewayConfig, startGateway, type GatewayHandle } from '../../src/gateway/index.js';
import type { SimulatorHandle } from '../../src/sim/index.js';
import { postJson } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { LEASE_RULES, LeaseWatch, startReplicas, untilOneLeader, type EppReplica, type Probe } from './epp-replicas.js';
import { GAIE_EPP_RULES, freePortOn, inferencePool, startSimsOn } from './kube-fixtures.js';
import { describeWith, needSharedControlPlane, openSharedCluster } from './need.js';

const req = await needSharedControlPlane();
let cluster: KubeCluster;
openSharedCluster(req, (opened) => (cluster = opened));

let replicas: EppReplica[] = [];
let watch: LeaseWatch | undefined;
let sims: SimulatorHandle[] = [];
let gateway: GatewayHandle | undefined;
afterEach(async () => {
  watch?.stop();
  await gateway?.close();
  await Promise.all(replicas.map((eppReplica) => eppReplica.close()));
  await Promise.all(sims.map((handle) => handle.close()));
  replicas = [];
  sims = [];
  watch = gateway = undefined;
});

const T = 60_000; // bound of each wait on a loaded machine
/** Short lease timings for the tests that wait one out: 4 s lease, 3 s renew deadline, 500 ms retry period. */
const FAST = { leaseDuration: '4s', renewDeadline: '3s', retryPeriod: '500ms' };
const FAST_LEASE_MS = 4_000;
/** Allowance on top of a bound for API round trips and process scheduling on a loaded 2-core machine. */
const LOADED_MACHINE_MS = 3_000;

/** Measured handover times, printed at the end for the README. */
const measured: Record<string, number> = {};
afterAll(() => {
  if (Object.keys(measured).length > 0)
    process.stdout.write(`[epp-ha] handover times (ms): ${JSON.stringify(measured)}\n`);
});

/** A namespace with the pool, two simulator pods and a ServiceAccount "epp" with GAIE's rules plus `extra`. */
async function setUp(prefix: string, extra = LEASE_RULES): Promise<{ ns: string; kubeconfig: string; lease: string }> {
  const addresses = ['127.0.0.71', '127.0.0.72'];
  const port = await freePortOn(addresses);
  sims = await startSimsOn(addresses, port);
  const ns = await cluster.createNamespace(prefix);
  await cluster.createServiceAccount(ns, 'epp');
  await cluster.grant(ns, 'epp', 'epp', [...GAIE_EPP_RULES, ...extra]);
  await cluster.apply(inferencePool('pool', { app: 'vllm' }, [port]), { namespace: ns });
  await cluster.createPod(ns, 'd0', { labels: { app: 'vllm', 'llm-d.ai/role': 'decode' }, ip: addresses[0] });
  await cluster.createPod(ns, 'd1', { labels: { app: 'vllm', 'llm-d.ai/role': 'decode' }, ip: addresses[1] });
  const lease = upstreamLeaseName(ns, 'pool');
  watch = new LeaseWatch(cluster, ns, lease);
  await watch.start();
  return { ns, kubeconfig: await cluster.serviceAccountKubeconfig(ns, 'epp'), lease };
}

const probeAll = (rs: EppReplica[]) =>
  Promise.all(rs.filter((eppReplica) => eppReplica.proc.running).map((eppReplica) => eppReplica.probe()));
const describeProbes = (ps: Probe[]) =>
  ps.map((probe) => `epp-${probe.replica}:${probe.readiness}/${probe.routing}`).join(' ');

describeWith(req, 'EPP leader election (3 replicas, real kube-apiserver)', () => {
  it('exactly one replica is ready and routes; the others report NOT_SERVING, answer ext_proc with 503 rejected-not-leader and stay live', async () => {
    const { ns, kubeconfig, lease } = await setUp('epp-ha-one');
    replicas = await startReplicas(3, { namespace: ns, kubeconfig, ...FAST }, T);
    const leader = await untilOneLeader(replicas, T);
    expect(watch!.holder).toBe(leader.identity);
    for (let round = 0; round < 5; round++) {
      const probes = await probeAll(replicas);
      expect(
        probes.filter((probe) => probe.readiness === 'SERVING').map((probe) => probe.replica),
        describeProbes(probes),
      ).toEqual([leader.index]);
      expect(
        probes.filter((probe) => probe.routing === 'routes').map((probe) => probe.replica),
        describeProbes(probes),
      ).toEqual([leader.index]);
      expect(
        probes
          .filter((probe) => probe.replica !== leader.index)
          .every((probe) => probe.readiness === 'NOT_SERVING' && probe.routing === 'not-leader'),
        describeProbes(probes),
      ).toBe(true);
    }
    // Followers are live (a liveness probe must not restart them), and run discovery: their endpoints are synced.
    for (const r of replicas) expect(await r.readiness(2_000, 'liveness')).toBe('SERVING');
    for (const r of replicas) expect(await r.readiness(2_000, 'unknown-service')).toBe('SERVICE_UNKNOWN');
    const follower = replicas.find((eppReplica) => eppReplica !== leader)!;
    const answer = await follower.route();
    expect(answer.detail).toMatch(/^ServiceUnavailable rejected-not-leader /); // Envoy's status name for 503
    expect(answer.detail).toContain(`this EPP replica is not the leader (the leader is ${leader.identity})`);
    // controller-runtime's leader gauge, as upstream's EPP serves it.
    for (const r of replicas) {
      const text = await (
        await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`, { signal: AbortSignal.timeout(20_000) })
      ).text();
      expect(text, `epp-${r.index}`).toContain(
        `leader_election_master_status{name="${lease}"} ${r === leader ? 1 : 0}`,
      );
    }
    const stored = await cluster.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${lease}`);
    expect(stored.json.spec).toMatchObject({ holderIdentity: leader.identity, leaseDurationSeconds: 4 });
  }, 240_000);

  it('SIGTERM: the leader releases the Lease at once and a follower takes over well within the 15 s lease (default timings)', async () => {
    const { ns, kubeconfig } = await setUp('epp-ha-term');
    replicas = await startReplicas(3, { namespace: ns, kubeconfig }, T);
    const leader = await untilOneLeader(replicas, T);
    const sent = performance.now();
    leader.signal('SIGTERM');
    const at = await watch!.until((host) => host !== '' && host !== leader.identity, sent, T, 'a new holder');
    measured.sigtermToNewHolder = Math.round(at - sent);
    const next = await untilOneLeader(replicas, T, [leader]);
    measured.sigtermToNewLeaderReady = Math.round(performance.now() - sent);
    expect(watch!.holder).toBe(next.identity);
    // The release is what hands over: far sooner than the 15 s lease would expire (and than the 2 s poll period).
    expect(measured.sigtermToNewHolder).toBeLessThan(1_000 + LOADED_MACHINE_MS);
    expect(watch!.changes.map((config) => config.holder)).toContain(''); // the holder was cleared, as client-go's ReleaseOnCancel
    expect(await leader.proc.waitExit()).toBe(0);
    expect(leader.lines().some((line) => /released the lease/.test(line.msg ?? ''))).toBe(true);
  }, 240_000);

  it('SIGKILL: a follower takes over within the lease duration (4 s)', async () => {
    const { ns, kubeconfig } = await setUp('epp-ha-kill');
    replicas = await startReplicas(3, { namespace: ns, kubeconfig, ...FAST }, T);
    const leader = await untilOneLeader(replicas, T);
    const sent = performance.now();
    leader.signal('SIGKILL');
    const at = await watch!.until((host) => host !== '' && host !== leader.identity, sent, T, 'a new holder');
    measured.sigkillToNewHolder = Math.round(at - sent);
    await untilOneLeader(replicas, T, [leader]);
    measured.sigkillToNewLeaderReady = Math.round(performance.now() - sent);
    expect(measured.sigkillToNewHolder).toBeLessThanOrEqual(FAST_LEASE_MS + LOADED_MACHINE_MS);
  }, 240_000);

  it('SIGSTOP then SIGCONT of the leader never leaves two leaders serving: resumed, it answers as a follower from its first answer', async () => {
    const { ns, kubeconfig } = await setUp('epp-ha-stop');
    replicas = await startReplicas(3, { namespace: ns, kubeconfig, ...FAST }, T);
    const old = await untilOneLeader(replicas, T);
    const others = replicas.filter((eppReplica) => eppReplica !== old);
    const probes: Probe[] = [];
    let probing = true;
    // Probes of the two others all along; the stopped replica's queue up in its socket and are answered on SIGCONT.
    const prober = (async () => {
      while (probing) probes.push(...(await Promise.all(others.map((eppReplica) => eppReplica.probe(3_000)))));
    })();
    const stoppedAt = performance.now();
    old.signal('SIGSTOP');
    // Asked while it is stopped: these wait in the kernel and are read only after SIGCONT.
    const queued = old.probe(60_000);
    const takeover = await watch!.until((host) => host !== '' && host !== old.identity, stoppedAt, T, 'a new holder');
    measured.sigstopToNewHolder = Math.round(takeover - stoppedAt);
    expect(takeover - stoppedAt).toBeGreaterThanOrEqual(FAST_LEASE_MS - 1_000); // not before the lease could have expired
    const next = await untilOneLeader(others, T);
    const resumedAt = performance.now();
    old.signal('SIGCONT');
    const fromQueue = await queued;
    // Its first answers after resuming: not ready, not routing (its renew deadline passed while it was stopped).
    expect(fromQueue.readiness, describeProbes([fromQueue])).toBe('NOT_SERVING');
    expect(fromQueue.routing, describeProbes([fromQueue])).toBe('not-leader');
    for (let i = 0; i < 5; i++) {
      const after = await probeAll(replicas);
      expect(
        after.filter((probe) => probe.readiness === 'SERVING').map((probe) => probe.replica),
        describeProbes(after),
      ).toEqual([next.index]);
      expect(
        after.filter((probe) => probe.routing === 'routes').map((probe) => probe.replica),
        describeProbes(after),
      ).toEqual([next.index]);
    }
    probing = false;
    await prober;
    // Among the others, only the new leader ever answered as one, and only from its takeover on.
    const leading = probes.filter((probe) => probe.readiness === 'SERVING' || probe.routing === 'routes');
    expect(new Set(leading.map((probe) => probe.replica))).toEqual(new Set(leading.length ? [next.index] : []));
    expect(leading.every((probe) => probe.sentAt >= stoppedAt)).toBe(true);
    expect(watch!.holder).toBe(next.identity);
    expect(old.lines().some((line) => /no longer the leader/.test(line.msg ?? ''))).toBe(true);
    expect(resumedAt).toBeGreaterThan(takeover);
  }, 240_000);

  it('a Lease held by an unknown identity is waited out, never stolen: no replica leads while it is renewed, one takes over once it expires', async () => {
    const { ns, kubeconfig, lease } = await setUp('epp-ha-foreign');
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
    const now = () => new Date().toISOString().replace('Z', '000Z');
    let stored = await cluster.request('POST', leasePath, {
      body: {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: lease },
        spec: { holderIdentity: 'someone-else', leaseDurationSeconds: 5, acquireTime: now(), renewTime: now() },
      },
    });
    expect(stored.status, stored.text).toBe(201);
    replicas = await startReplicas(3, { namespace: ns, kubeconfig, ...FAST }, T);
    // Renewed by its holder for a while: every replica waits.
    let lastRenewSent = performance.now();
    for (let i = 0; i < 6; i++) {
      lastRenewSent = performance.now();
      stored = await cluster.request('PUT', `${leasePath}/${lease}`, {
        body: { ...stored.json, spec: { ...stored.json.spec, renewTime: now() } },
      });
      expect(stored.status, stored.text).toBe(200);
      const probes = await probeAll(replicas);
      expect(
        probes.every((probe) => probe.readiness === 'NOT_SERVING' && probe.routing === 'not-leader'),
        describeProbes(probes),
      ).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 1_000)); // the foreign holder's renew period
    }
    expect(watch!.changes.map((config) => config.holder)).toEqual(['someone-else']);
    // No more renewals: a replica takes over, not before the 5 s lease ran out since the last renew was sent.
    const at = await watch!.until(
      (host) => host !== 'someone-else' && host !== '',
      lastRenewSent,
      T,
      'a replica taking over',
    );
    expect(at - lastRenewSent).toBeGreaterThanOrEqual(5_000);
    const leader = await untilOneLeader(replicas, T);
    expect(watch!.holder).toBe(leader.identity);
  }, 240_000);

  it('missing RBAC on leases: not ready, a log naming the permission, retried with backoff; leads once the Role is bound, no restart', async () => {
    const { ns, kubeconfig } = await setUp('epp-ha-rbac', []);
    replicas = await startReplicas(1, { namespace: ns, kubeconfig, ...FAST }, T);
    const [r] = replicas as [EppReplica];
    const deadline = Date.now() + T;
    while (
      !r.lines().some((line) => /missing RBAC permission on leases\.coordination\.k8s\.io/.test(line.problem ?? ''))
    ) {
      expect(Date.now() < deadline, r.proc.tail()).toBe(true);
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(await r.readiness()).toBe('NOT_SERVING');
    expect((await r.route()).routing).toBe('not-leader');
    await cluster.grant(ns, 'epp', 'leases', LEASE_RULES);
    await untilOneLeader(replicas, T);
    expect(r.proc.running).toBe(true);
  }, 240_000);

  it('a client driving requests through the gateway (three --epp replicas) across a SIGTERM handover loses none', async () => {
    const { ns, kubeconfig } = await setUp('epp-ha-gateway');
    replicas = await startReplicas(3, { namespace: ns, kubeconfig, ...FAST }, T);
    const leader = await untilOneLeader(replicas, T);
    gateway = await startGateway(
      gatewayConfig({
        host: '127.0.0.1',
        port: 0,
        epp: replicas.map((eppReplica) => `127.0.0.1:${eppReplica.grpcPort}`).join(','),
        eppTls: false,
        eppRetryTimeout: 10_000,
      }),
    );
    const statuses: number[] = [];
    let sending = true;
    const client = (async () => {
      const workers = Array.from({ length: 4 }, async () => {
        while (sending) {
          const r = await postJson(`${gateway!.url}/v1/completions`, {
            model: 'sim-model',
            prompt: 'across the handover',
            max_tokens: 2,
          });
          statuses.push(r.status);
          if (r.status !== 200) process.stderr.write(`[epp-ha] ${r.status} ${r.text}\n`);
        }
      });
      await Promise.all(workers);
    })();
    const served = (count: number) =>
      new Promise<void>((resolve, reject) => {
        const start = statuses.length;
        const deadline = Date.now() + T;
        const tick = () =>
          statuses.length - start >= count
            ? resolve()
            : Date.now() > deadline
              ? reject(new Error('requests stalled'))
              : setTimeout(tick, 20);
        tick();
      });
    await served(20);
    const sent = performance.now();
    leader.signal('SIGTERM');
    await watch!.until((host) => host !== '' && host !== leader.identity, sent, T, 'a new holder');
    await served(40);
    sending = false;
    await client;
    expect(statuses.length).toBeGreaterThanOrEqual(60);
    expect(statuses.filter((seconds) => seconds !== 200)).toEqual([]);
    expect(await leader.proc.waitExit()).toBe(0);
    const retries = await gateway.metrics.eppRetries.get();
    process.stdout.write(
      `[epp-ha] gateway requests ${statuses.length}, retries ${JSON.stringify(retries.values.map((metricValue) => [metricValue.labels.reason, metricValue.value]))}\n`,
    );
  }, 240_000);
});
