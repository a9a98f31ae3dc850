/**
 * gRPC health (grpc.health.v1) as llm-d's EPP answers it without leader election: every service name (`liveness`,
 * `readiness`, `envoy.service.ext_proc.v3.ExternalProcessor`, "") is SERVING iff endpoint discovery has synced and the
 * EPP is not draining, else NOT_SERVING. `List` reports the ext_proc service; `Watch` is UNIMPLEMENTED, as upstream.
 */
import * as grpc from '@grpc/grpc-js';
import { EXT_PROC_SERVICE_NAME, loadProtoPackage } from '../common/envoy/ext-proc.js';

export const HEALTH_PROTO = 'grpc/health/v1/health.proto';

let healthClient: grpc.ServiceClientConstructor | undefined;

/** The grpc.health.v1.Health client constructor (its `.service` is the service definition). */
export function healthClientConstructor(): grpc.ServiceClientConstructor {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access -- the package is built from the proto at run time
  healthClient ??= (loadProtoPackage([HEALTH_PROTO]) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  return healthClient;
}

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export function healthImplementation(isServing: () => boolean): grpc.UntypedServiceImplementation {
  const status = (): ServingStatus => (isServing() ? 'SERVING' : 'NOT_SERVING');
  return {
    Check: (_call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: status() }),
    List: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { statuses: { [EXT_PROC_SERVICE_NAME]: { status: status() } } }),
    Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'Watch is not implemented' }),
  };
}
