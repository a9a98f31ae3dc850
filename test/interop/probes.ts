/**
 * Kubernetes container probes (readiness, liveness, startup) evaluated as the kubelet does, against a process on its
 * pod's address: `httpGet` passes on a status from 200 to 399 (HTTPS without verifying the certificate), `grpc` on a
 * grpc.health.v1 Check answering SERVING (plain text, the service name from the probe), `tcpSocket` on an accepted
 * connection. A named port is looked up in the container's ports. `exec` cannot run here (no container image) and is
 * reported as such.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Agent } from 'undici';
import { healthClientConstructor } from '../../src/epp/index.js';

type Obj = Record<string, any>;

export interface ProbeResult {
  ok: boolean;
  /** What was asked and what came back, e.g. `grpc 127.0.2.3:9003 service "readiness": NOT_SERVING`. */
  detail: string;
}

const insecureAgent = new Agent({ connect: { rejectUnauthorized: false }, connections: 4 });

/** A probe's port: a number, a numeric string, or the name of one of the container's ports. */
export function probePort(port: unknown, container: Obj): number {
  if (typeof port === 'number') return port;
  if (typeof port === 'string' && /^\d+$/.test(port)) return Number(port);
  const named = (container.ports ?? []).find((p: Obj) => p.name === port);
  if (!named) throw new Error(`probe port "${String(port)}" is not a port of container ${container.name}`);
  return named.containerPort as number;
}

/** gRPC health Check of `service` at host:port (plain text); the status, or `error: <message>`. */
export function grpcHealth(host: string, port: number, service: string, timeoutMs = 2_000): Promise<string> {
  const Ctor = healthClientConstructor();
  const client = new Ctor(`${host}:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Check: Function };
  return new Promise<string>((resolve) =>
    client.Check({ service }, { deadline: Date.now() + timeoutMs }, (err: Error | null, r: { status: string }) => {
      client.close();
      resolve(err ? `error: ${err.message}` : r.status);
    }),
  );
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    const t = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(undefined);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code ?? e.message);
    });
  });
}

/** Runs one probe once against `host` (the pod IP); its timeoutSeconds bounds it (default 1 s, as the kubelet's, but at least 2 s here: a loaded machine). */
export async function runProbe(probe: Obj, container: Obj, host: string): Promise<ProbeResult> {
  const timeoutMs = Math.max(2_000, (probe.timeoutSeconds ?? 1) * 1000);
  if (probe.httpGet) {
    const h = probe.httpGet as Obj;
    const port = probePort(h.port, container);
    const scheme = String(h.scheme ?? 'HTTP').toLowerCase();
    const url = `${scheme}://${h.host ?? host}:${port}${h.path ?? '/'}`;
    try {
      const headers = Object.fromEntries(((h.httpHeaders ?? []) as Obj[]).map((x) => [x.name, x.value]));
      // @ts-expect-error undici's dispatcher option (Node's fetch is undici)
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual', dispatcher: scheme === 'https' ? insecureAgent : undefined });
      const body = (await res.text()).slice(0, 200);
      return { ok: res.status >= 200 && res.status < 400, detail: `GET ${url}: ${res.status} ${body}` };
    } catch (e) {
      return { ok: false, detail: `GET ${url}: ${(e as Error).cause ? String(((e as Error).cause as Error).message) : (e as Error).message}` };
    }
  }
  if (probe.grpc) {
    const port = probePort(probe.grpc.port, container);
    const service = (probe.grpc.service as string | undefined) ?? '';
    const status = await grpcHealth(host, port, service, timeoutMs);
    return { ok: status === 'SERVING', detail: `grpc ${host}:${port} service "${service}": ${status}` };
  }
  if (probe.tcpSocket) {
    const port = probePort(probe.tcpSocket.port, container);
    const err = await tcpConnect(probe.tcpSocket.host ?? host, port, timeoutMs);
    return { ok: err === undefined, detail: `tcp ${host}:${port}: ${err ?? 'connected'}` };
  }
  if (probe.exec) return { ok: false, detail: `exec ${JSON.stringify(probe.exec.command)}: cannot run without the container image` };
  throw new Error(`unknown probe kind in ${JSON.stringify(probe)}`);
}

/**
 * Runs a probe until it passes (or `until` resolves false results for `timeoutMs`), as the kubelet re-runs it every
 * periodSeconds; here every 200 ms, since only our own process's start-up is awaited. Returns the last result.
 */
export async function probeUntilPass(probe: Obj, container: Obj, host: string, timeoutMs: number, alive: () => boolean = () => true): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await runProbe(probe, container, host);
    if (r.ok || Date.now() > deadline || !alive()) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
}
