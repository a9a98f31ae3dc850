/**
 * Request failures the EPP answers with an ext_proc ImmediateResponse. The codes and the status each maps to are
 * llm-d's (`pkg/common/error/error.go`); the body is `inference error: <Code> - <message>`, and some failures carry the
 * `x-llm-d-request-dropped-reason` header.
 */

export const ERROR_STATUS = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  /** pd-router: a request body that stopped arriving (llm-d has no body timeout). */
  RequestTimeout: 408,
  PreconditionFailed: 412,
  PayloadTooLarge: 413,
  ResourceExhausted: 429,
  Internal: 500,
  ServiceUnavailable: 503,
} as const;

export type InferenceErrorCode = keyof typeof ERROR_STATUS;

/** Values of `x-llm-d-request-dropped-reason` (`rejected-not-leader` is pd-router's: a follower under leader election). */
export type DropReason =
  | 'rejected-no-endpoints'
  | 'rejected-saturated'
  | 'rejected-too-large'
  | 'rejected-ttl-expired'
  | 'rejected-shutting-down'
  | 'rejected-not-leader'
  /** flow control revoked an in-flight sheddable request (`flowControl.enableEviction`). */
  | 'evicted';

/** A request the EPP refuses, with the status and message llm-d answers it with. */
export class InferenceError extends Error {
  override name = 'InferenceError';
  constructor(
    readonly code: InferenceErrorCode,
    message: string,
    readonly dropReason?: DropReason,
  ) {
    super(message);
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  /** The immediate-response body, exactly as llm-d writes it. */
  get body(): string {
    return `inference error: ${this.code} - ${this.message}`;
  }
}

/** A profile's filters removed every candidate (llm-d: 429 ResourceExhausted, `rejected-saturated`). */
export function noEndpointsAfterFilters(): InferenceError {
  return new InferenceError('ResourceExhausted', 'no endpoints available for the given request', 'rejected-saturated');
}

/** Nothing to schedule on: empty pool, or a subset hint that matches nothing (503, `rejected-no-endpoints`). */
export function noCandidates(): InferenceError {
  return new InferenceError(
    'ServiceUnavailable',
    'failed to find endpoint candidates for serving the request',
    'rejected-no-endpoints',
  );
}

/**
 * An Admitter refused the request (llm-d-router's Director: 500 Internal, `request cannot be admitted: <reason>`,
 * no dropped-reason header). Not a scheduling failure: upstream refuses before the scheduler runs.
 */
export class AdmissionDenied extends InferenceError {
  constructor(
    readonly plugin: string,
    reason: string,
  ) {
    super('Internal', `request cannot be admitted: ${reason}`);
  }
}
