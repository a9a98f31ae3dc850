/**
 * Drives an EPP over ext_proc with test/interop/extproc-client (Go, Envoy's generated API, the way Envoy's ext_proc
 * filter does with FULL_DUPLEX_STREAMED bodies) and reduces each exchange to the routing decision it carries: the
 * decode pick, the prefill pick, the headers set and removed, or the immediate response.
 */
import { runProcess } from '../helpers.js';
import { interopEnv } from './upstream.js';

export interface ExtProcHeader {
  key: string;
  value: string;
  usesRawValue: boolean;
  appendAction: string;
}

export interface ExtProcReceived {
  kind: string;
  status?: string;
  clearRouteCache?: boolean;
  setHeaders?: ExtProcHeader[];
  removeHeaders?: string[];
  streamedBody?: string;
  streamedEndOfStream?: boolean;
  dynamicMetadata?: unknown;
  httpStatus?: number;
  body?: string;
}

export interface ExtProcReport {
  name: string;
  received: ExtProcReceived[];
  grpcCode: string;
  grpcMessage: string;
  unknownFields: string[];
  validationErrors: string[];
  error?: string;
}

export interface ExtProcExchange {
  name: string;
  requestHeaders: Array<[string, string]>;
  requestBodyChunks: string[];
  responseHeaders?: Array<[string, string]>;
  responseBodyChunks?: string[];
  awaitEachResponseChunk?: boolean;
}

/** Runs the exchanges in order, each on its own ext_proc stream (bounded: each exchange and the whole run). */
export async function runExtProc(address: string, exchanges: ExtProcExchange[], timeoutMs = 10_000): Promise<ExtProcReport[]> {
  const client = interopEnv().extProcClient;
  if (!client) throw new Error('the ext_proc client (test/interop/extproc-client) was not built');
  const r = await runProcess(client, [], { input: JSON.stringify({ address, timeoutMs, exchanges }), timeoutMs: timeoutMs * (exchanges.length + 1) + 10_000 });
  try {
    return (JSON.parse(r.stdout) as { exchanges: ExtProcReport[] }).exchanges;
  } catch {
    throw new Error(`extproc-client exited ${r.code} without a JSON report; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

/** What an EPP decided for one request, as Envoy would act on it. */
export interface Decision {
  /** x-gateway-destination-endpoint (the header; the envoy.lb metadata must say the same). */
  decode?: string;
  /** x-prefiller-host-port, when the EPP decided P/D. */
  prefill?: string;
  /** Every header the request-headers response sets, lower-case name -> value (several values joined with ", "). */
  set: Record<string, string>;
  /** Headers it removes, lower-case, sorted. */
  removed: string[];
  /** An immediate response instead of a routing decision. */
  immediate?: { status: number; body: string };
  /** The request body the EPP sends on (joined streamed chunks). */
  body?: string;
  /** Transport or protocol problems (must be empty). */
  problems: string[];
}

export function decisionOf(r: ExtProcReport): Decision {
  const problems = [...(r.error ? [`error: ${r.error}`] : []), ...r.unknownFields.map((f) => `unknown field ${f}`), ...r.validationErrors.map((e) => `invalid: ${e}`)];
  const imm = r.received.find((x) => x.kind === 'immediate_response');
  if (imm) return { set: {}, removed: [], immediate: { status: imm.httpStatus ?? 0, body: imm.body ?? '' }, problems };
  const headers = r.received.find((x) => x.kind === 'request_headers');
  const set: Record<string, string> = {};
  for (const h of headers?.setHeaders ?? []) {
    const k = h.key.toLowerCase();
    set[k] = k in set ? `${set[k]}, ${h.value}` : h.value;
  }
  const meta = (headers?.dynamicMetadata as { 'envoy.lb'?: { 'x-gateway-destination-endpoint'?: string } } | undefined)?.['envoy.lb']?.['x-gateway-destination-endpoint'];
  if (meta !== undefined && meta !== set['x-gateway-destination-endpoint']) problems.push(`envoy.lb metadata ${meta} != header ${set['x-gateway-destination-endpoint']}`);
  const chunks = r.received.filter((x) => x.kind === 'request_body' && x.streamedBody !== undefined).map((x) => x.streamedBody!);
  return {
    decode: set['x-gateway-destination-endpoint'],
    prefill: set['x-prefiller-host-port'],
    set,
    removed: [...(headers?.removeHeaders ?? [])].map((h) => h.toLowerCase()).sort(),
    body: chunks.length > 0 ? chunks.join('') : undefined,
    problems,
  };
}
