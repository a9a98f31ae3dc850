/**
 * gRPC health (grpc.health.v1) as llm-d's EPP answers it (cmd/epp/runner/health.go):
 * - without leader election every service name is SERVING iff the EPP is ready (discovery synced, not draining), else
 *   NOT_SERVING; `List` reports the ext_proc service.
 * - with leader election (`--ha-enable-leader-election`) `liveness` is always SERVING (a follower must not be
 *   restarted); `readiness`, `""` and `envoy.service.ext_proc.v3.ExternalProcessor` are SERVING only on a ready leader;
 *   any other name is SERVICE_UNKNOWN; `List` reports those three.
 * `Watch` is UNIMPLEMENTED, as upstream.
 *
 * One difference, without leader election: `liveness` is SERVING while the process serves and is not draining, synced
 * or not. Upstream fails it until the pool has synced, so a pod whose RBAC denies the pool or its pods is restarted by
 * a liveness probe on `liveness` again and again, which cannot grant the permission: pd-router stays up, unready, and
 * logs what is missing. (A manifest that probes liveness with the same service name as readiness, as llm-d's and
 * GAIE's do, still gets one answer for both.)
 */
import * as grpc from '@grpc/grpc-js';
import { EXT_PROC_SERVICE_NAME, loadProtoPackage } from '../common/envoy/ext-proc.js';

export const HEALTH_PROTO = 'grpc/health/v1/health.proto';
export const LIVENESS_SERVICE = 'liveness';
export const READINESS_SERVICE = 'readiness';

let healthClient: grpc.ServiceClientConstructor | undefined;

/** The grpc.health.v1.Health client constructor (its `.service` is the service definition). */
export function healthClientConstructor(): grpc.ServiceClientConstructor {
  healthClient ??= (loadProtoPackage([HEALTH_PROTO]) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  return healthClient;
}

export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export function healthImplementation(isServing: () => boolean, isLive: () => boolean = isServing, leaderElection = false): grpc.UntypedServiceImplementation {
  const status = (service: string): ServingStatus => {
    if (!leaderElection) {
      if (service === LIVENESS_SERVICE) return isLive() ? 'SERVING' : 'NOT_SERVING';
      return isServing() ? 'SERVING' : 'NOT_SERVING';
    }
    if (service === LIVENESS_SERVICE) return 'SERVING';
    if (service === READINESS_SERVICE || service === '' || service === EXT_PROC_SERVICE_NAME) return isServing() ? 'SERVING' : 'NOT_SERVING';
    return 'SERVICE_UNKNOWN';
  };
  const listed = leaderElection ? [EXT_PROC_SERVICE_NAME, LIVENESS_SERVICE, READINESS_SERVICE] : [EXT_PROC_SERVICE_NAME];
  return {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: status(call.request?.service ?? '') }),
    List: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { statuses: Object.fromEntries(listed.map((s) => [s, { status: status(s) }])) }),
    Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'Watch is not implemented' }),
  };
}
