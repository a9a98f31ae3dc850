/**
 * gRPC health (grpc.health.v1) as llm-d's EPP answers it without leader election: every service name (`readiness`,
 * `envoy.service.ext_proc.v3.ExternalProcessor`, "", any other) is SERVING iff endpoint discovery has synced and the
 * EPP is not draining, else NOT_SERVING. `List` reports the ext_proc service; `Watch` is UNIMPLEMENTED, as upstream.
 *
 * Except `liveness`, which is SERVING while the process serves and is not draining, synced or not (as GAIE answers it
 * with leader election on). Without leader election upstream fails it until the pool has synced, so a pod whose RBAC
 * denies the pool or its pods is restarted by a liveness probe on `liveness` again and again, which cannot grant the
 * permission: pd-router stays up, unready, and logs what is missing. (A manifest that probes liveness with the same
 * service name as readiness, as llm-d's and GAIE's do, still gets one answer for both.)
 */
import * as grpc from '@grpc/grpc-js';
import { EXT_PROC_SERVICE_NAME, loadProtoPackage } from '../common/envoy/ext-proc.js';

export const HEALTH_PROTO = 'grpc/health/v1/health.proto';

let healthClient: grpc.ServiceClientConstructor | undefined;

/** The grpc.health.v1.Health client constructor (its `.service` is the service definition). */
export function healthClientConstructor(): grpc.ServiceClientConstructor {
  healthClient ??= (loadProtoPackage([HEALTH_PROTO]) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  return healthClient;
}

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export const LIVENESS_SERVICE = 'liveness';

export function healthImplementation(isServing: () => boolean, isLive: () => boolean = isServing): grpc.UntypedServiceImplementation {
  const status = (): ServingStatus => (isServing() ? 'SERVING' : 'NOT_SERVING');
  return {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { status: call.request?.service === LIVENESS_SERVICE ? (isLive() ? 'SERVING' : 'NOT_SERVING') : status() }),
    List: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { statuses: { [EXT_PROC_SERVICE_NAME]: { status: status() } } }),
    Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'Watch is not implemented' }),
  };
}
