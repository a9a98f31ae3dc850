/**
 * One log line's worth of a failed Kubernetes list or watch: what was denied or which address could not be reached,
 * without the client library's stack trace and escaped response body. Missing RBAC and an unreachable API server are
 * operator errors to fix in the manifest or the network, so the line names the permission (`list pods in namespace
 * llm`) or the address, and the component keeps retrying with backoff.
 */

/** The request that failed, as the watcher knows it. */
export interface KubeRequest {
  verb: 'list' | 'watch';
  /** Plural resource, e.g. `pods`, `inferencepools`. */
  resource: string;
  /** API group; '' for the core group. */
  group: string;
  namespace: string;
  /** The API server URL from the client configuration. */
  server: string;
}

export interface KubeErrorDescription {
  /** The API server's answer (its Status message), or the connection failure, in one line. */
  error: string;
  /** HTTP status, when the API server answered. */
  status?: number;
  /** Status reason (`Forbidden`, `Unauthorized`, `NotFound`, ...), when the API server answered with a Status. */
  reason?: string;
  /** On 403: the permission to grant, e.g. `list inferencepools.inference.networking.k8s.io in namespace llm`. */
  missingPermission?: string;
  /** On a connection failure: the API server address that could not be reached. */
  unreachable?: string;
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

/** The Status object an API server answers with (client-node keeps it as a JSON string in `body`). */
function statusOf(body: unknown): { message?: string; reason?: string } | undefined {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch {
      return undefined;
    }
  }
  if (!b || typeof b !== 'object') return undefined;
  const s = b as { kind?: unknown; message?: unknown; reason?: unknown };
  return { message: typeof s.message === 'string' ? s.message : undefined, reason: typeof s.reason === 'string' ? s.reason : undefined };
}

/** Error codes of a failed connection (Node's, undici's and node-fetch's), looked for on the error and its causes. */
function connectionCode(err: unknown): string | undefined {
  for (let e: any = err, depth = 0; e && depth < 4; e = e.cause, depth++) {
    const code = e.code ?? e.errno;
    if (typeof code === 'string' && /^E[A-Z_]+$|^UND_ERR_|^ERR_TLS|CERT|SELF_SIGNED/.test(code)) return code;
  }
  return undefined;
}

export function describeKubeError(err: unknown, req: KubeRequest): KubeErrorDescription {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown } | undefined;
  const status = typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined) {
    const s = statusOf(e?.body);
    const target = `${req.resource}${req.group ? `.${req.group}` : ''} in namespace ${req.namespace}`;
    const out: KubeErrorDescription = {
      status,
      reason: s?.reason ?? (status === 403 ? 'Forbidden' : status === 401 ? 'Unauthorized' : undefined),
      error: oneLine(s?.message ?? `${req.verb} ${target}: HTTP ${status}${typeof e?.message === 'string' && e.message && !e.message.startsWith('HTTP-Code') ? ` ${e.message}` : ''}`),
    };
    if (status === 403) out.missingPermission = `${req.verb} ${target}`;
    if (status === 401) out.error = `the API server at ${req.server} rejected the credentials (401 Unauthorized): ${out.error}`;
    return out;
  }
  const code = connectionCode(err);
  const message = typeof e?.message === 'string' ? oneLine(e.message) : oneLine(String(err));
  if (code) return { error: `cannot reach the API server at ${req.server}: ${message}`, unreachable: req.server };
  return { error: message };
}
