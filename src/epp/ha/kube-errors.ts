import * as k8s from '@kubernetes/client-node';

/** Reading @kubernetes/client-node failures: the HTTP status and the API server's message, for logs and decisions. */

/** The HTTP status of a failed API call (ApiException.code), or undefined for a transport failure. */
export function apiStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' && code >= 100 && code < 600 ? code : undefined;
}

/** The API server's own message (the Status object's `message`), else the error's text; at most 500 characters. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown })?.body;
  let message: string | undefined;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = body || undefined;
    }
  } else if (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
    message = (body as { message: string }).message;
  }
  message ??= err instanceof Error ? err.message : String(err);
  return message.length > 500 ? `${message.slice(0, 500)}...` : message;
}

/**
 * Per-call options for client-node's generated APIs (whose middleware is its Observable form, as setHeaderOptions
 * builds it): the call is aborted after `timeoutMs`.
 */
export function callTimeout(timeoutMs: number): k8s.ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: k8s.RequestContext) => {
          ctx.setSignal(AbortSignal.timeout(timeoutMs));
          return new k8s.Observable(Promise.resolve(ctx));
        },
        post: (ctx: k8s.ResponseContext) => new k8s.Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}
