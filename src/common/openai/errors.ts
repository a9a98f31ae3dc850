/**
 * Error bodies in the two shapes our peers use:
 * - the OpenAI envelope `{"error":{message,type,param,code}}`, which vLLM and llm-d-inference-sim return;
 * - vLLM's older flat `{"object":"error",message,type,param,code}`, which llm-d's sidecar writes and clients of it parse.
 */

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'BadRequestError',
  401: 'AuthenticationError',
  403: 'PermissionDeniedError',
  404: 'NotFoundError',
  408: 'RequestTimeoutError',
  409: 'ConflictError',
  413: 'RequestTooLargeError',
  422: 'UnprocessableEntityError',
  429: 'RateLimitError',
};

/** The error `type` name for a status, following llm-d-inference-sim's table. */
export function errorTypeForStatus(status: number): string {
  return TYPE_BY_STATUS[status] ?? (status >= 500 ? 'InternalServerError' : 'APIConnectionError');
}

/** The OpenAI error body: `{"error": {message, type, param, code}}`. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

/** The OpenAI error body for a status and message. */
export function openAIError(
  status: number,
  message: string,
  param: string | null = null,
  type = errorTypeForStatus(status),
): OpenAIErrorBody {
  return { error: { message, type, param, code: status } };
}

/** vLLM's and llm-d's flat error body: `{"object": "error", message, type, param, code}`. */
export interface FlatErrorBody {
  object: 'error';
  message: string;
  type: string;
  param: string;
  code: number;
}

/** The sidecar's error shape (llm-d `errors.go`), e.g. type BadRequestError, ServiceUnavailable, BadGateway. */
export function flatError(status: number, message: string, type: string): FlatErrorBody {
  return { object: 'error', message, type, param: '', code: status };
}
