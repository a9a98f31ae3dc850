/**
 * Sends a prefill leg and classifies the result. Retries follow upstream llm-d (#1206): 502/503/504 answers are retried
 * on the same host up to --prefill-max-retries; with --prefill-failure-policy=retry (or local) connection errors and
 * per-attempt timeouts are retried too. The wait doubles from --prefill-retry-backoff. A 2xx answer is never retried:
 * the prefiller may already hold KV blocks for it.
 *
 * The messages go to the client, so they never name the prefiller's address (an internal pod address): the callers
 * log it with the request id.
 */
import type { Dispatcher } from 'undici';
import { LegStopped, UpstreamLeg, connectErrorCode, type StopSignal } from '../common/upstream-leg.js';
import { depthMessage, nestedDeeperThan } from './json-body.js';
import { KV_TRANSFER_PARAMS } from '../common/pd-contract.js';
import { isObject, type JsonObject } from '../common/json.js';

export type PrefillOutcome =
  | { kind: 'ok'; json: JsonObject; attempts: number }
  | { kind: 'http_error'; status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; attempts: number }
  | { kind: 'connect_error'; code: string; message: string; /** For the log: the error as reported. */ detail: string; attempts: number }
  | { kind: 'timeout'; message: string; attempts: number }
  | { kind: 'bad_response'; message: string; attempts: number }
  | { kind: 'aborted' };

export interface PrefillRequest {
  agent: Dispatcher;
  origin: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: Buffer | string;
  clientSignal: StopSignal;
  timeoutMs: number;
  maxResponseBytes: number;
  /** Deepest JSON nesting accepted in a prefill answer (--max-json-depth). */
  maxJsonDepth: number;
  maxRetries: number;
  backoffMs: number;
  retryTransportErrors: boolean;
  /**
   * What a 2xx body must be: `kv-params` (NIXL: a JSON object with kv_transfer_params), or `any` (SGLang,
   * shared-storage: the answer is discarded, and may be SSE when the client streamed).
   */
  expect: 'kv-params' | 'any';
  onRetry?: (reason: string, attempt: number) => void;
}

const RETRY_STATUSES = new Set([502, 503, 504]);

function wait(ms: number, signal: StopSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function attempt(request: PrefillRequest): Promise<PrefillOutcome> {
  let leg: UpstreamLeg | undefined;
  try {
    // One deadline for the whole attempt: the prefill answer is a single token, read in full.
    leg = await UpstreamLeg.open({
      agent: request.agent,
      origin: request.origin,
      method: 'POST',
      path: request.path,
      headers: request.headers,
      body: request.body,
      clientSignal: request.clientSignal,
      firstByteTimeoutMs: request.timeoutMs,
      idleTimeoutMs: request.timeoutMs,
      wholeLegDeadline: true,
      label: 'prefill',
    });
    const body = await leg.readAll(request.maxResponseBytes);
    // A prefill is never redirected: relaying a Location to the client, or following it, would send the request (or
    // the client) to a host nobody chose.
    if (leg.status >= 300 && leg.status < 400) {
      return { kind: 'bad_response', message: `the prefiller answered with a redirect (${leg.status}), which a prefill does not follow`, attempts: 1 };
    }
    if (leg.status < 200 || leg.status >= 300) return { kind: 'http_error', status: leg.status, headers: leg.headers, body, attempts: 1 };
    if (request.expect === 'any') return { kind: 'ok', json: {}, attempts: 1 };
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return { kind: 'bad_response', message: `the prefiller answered ${leg.status} with a body that is not JSON`, attempts: 1 };
    }
    if (nestedDeeperThan(json, request.maxJsonDepth)) {
      return { kind: 'bad_response', message: `the prefiller answered ${leg.status} with JSON ${depthMessage(request.maxJsonDepth)}`, attempts: 1 };
    }
    if (!isObject(json)) {
      return { kind: 'bad_response', message: `the prefiller answered ${leg.status} with a JSON ${Array.isArray(json) ? 'array' : typeof json}, not an object`, attempts: 1 };
    }
    const kv = json[KV_TRANSFER_PARAMS];
    if (kv === undefined || kv === null || typeof kv !== 'object') {
      return {
        kind: 'bad_response',
        message: 'the prefiller answered without kv_transfer_params; is vLLM started with --kv-transfer-config? (the decoder would recompute the prompt)',
        attempts: 1,
      };
    }
    return { kind: 'ok', json, attempts: 1 };
  } catch (err) {
    if (err instanceof LegStopped) {
      if (err.reason === 'client_gone') return { kind: 'aborted' };
      if (err.reason === 'first_byte_timeout' || err.reason === 'idle_timeout') return { kind: 'timeout', message: `prefill timed out after ${request.timeoutMs}ms`, attempts: 1 };
    }
    if (err instanceof RangeError) return { kind: 'bad_response', message: err.message, attempts: 1 };
    if (request.clientSignal.aborted) return { kind: 'aborted' };
    const code = connectErrorCode(err) ?? 'EUNKNOWN';
    return { kind: 'connect_error', code, message: `the prefiller could not be reached (${code})`, detail: String((err as Error)?.message ?? err), attempts: 1 };
  }
}

export async function sendPrefill(request: PrefillRequest): Promise<PrefillOutcome> {
  for (let n = 0; ; n++) {
    const r = await attempt(request);
    if (r.kind === 'aborted') return r;
    const retryable =
      (r.kind === 'http_error' && RETRY_STATUSES.has(r.status)) || (request.retryTransportErrors && (r.kind === 'connect_error' || r.kind === 'timeout'));
    if (!retryable || n >= request.maxRetries) {
      return { ...r, attempts: n + 1 } as PrefillOutcome;
    }
    const reason = r.kind === 'http_error' ? String(r.status) : r.kind;
    request.onRetry?.(reason, n + 1);
    if (!(await wait(request.backoffMs * 2 ** n, request.clientSignal))) return { kind: 'aborted' };
  }
}
