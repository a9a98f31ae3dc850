/**
 * vLLM data parallelism behind one port (llm-d `primaryPort`, deprecated upstream: not needed with Istio >= 1.28.1):
 * the request goes to the picked pod's IP on `primaryPort`, and `x-data-parallel-host-port` carries the picked rank's
 * own `ip:port`, for the pod's sidecar to forward to. Every target of the profile is moved to the primary port, as
 * upstream does.
 */
import { z } from 'zod';
import { hostPort } from '../../../common/index.js';
import type { SchedulingContext, SchedulingResult } from '../../framework/types.js';
import { DATA_PARALLEL_HOST_PORT } from '../../../common/pd-contract.js';

const ORIGINAL = 'primary-port/original';

/** 1–65535; 0 (upstream's "unset") turns the rewrite off where upstream allows that. */
export const primaryPortParam = z.number().int('must be an integer').min(0, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** Moves the primary profile's targets to `port` and remembers the first target's own address for the header. */
export function routeToPrimaryPort(context: SchedulingContext, result: SchedulingResult, port: number): SchedulingResult {
  const primary = result.results.get(result.primaryProfile);
  const first = primary?.targets[0];
  if (!primary || !first) return result;
  context.state.set(ORIGINAL, first.hostPort);
  const targets = primary.targets.map((endpoint) => ({ ...endpoint, port, hostPort: hostPort(endpoint.address, port) }));
  result.results.set(result.primaryProfile, { ...primary, targets });
  return result;
}

/** PreRequest half: sets x-data-parallel-host-port when routeToPrimaryPort ran for this request. */
export function writeDataParallelHeader(context: SchedulingContext): void {
  const original = context.state.get(ORIGINAL) as string | undefined;
  if (original) context.request.headers[DATA_PARALLEL_HOST_PORT] = original;
}
