/** Reading Kubernetes API failures (KubeApiError): the HTTP status and the API server's message, for logs and decisions. */

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
